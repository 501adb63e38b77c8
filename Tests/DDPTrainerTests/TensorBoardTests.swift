import DDPTrainer
import Foundation
import Testing

/// A run directory's TensorBoard scalars as the real `tensorboard` package reads them
/// (scripts/tensorboard-scalars.py; installed by scripts/install-deps.sh --tests).
struct TensorBoardLog: Decodable {
    struct Record: Decodable, Equatable {
        let file: String, step: Int, tag: String, value: Float
    }
    /// Every scalar of every file as stored, in file order.
    let records: [Record]
    /// What TensorBoard shows: tag → [[step, value]].
    let accumulated: [String: [[Double]]]
    /// Each file's first record's file_version.
    let versions: [String: String]

    static func read(_ runDirectory: String) throws -> TensorBoardLog {
        let r = try CLI.run(["python3", CLI.root.appendingPathComponent("scripts/tensorboard-scalars.py").path, runDirectory + "/tb"])
        try #require(r.status == 0, "tensorboard could not read \(runDirectory)/tb: \(r.output)")
        return try JSONDecoder().decode(TensorBoardLog.self, from: Data(r.output.utf8))
    }

    /// tag → (step → value) of the stored records.
    var series: [String: [Int: Float]] {
        records.reduce(into: [:]) { $0[$1.tag, default: [:]][$1.step] = $1.value }
    }

    /// (tag, step) pairs stored more than once.
    var duplicates: [String] {
        Dictionary(grouping: records, by: { "\($0.tag)@\($0.step)" }).filter { $0.value.count > 1 }.keys.sorted()
    }

    /// Every record but images/s, whose values are timings and differ from run to run.
    var deterministic: [String] {
        records.filter { $0.tag != "train/images_per_second" }.map { "\($0.tag)@\($0.step)=\($0.value)" }
    }
}

/// Rank 0's TensorBoard event files, end to end: written by the real binary under mpirun, read
/// back by the real `tensorboard` package, and kept free of duplicates across stops, kills and
/// resumes.
@Suite(.serialized) struct TensorBoardTests {
    static let trainTags = ["train/accuracy", "train/images_per_second", "train/learning_rate", "train/loss"]
    static let testTags = ["test/accuracy", "test/loss"]

    @Test("tensorboard reads back the tags, steps and values the run printed, logged and scheduled")
    func scalarsMatchTheRun() throws {
        let data = try CLI.makeData()  // 200 images, batch 8: 25 steps per epoch
        let dir = CLI.temporaryDirectory()
        let r = try CLI.run([CLI.launcher, "-n", "2", CLI.binary, "--data", data, "--run-dir", dir, "--batch-size", "8",
                             "--epochs", "2", "--optimizer", "sgd", "--lr", "0.05", "--warmup-epochs", "1", "--schedule", "cosine",
                             "--threads", "1", "--log-every", "10"])
        try #require(r.status == 0, "\(r.output)")
        let log = try TensorBoardLog.read(dir)
        #expect(log.versions.count == 1 && log.versions.values.first == "brain.Event:2", "\(log.versions)")
        #expect(log.duplicates.isEmpty, "\(log.duplicates)")
        let series = log.series
        #expect(series.keys.sorted() == (Self.testTags + Self.trainTags).sorted(), "\(series.keys.sorted())")
        // Every --log-every steps and at each epoch's end (25, 50); the test set at epoch ends.
        for tag in Self.trainTags { #expect(series[tag]?.keys.sorted() == [10, 20, 25, 30, 40, 50], "\(tag)") }
        for tag in Self.testTags { #expect(series[tag]?.keys.sorted() == [25, 50], "\(tag)") }
        // What TensorBoard shows is what is stored.
        for (tag, points) in log.accumulated {
            #expect(points.map { Int($0[0]) } == series[tag]?.keys.sorted(), "\(tag)")
            #expect(points.map { Float($0[1]) } == series[tag]?.sorted(by: { $0.key < $1.key }).map(\.value), "\(tag)")
        }

        // The plain progress lines (output is a file) print the same loss and accuracy.
        for (step, epoch, inEpoch) in [(10, 1, 10), (20, 1, 20), (30, 2, 5), (40, 2, 15)] {
            let line = r.output.split(separator: "\n").first { $0.hasPrefix("ep \(epoch)/2 \(inEpoch)/25  ") }
            let printed = try #require(line, "no progress line for step \(step):\n\(r.output)")
            let loss = try #require(series["train/loss"]?[step]), accuracy = try #require(series["train/accuracy"]?[step])
            #expect(printed.contains(String(format: "loss %.4f  acc %.2f%%", loss, 100 * accuracy)), "\(printed)")
        }
        // At each epoch's end, the epoch's numbers in metrics.jsonl.
        let epochs = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochStats.self, from: Data($0.utf8)) }
        try #require(epochs.count == 2)
        for stats in epochs {
            #expect(series["train/loss"]?[stats.step] == Float(stats.trainLoss))
            #expect(series["train/accuracy"]?[stats.step] == Float(stats.trainAccuracy))
            #expect(series["test/loss"]?[stats.step] == Float(stats.testLoss))
            #expect(series["test/accuracy"]?[stats.step] == Float(stats.testAccuracy))
        }
        // The learning rate of each logged step's update, warmup then cosine.
        var config = TrainingConfig(dataDirectory: data, runDirectory: dir)
        config.epochs = 2
        config.optimizer = OptimizerConfig(kind: .sgd, learningRate: 0.05)
        config.schedule = LearningRateSchedule(warmupEpochs: 1, decay: .cosine)
        for (step, lr) in series["train/learning_rate"] ?? [:] {
            #expect(lr == config.learningRate(atStep: step - 1, stepsPerEpoch: 25), "step \(step)")
        }
        #expect(Set(series["train/learning_rate"]?.values.map { $0 } ?? []).count == 6, "the schedule changes the rate")
        #expect(series["train/images_per_second"]?.values.allSatisfy { $0 > 0 && $0.isFinite } == true)
    }

    /// keras-cnn, 2 ranks, 25 steps per epoch, a checkpoint every 10 steps and scalars every step.
    func command(data: String, runDir: String, _ extra: [String] = []) -> [String] {
        [CLI.launcher, "-n", "2", CLI.binary, "--data", data, "--run-dir", runDir, "--model", "keras-cnn",
         "--batch-size", "8", "--epochs", "2", "--seed", "5", "--threads", "1", "--checkpoint-every", "10", "--log-every", "1"] + extra
    }

    @Test("stopped or killed mid-epoch after a checkpoint, then resumed: every step once, as in the uninterrupted run")
    func resumeKeepsEachStepOnce() throws {
        let data = try CLI.makeData()
        let straight = CLI.temporaryDirectory()
        #expect(try CLI.run(command(data: data, runDir: straight)).status == 0)
        let reference = try TensorBoardLog.read(straight)
        #expect(reference.duplicates.isEmpty)
        #expect(reference.series["train/loss"]?.keys.sorted() == Array(1...50))

        // Stopped by --max-steps 37 (a checkpoint there), resumed.
        let stopped = CLI.temporaryDirectory()
        #expect(try CLI.run(command(data: data, runDir: stopped, ["--max-steps", "37"])).status == 0)
        #expect(try TensorBoardLog.read(stopped).series["train/loss"]?.keys.max() == 37)
        #expect(try CLI.run(command(data: data, runDir: stopped)).status == 0)
        let afterStop = try TensorBoardLog.read(stopped)
        #expect(afterStop.versions.count == 1, "a resume appends to the run's file: \(afterStop.versions)")
        #expect(afterStop.deterministic == reference.deterministic)

        // Killed (every process, -9) once the file holds steps after the latest checkpoint.
        let killed = CLI.temporaryDirectory()
        let (process, output) = try CLI.start(command(data: data, runDir: killed))
        let probe = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        var cut: (mark: EventFileMark, size: Int)?
        let deadline = Date().addingTimeInterval(120)
        while cut == nil && process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.005)
            guard let pointer = try? String(contentsOfFile: killed + "/latest", encoding: .utf8),
                  let checkpoint = try? Checkpoint.load(killed + "/" + pointer.trimmingCharacters(in: .whitespacesAndNewlines),
                                                        for: probe, optimizer: .adam),
                  let mark = checkpoint.tensorBoard,
                  let size = try? FileManager.default.attributesOfItem(atPath: "\(killed)/tb/\(mark.name)")[.size] as? Int,
                  size > mark.length else { continue }
            for pid in CLI.rankPIDs(marker: killed) { kill(pid, SIGKILL) }
            cut = (mark, size)
        }
        _ = CLI.finish(process, log: output, timeout: 60)
        let (mark, size) = try #require(cut, "never saw events logged after a checkpoint")
        let beforeResume = try TensorBoardLog.read(killed)
        #expect(beforeResume.series["train/loss"]?.keys.max() ?? 0 > 0)
        let resumed = try CLI.run(command(data: data, runDir: killed))
        #expect(resumed.status == 0 && resumed.output.contains("resumed from"), "\(resumed.output)")
        let afterKill = try TensorBoardLog.read(killed)
        #expect(afterKill.duplicates.isEmpty, "the steps after the checkpoint were logged twice: \(afterKill.duplicates)")
        #expect(afterKill.deterministic == reference.deterministic,
                "killed with \(size) bytes on disk, \(mark.length) at the checkpoint")
        #expect(afterKill.versions.keys.sorted() == [mark.name])
    }

    @Test("a checkpoint without a TensorBoard mark (older ddptrain) resumes, into a new event file")
    func checkpointWithoutMark() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        let tf = [CLI.launcher, "-n", "1", CLI.binary, "--data", data, "--run-dir", dir, "--batch-size", "8", "--epochs", "2",
                  "--threads", "1", "--log-every", "5"]
        #expect(try CLI.run(tf + ["--max-steps", "20"]).status == 0)
        // Rewrite the checkpoint as ddptrain wrote it before TensorBoard: same content, no mark.
        let path = dir + "/checkpoints/" + CheckpointStore.fileName(globalStep: 20)
        let network = Network(spec: .tfTutorial, maxBatch: 1, threads: 1)
        let old = try Checkpoint.load(path, for: network, optimizer: .adam)
        try #require(old.tensorBoard != nil)
        let bytes = try old.parameters.withUnsafeBufferPointer { p in
            try old.optimizerState.withUnsafeBufferPointer { s in
                try old.buffers.withUnsafeBufferPointer { b in
                    try Checkpoint.encode(spec: network.spec, tensors: network.tensors, parameters: p.baseAddress!, optimizerState: s.baseAddress!,
                                          bufferTensors: network.bufferTensors, buffers: b.baseAddress ?? p.baseAddress!,
                                          progress: old.progress, config: old.config, worldSize: 1,
                                          dataFingerprint: old.metadata["data_fingerprint"] ?? "")
                }
            }
        }
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try Checkpoint.load(path, for: network, optimizer: .adam).tensorBoard == nil)
        let r = try CLI.run(tf)
        #expect(r.status == 0 && r.output.contains("global step 20"), "\(r.output)")
        let log = try TensorBoardLog.read(dir)
        #expect(log.versions.count == 2, "\(log.versions)")
        #expect(log.series["train/loss"]?.keys.sorted() == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50])
        #expect(log.series["test/loss"]?.keys.sorted() == [25, 50])
    }
}
