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

    /// Under mpirun every rank parses the same command line: a mistake in it (or `--help`) is
    /// reported by rank 0 alone, not once per rank. Errors while running are each rank's own.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if let rank = Communicator.environmentInt("OMPI_COMM_WORLD_RANK"), rank > 0 {
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
        do {
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

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
