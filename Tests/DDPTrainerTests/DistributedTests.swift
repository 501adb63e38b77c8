import DDPTrainer
import Foundation
import Testing

/// Runs the release binary under real `mpirun` (through cluster/ddprun) and checks that the
/// world size does not change what is learned.
@Suite(.serialized) struct DistributedTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var binary: String { root.appendingPathComponent(".build/release/ddptrain").path }
    static var launcher: String { root.appendingPathComponent("cluster/ddprun").path }

    struct Outcome { let status: Int32; let output: String }

    /// Runs a command with a deadline; a run that outlives it is killed and reported as a failure.
    static func run(_ arguments: [String], timeout: TimeInterval = 600) throws -> Outcome {
        // Output goes to a file, not a pipe, so a chatty child can never block on a full pipe.
        let log = temporaryDirectory() + "/output.txt"
        FileManager.default.createFile(atPath: log, contents: nil)
        let sink = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = sink
        process.standardError = sink
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            Issue.record("timed out after \(timeout) s: \(arguments.joined(separator: " "))")
        }
        process.waitUntilExit()
        try sink.close()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return Outcome(status: process.terminationStatus, output: output)
    }

    static func temporaryDirectory() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddptrain-test-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func makeData() throws -> String {
        let dir = temporaryDirectory() + "/data"
        let r = try run([binary, "synth", "--out", dir, "--train-per-file", "40", "--test", "50", "--seed", "3"])
        #expect(r.status == 0, "synth failed: \(r.output)")
        return dir
    }

    func train(ranks: Int, data: String, runDir: String, extra: [String] = []) throws -> Outcome {
        try Self.run([Self.launcher, "-n", "\(ranks)", Self.binary, "--data", data, "--run-dir", runDir,
                      "--model", "keras-cnn", "--batch-size", "8", "--epochs", "2", "--max-steps", "30",
                      "--optimizer", "sgd", "--lr", "0.01", "--augment", "--seed", "5", "--threads", "1"] + extra)
    }

    @Test("1, 2 and 4 ranks train the same parameters; all replicas stay identical")
    func worldSizeIndependence() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build first: swift build -c release")
        let data = try Self.makeData()
        var weights: [Int: [SafeTensors.Tensor]] = [:]
        for ranks in [1, 2, 4] {
            let runDir = Self.temporaryDirectory()
            let r = try train(ranks: ranks, data: data, runDir: runDir)
            #expect(r.status == 0, "\(ranks) ranks failed:\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(ranks) ranks:\n\(r.output)")
            #expect(r.output.contains("\(ranks) rank"), "\(r.output)")
            weights[ranks] = try SafeTensors.read(runDir + "/model.safetensors").tensors
        }
        let reference = try #require(weights[1])
        #expect(!reference.isEmpty)
        for ranks in [2, 4] {
            let other = try #require(weights[ranks])
            #expect(other.map(\.name) == reference.map(\.name))
            var worst: Float = 0
            for (a, b) in zip(reference, other) {
                for (x, y) in zip(a.values, b.values) { worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-3)) }
            }
            #expect(worst <= 1e-4, "\(ranks) ranks differ from 1 rank by \(worst)")
        }
    }

    @Test("a global batch not divisible by the world size is refused with a clear message")
    func indivisibleBatch() throws {
        let data = try Self.makeData()
        let r = try train(ranks: 4, data: data, runDir: Self.temporaryDirectory(), extra: ["--batch-size", "10"])
        #expect(r.status != 0)
        #expect(r.output.contains("10") && r.output.contains("4"), "\(r.output)")
        #expect(r.output.components(separatedBy: "error:").count == 2, "the message should appear once:\n\(r.output)")
    }

    @Test("missing data: the error names every place it looked")
    func missingData() throws {
        let r = try Self.run([Self.binary, "--data", "/nonexistent/cifar", "--run-dir", Self.temporaryDirectory()])
        #expect(r.status != 0)
        #expect(r.output.contains("/nonexistent/cifar"), "\(r.output)")
    }
}
