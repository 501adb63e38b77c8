import ArgumentParser
import DDPTrainer
import Foundation

@main
struct DDPTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddptrain",
        abstract: "Data-parallel training of convolutional image classifiers on CIFAR-10, over MPI.",
        discussion: """
            Run as `mpirun -n 4 ddptrain` or as a single process. `train` is the default subcommand.
            """,
        subcommands: [Train.self, Eval.self, Predict.self, Visualize.self, Bench.self, Inspect.self, Export.self, Synth.self, Models.self],
        defaultSubcommand: Train.self)

    /// Under mpirun every rank parses the same command line: a mistake in it, `--help` or `help`
    /// is reported by rank 0 alone, not once per rank. Errors while running are each rank's own.
    ///
    /// The other ranks leave a bad command line with status 0: rank 0's own non-zero status fails
    /// the job. Had they exited non-zero at once, mpirun would print its abort banner while still
    /// forwarding rank 0's message, and could split that message in two.
    static func main() {
        let otherRank = (Communicator.environmentInt("OMPI_COMM_WORLD_RANK") ?? 0) > 0
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if otherRank { Foundation.exit(0) }
            exit(withError: error)
        }
        // `--help` and `help` parse to ArgumentParser's own help command, which prints when run.
        let isHelp = !configuration.subcommands.contains { $0 == type(of: command) }
        if otherRank && (isHelp || command is SingleProcessCommand) { Foundation.exit(0) }
        do {
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// A command that runs in one process and never joins MPI (`predict`, `export`, `inspect`,
/// `synth`, `models`): under mpirun rank 0 alone runs it, so its output and its errors appear once
/// and its files are written once.
protocol SingleProcessCommand: ParsableCommand {}

/// `Communicator.agreeOnSetup` has already printed why setup failed: exit 1 without
/// ArgumentParser's own "Error: …" line.
func exitingOnSetupFailure<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch is SetupFailed { throw ExitCode(1) }
}

/// For commands without MPI: any error becomes one `error: …` line on stderr and exit status 1,
/// as `train` reports its setup errors.
func exitingOnError(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}
