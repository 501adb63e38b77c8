import DDPTrainer
import Foundation
import Testing

/// SIGTERM, SIGINT and SIGUSR1 stop a run gracefully: every rank stops at one agreed step,
/// rank 0 saves that step's checkpoint, the exit status is `StopSignal.exitStatus`, and the
/// rerun ends bit-for-bit where the uninterrupted run does. Real signals, real mpirun.
@Suite(.serialized) struct StopTests {
    /// keras-cnn with dropout and augmentation on 300 images, batch 8: 37 steps an epoch, 111 in all.
    func command(ranks: Int, data: String, runDir: String) -> [String] {
        [CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir, "--model", "keras-cnn",
         "--batch-size", "8", "--epochs", "3", "--optimizer", "adam", "--augment", "--seed", "7",
         "--threads", "1", "--checkpoint-every", "10", "--progress", "plain"]
    }

    static let totalSteps = 111

    /// The global step named by "stopped on SIGNAL at global step N" lines, one per rank.
    func stoppedSteps(_ output: String, signal: String) -> [Int] {
        output.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: "stopped on \(signal) at global step ") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
    }

    func latest(_ runDir: String) -> String? {
        (try? String(contentsOfFile: runDir + "/latest", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func reference(ranks: Int, data: String) throws -> [String: [Float]] {
        let dir = CLI.temporaryDirectory()
        let r = try CLI.run(command(ranks: ranks, data: data, runDir: dir))
        #expect(r.status == 0, "\(r.output)")
        return try CLI.weights(dir + "/model.safetensors")
    }

    /// Starts a run, lets `send` signal it after the first checkpoint, and checks the stop: the
    /// status, one message per rank naming one common step, that step's checkpoint as `latest`,
    /// the time from signal to exit; then reruns it to the end and compares with `reference`.
    func stopAndResume(ranks: Int, signalName: String, data: String, reference: [String: [Float]],
                       send: (_ launcher: Int32, _ ranks: [Int32]) -> Void) throws {
        let dir = CLI.temporaryDirectory()
        let args = command(ranks: ranks, data: data, runDir: dir)
        let (process, log) = try CLI.start(args)
        CLI.waitForFirstCheckpoint(dir)
        let pids = CLI.rankPIDs(marker: dir, count: ranks)
        try #require(pids.count == ranks, "expected \(ranks) rank processes, found \(pids)")
        let signalled = Date()
        send(process.processIdentifier, pids)
        let outcome = CLI.finish(process, log: log, started: signalled, timeout: 120)
        #expect(outcome.status == StopSignal.exitStatus, "\(outcome.output)")
        // Generous for a noisy 2-core CI machine: a step takes ~10 ms here, a checkpoint ~0.1 s.
        #expect(outcome.seconds < 30, "the stop took \(outcome.seconds) s")
        #expect(CLI.rankPIDs(marker: dir).isEmpty, "ranks left running")
        let steps = stoppedSteps(outcome.output, signal: signalName)
        try #require(steps.count == ranks, "one stop message per rank expected: \(outcome.output)")
        let step = steps[0]
        #expect(steps.allSatisfy { $0 == step }, "ranks stopped at different steps: \(steps)")
        #expect(step >= 10 && step < Self.totalSteps, "stopped at \(step)")
        #expect(latest(dir) == "checkpoints/" + CheckpointStore.fileName(globalStep: step), "latest: \(latest(dir) ?? "none")")
        let rerun = try CLI.run(args)
        #expect(rerun.status == 0, "\(rerun.output)")
        #expect(rerun.output.contains("global step \(step) "), "\(rerun.output)")
        #expect(try CLI.weights(dir + "/model.safetensors") == reference, "\(signalName) at step \(step)")
    }

    @Test("one process: SIGTERM, SIGINT and SIGUSR1 mid-epoch stop at a step with its checkpoint; the rerun is bit-for-bit the uninterrupted run")
    func singleProcess() throws {
        let data = try CLI.makeData(trainPerFile: 60)
        let straight = try reference(ranks: 1, data: data)
        for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGUSR1, "SIGUSR1")] {
            try stopAndResume(ranks: 1, signalName: name, data: data, reference: straight) { _, ranks in
                kill(ranks[0], signal)
            }
        }
    }

    @Test("4 ranks under mpirun: SIGINT to ddprun (Ctrl-C; mpirun forwards it as SIGUSR1), SIGTERM to every rank (as Slurm signals), SIGTERM to one rank only: all stop at one step, the rerun is bit-for-bit the uninterrupted run")
    func fourRanks() throws {
        let data = try CLI.makeData(trainPerFile: 60)
        let straight = try reference(ranks: 4, data: data)
        try stopAndResume(ranks: 4, signalName: "SIGUSR1", data: data, reference: straight) { launcher, _ in
            kill(launcher, SIGINT)
        }
        try stopAndResume(ranks: 4, signalName: "SIGTERM", data: data, reference: straight) { _, ranks in
            for pid in ranks { kill(pid, SIGTERM) }
        }
        try stopAndResume(ranks: 4, signalName: "SIGTERM", data: data, reference: straight) { _, ranks in
            kill(ranks[2], SIGTERM)
        }
    }

    @Test("a second signal ends the process at once, dying of it; latest still names a valid checkpoint")
    func secondSignalAborts() throws {
        let data = try CLI.makeData(trainPerFile: 60)
        let dir = CLI.temporaryDirectory()
        let (process, log) = try CLI.start(command(ranks: 1, data: data, runDir: dir))
        CLI.waitForFirstCheckpoint(dir)
        let pids = CLI.rankPIDs(marker: dir, count: 1)
        try #require(pids.count == 1)
        kill(pids[0], SIGINT)
        // Two signals pending at once would be delivered as one; the stop itself takes longer.
        Thread.sleep(forTimeInterval: 0.03)
        kill(pids[0], SIGINT)
        let outcome = CLI.finish(process, log: log, timeout: 60)
        // mpirun reports a rank killed by a signal as a failure.
        #expect(outcome.status != 0 && outcome.status != StopSignal.exitStatus, "status \(outcome.status): \(outcome.output)")
        #expect(outcome.output.contains("second stop signal"), "\(outcome.output)")
        #expect(stoppedSteps(outcome.output, signal: "SIGINT").isEmpty, "\(outcome.output)")
        let probe = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        let pointer = try #require(latest(dir))
        #expect(throws: Never.self) { try Checkpoint.load(dir + "/" + pointer, for: probe, optimizer: .adam) }
    }
}
