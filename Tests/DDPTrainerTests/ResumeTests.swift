import DDPTrainer
import Foundation
import Testing

/// Checkpoint and resume, end to end, through the real binary: stopping never changes the result.
@Suite(.serialized) struct ResumeTests {
    /// keras-cnn has dropout and the run augments, so every source of randomness is exercised.
    func command(ranks: Int, data: String, runDir: String, _ extra: [String] = []) -> [String] {
        [CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir, "--model", "keras-cnn",
         "--batch-size", "8", "--epochs", "3", "--optimizer", "adam", "--augment", "--seed", "7",
         "--threads", "1", "--checkpoint-every", "10"] + extra
    }

    func train(ranks: Int = 1, data: String, runDir: String, _ extra: [String] = []) throws -> CLI.Outcome {
        let r = try CLI.run(command(ranks: ranks, data: data, runDir: runDir, extra))
        #expect(r.status == 0, "\(r.output)")
        return r
    }

    /// "loss … train … test loss … test …" of an epoch's line, without the timing fields.
    func epochSummary(_ output: String, epoch: Int) -> String? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(String(format: "epoch %3d/", epoch)) }) else { return nil }
        return line.components(separatedBy: "  ").prefix(5).joined(separator: "  ")
    }

    func fileHash(_ path: String) -> Int? { FileManager.default.contents(atPath: path)?.hashValue }

    @Test("stopped at an epoch boundary or mid-epoch and resumed: bit-for-bit the uninterrupted run")
    func stopAndResume() throws {
        let data = try CLI.makeData()  // 200 images, batch 8: 25 steps per epoch
        let straight = CLI.temporaryDirectory()
        let straightRun = try train(data: data, runDir: straight)
        let reference = try CLI.weights(straight + "/model.safetensors")
        for stop in [25, 37] {
            let dir = CLI.temporaryDirectory()
            let first = try train(data: data, runDir: dir, ["--max-steps", "\(stop)"])
            #expect(first.output.contains("stopped at --max-steps \(stop)"))
            let second = try train(data: data, runDir: dir)
            #expect(second.output.contains("resumed from"), "\(second.output)")
            #expect(second.output.contains("global step \(stop)"), "\(second.output)")
            #expect(try CLI.weights(dir + "/model.safetensors") == reference, "stopped at step \(stop)")
            // The interrupted epoch's line reports the same loss and accuracies as the straight run's.
            #expect(epochSummary(second.output, epoch: 2) == epochSummary(straightRun.output, epoch: 2))
            #expect(epochSummary(second.output, epoch: 3) == epochSummary(straightRun.output, epoch: 3))
        }
    }

    /// resnet20 on 2 ranks: batch norm's running statistics and global statistics, the warmup and
    /// cosine schedule, label smoothing and augmentation all continue exactly.
    @Test("resnet20 stopped mid-epoch on 2 ranks and resumed: bit-for-bit the uninterrupted run")
    func resnetResume() throws {
        let data = try CLI.makeData()  // 200 images, batch 8: 25 steps per epoch
        func resnet(_ dir: String, _ extra: [String] = []) throws -> CLI.Outcome {
            let r = try CLI.run([CLI.launcher, "-n", "2", CLI.binary, "--data", data, "--run-dir", dir, "--model", "resnet20",
                                 "--batch-size", "8", "--epochs", "2", "--warmup-epochs", "1", "--seed", "4", "--threads", "1"] + extra)
            #expect(r.status == 0, "\(r.output)")
            return r
        }
        let straight = CLI.temporaryDirectory()
        _ = try resnet(straight)
        let dir = CLI.temporaryDirectory()
        _ = try resnet(dir, ["--max-steps", "37"])
        let second = try resnet(dir)
        #expect(second.output.contains("global step 37"), "\(second.output)")
        let weights = try CLI.weights(dir + "/model.safetensors")
        #expect(weights.keys.contains("bn21.running_mean"))
        #expect(weights == (try CLI.weights(straight + "/model.safetensors")))
    }

    @Test("kill -9 of one rank under mpirun -n 4: the job ends within 30 s; rerunning resumes to the same result")
    func killOneRank() throws {
        let data = try CLI.makeData(trainPerFile: 60)  // 300 images: 37 steps per epoch, 111 steps
        let straight = CLI.temporaryDirectory()
        _ = try train(ranks: 4, data: data, runDir: straight)
        let dir = CLI.temporaryDirectory()
        let args = command(ranks: 4, data: data, runDir: dir)
        let (process, log) = try CLI.start(args)
        // Wait for the first checkpoint, then kill a rank other than the writer.
        CLI.waitForFirstCheckpoint(dir)
        let ranks = CLI.rankPIDs(marker: dir, count: 4)
        try #require(ranks.count == 4, "expected 4 rank processes, found \(ranks)")
        kill(ranks.last!, SIGKILL)
        let killedAt = Date()
        let outcome = CLI.finish(process, log: log, started: killedAt, timeout: 60)
        #expect(outcome.status != 0)
        #expect(outcome.seconds < 30, "the job took \(outcome.seconds) s to end after a rank died")
        #expect(CLI.rankPIDs(marker: dir).isEmpty, "ranks left running after the job ended")
        let rerun = try CLI.run(args)
        #expect(rerun.status == 0, "\(rerun.output)")
        #expect(rerun.output.contains("resumed from"), "\(rerun.output)")
        #expect(try CLI.weights(dir + "/model.safetensors") == CLI.weights(straight + "/model.safetensors"))
    }

    @Test("kill -9 of the writer at several moments: latest always names a complete, valid checkpoint")
    func killWriter() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        let probe = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        // A checkpoint (15 MB) after every step keeps the writer busy most of the time.
        let args = command(ranks: 1, data: data, runDir: dir, ["--checkpoint-every", "1", "--keep", "2"])
        for delay in [0.9, 1.3, 1.6, 2.0, 2.4] {
            let (process, log) = try CLI.start(args)
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            for pid in CLI.rankPIDs(marker: dir) { kill(pid, SIGKILL) }
            _ = CLI.finish(process, log: log, timeout: 30)
            guard let pointer = try? String(contentsOfFile: dir + "/latest", encoding: .utf8) else { continue }
            let path = dir + "/" + pointer.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(throws: Never.self, "after a kill at \(delay) s") { try Checkpoint.load(path, for: probe, optimizer: .adam) }
        }
        // And the run still finishes from whatever was left.
        let final = try CLI.run(args)
        #expect(final.status == 0, "\(final.output)")
    }

    /// The world size is not part of the trajectory (DistributedTests.worldSizeIndependence):
    /// a run stopped mid-epoch on 2 ranks and resumed on 1 or on 4 ends with the bits of the
    /// uninterrupted 2-rank run, with Adam, augmentation and dropout. The checkpoint-every of
    /// `command` (10) writes one before the stop, so the resume also skips past a saved step.
    /// The epoch's line in metrics.jsonl, its sums begun on 2 ranks and finished on another
    /// number, is the same bits too.
    @Test("a run stopped mid-epoch on 2 ranks resumes on 1 and on 4 ranks bit-for-bit, its logged losses too")
    func resumeOnOtherWorldSizes() throws {
        let data = try CLI.makeData()  // 200 images, batch 8: 25 steps per epoch
        let stop = ["--epochs", "1"]
        let straight = CLI.temporaryDirectory()
        _ = try train(ranks: 2, data: data, runDir: straight, stop)
        let reference = try CLI.weights(straight + "/model.safetensors")
        let referenceMetrics = try CLI.epochMetrics(straight)
        #expect(referenceMetrics.count == 1, "\(referenceMetrics)")
        for ranks in [1, 4] {
            let dir = CLI.temporaryDirectory()
            _ = try train(ranks: 2, data: data, runDir: dir, ["--epochs", "1", "--max-steps", "13"])
            let resumed = try train(ranks: ranks, data: data, runDir: dir, stop)
            #expect(resumed.output.contains("saved by 2 ranks"), "\(resumed.output)")
            #expect(resumed.output.contains("global step 13"), "\(resumed.output)")
            let weights = try CLI.weights(dir + "/model.safetensors")
            #expect(weights == reference, "2 → \(ranks) ranks differs from 2 ranks throughout by \(CLI.maxRelativeDifference(reference, weights))")
            let metrics = try CLI.epochMetrics(dir)
            #expect(metrics == referenceMetrics, "2 → \(ranks) ranks logged \(metrics), 2 ranks \(referenceMetrics)")
        }
    }

    @Test("rerunning a 2-rank run that stopped at --max-steps stops again at once, on every rank")
    func resumeAtTheLimit() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        _ = try train(ranks: 2, data: data, runDir: dir, ["--max-steps", "10"])
        let again = try CLI.run(command(ranks: 2, data: data, runDir: dir, ["--max-steps", "10", "--collective-timeout", "20"]),
                                timeout: 60)
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("resumed from") && again.output.contains("stopped at --max-steps 10"), "\(again.output)")
    }

    @Test("a resume with another global batch or model is refused and the checkpoints are untouched")
    func conflictingSettings() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        _ = try train(data: data, runDir: dir, ["--max-steps", "12"])
        let latest = dir + "/checkpoints/" + CheckpointStore.fileName(globalStep: 12)
        let before = fileHash(latest)
        let r = try CLI.run(command(ranks: 1, data: data, runDir: dir, ["--batch-size", "16"]))
        #expect(r.status != 0)
        #expect(r.output.contains("--batch-size (global) is 16 here but 8 in the checkpoint"), "\(r.output)")
        let m = try CLI.run(command(ranks: 1, data: data, runDir: dir, ["--model", "tf-tutorial"]))
        #expect(m.status != 0)
        #expect(m.output.contains("keras-cnn"), "\(m.output)")
        #expect(fileHash(latest) == before && before != nil)
        // Other data is refused too.
        let other = try CLI.makeData(trainPerFile: 41)
        let d = try CLI.run(command(ranks: 1, data: other, runDir: dir))
        #expect(d.status != 0 && d.output.contains("training data differ"), "\(d.output)")
    }

    @Test("a corrupt latest checkpoint: auto falls back to the previous one; an explicit path is an error")
    func corruptLatest() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        _ = try train(data: data, runDir: dir, ["--max-steps", "22"])  // checkpoints at 10, 20, 22
        let latest = dir + "/checkpoints/" + CheckpointStore.fileName(globalStep: 22)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: latest))
        bytes[bytes.count / 2] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: latest))
        let explicit = try CLI.run(command(ranks: 1, data: data, runDir: dir, ["--resume", latest]))
        #expect(explicit.status != 0)
        #expect(explicit.output.contains("checksum mismatch") && explicit.output.contains(latest), "\(explicit.output)")
        let auto = try train(data: data, runDir: dir)
        #expect(auto.output.contains("warning:") && auto.output.contains("checksum mismatch"), "\(auto.output)")
        #expect(auto.output.contains("global step 20"), "\(auto.output)")
    }

    @Test("an unwritable run directory is reported before training starts")
    func unwritableRunDirectory() throws {
        let data = try CLI.makeData()
        let r = try CLI.run(command(ranks: 1, data: data, runDir: "/proc/ddptrain-cannot-write-here"))
        #expect(r.status != 0)
        #expect(r.output.contains("/proc/ddptrain-cannot-write-here"), "\(r.output)")
        #expect(!r.output.contains("epoch "))
    }

    /// A 24 MB tmpfs holds one 15 MB keras-cnn checkpoint, not two.
    /// With 2 ranks the other rank is waiting in the next all-reduce when rank 0 finds out: the
    /// job must end at once with rank 0's message, not after the watchdog's timeout.
    @Test("a full disk: a clear error, a non-zero exit at once on 1 and 2 ranks, and latest still names a valid checkpoint",
          .enabled(if: ResumeTests.canMountTmpfs, "needs root and permission to mount a tmpfs"),
          arguments: [1, 2])
    func fullDisk(ranks: Int) throws {
        let data = try CLI.makeData()
        let mountPoint = CLI.temporaryDirectory()
        #expect(try CLI.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mountPoint]).status == 0)
        defer { _ = try? CLI.run(["umount", mountPoint]) }
        let dir = mountPoint + "/run"
        let r = try CLI.run(command(ranks: ranks, data: data, runDir: dir, ["--checkpoint-every", "1", "--keep", "5"]))
        #expect(r.status != 0)
        #expect(r.output.contains("could not save a checkpoint") && r.output.contains("No space left on device"), "\(r.output)")
        #expect(!r.output.contains("has not completed after"), "ended by the watchdog, not by rank 0's error:\n\(r.output)")
        let pointer = try String(contentsOfFile: dir + "/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let probe = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        #expect(throws: Never.self) { try Checkpoint.load(dir + "/" + pointer, for: probe, optimizer: .adam) }
    }

    static let canMountTmpfs: Bool = {
        let dir = CLI.temporaryDirectory()
        guard (try? CLI.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]))?.status == 0 else { return false }
        _ = try? CLI.run(["umount", dir])
        return true
    }()

    @Test("the weights load with Python's safetensors package and match what inspect reports")
    func pythonSafetensors() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        _ = try train(data: data, runDir: dir, ["--max-steps", "5"])
        let checkpoint = dir + "/checkpoints/" + CheckpointStore.fileName(globalStep: 5)
        let script = """
            import sys
            from safetensors.numpy import load_file
            t = load_file(sys.argv[1])
            for name in sorted(t):
                print(name, list(t[name].shape), repr(float(t[name].astype('float64').sum())))
            """
        let py = try CLI.run(["python3", "-c", script, checkpoint])
        #expect(py.status == 0, "python safetensors failed (pip install safetensors numpy):\n\(py.output)")
        let ours = try SafeTensors.read(checkpoint).tensors
        let lines = py.output.split(separator: "\n").map(String.init)
        #expect(lines.count == ours.count)
        for (line, t) in zip(lines, ours) {
            let sum = t.values.reduce(0.0) { $0 + Double($1) }
            let parts = line.split(separator: " ", maxSplits: 1)
            #expect(String(parts[0]) == t.name)
            #expect(line.contains("\(t.shape)"), "\(line) vs \(t.shape)")
            let pySum = Double(line.split(separator: " ").last!) ?? .nan
            #expect(abs(pySum - sum) <= 1e-9 * max(1, abs(sum)), "\(t.name): python \(pySum), ours \(sum)")
        }
        let inspect = try CLI.run([CLI.binary, "inspect", checkpoint])
        #expect(inspect.status == 0 && inspect.output.contains("checksum: OK"), "\(inspect.output)")
        for t in ours { #expect(inspect.output.contains("\(t.name)") && inspect.output.contains("\(t.shape)")) }
    }
}
