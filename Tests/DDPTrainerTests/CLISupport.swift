import DDPTrainer
import Foundation
import Testing

/// Runs the release binary (built by ./test.sh before the tests) as a user would.
enum CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var binary: String { root.appendingPathComponent(".build/release/ddptrain").path }
    static var launcher: String { root.appendingPathComponent("cluster/ddprun").path }

    struct Outcome { let status: Int32; let output: String; let seconds: Double }

    /// Starts a command with its output going to a file (never a pipe that could fill up).
    static func start(_ arguments: [String]) throws -> (Process, String) {
        let log = temporaryDirectory() + "/output.txt"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let sink = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Foundation starts children with SIGINT, SIGTERM and SIGUSR1 blocked (the mask of the
        // thread that spawns them); a shell gives them unblocked, and the stop tests need that.
        process.arguments = ["--default-signal=INT,TERM,USR1"] + arguments
        process.standardOutput = sink
        process.standardError = sink
        try process.run()
        return (process, log)
    }

    /// Waits for a started command; one that outlives `timeout` is killed and recorded as a failure.
    static func finish(_ process: Process, log: String, started: Date = Date(), timeout: TimeInterval = 600) -> Outcome {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            process.terminate()
            Issue.record("timed out after \(timeout) s: \(process.arguments?.joined(separator: " ") ?? "")")
        }
        process.waitUntilExit()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return Outcome(status: process.terminationStatus, output: output, seconds: Date().timeIntervalSince(started))
    }

    static func run(_ arguments: [String], timeout: TimeInterval = 600) throws -> Outcome {
        let started = Date()
        let (process, log) = try start(arguments)
        return finish(process, log: log, started: started, timeout: timeout)
    }

    /// A fresh directory under `testsRoot`, so nothing a test writes outlives the test process.
    static func temporaryDirectory() -> String {
        let dir = testsRoot + "/" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A small synthetic data set in the CIFAR-10 layout, written by `ddptrain synth`.
    static func makeData(trainPerFile: Int = 40, test: Int = 50) throws -> String {
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build first: swift build -c release")
        let dir = temporaryDirectory() + "/data"
        let r = try run([binary, "synth", "--out", dir, "--train-per-file", "\(trainPerFile)", "--test", "\(test)", "--seed", "3"])
        #expect(r.status == 0, "synth failed: \(r.output)")
        return dir
    }

    /// PIDs of the ddptrain processes (ranks, not mpirun) whose command line mentions `marker`.
    static func rankPIDs(marker: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let args = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return args.first?.hasSuffix("/ddptrain") == true && args.contains(marker)
        }.sorted()
    }

    /// The rank processes of a running job once `count` of them are seen, or whatever is seen
    /// after `timeout` seconds: a single look at /proc found one of two ranks once, on a loaded
    /// machine, while both were training.
    static func rankPIDs(marker: String, count: Int, timeout: TimeInterval = 10) -> [Int32] {
        let deadline = Date().addingTimeInterval(timeout)
        var pids = rankPIDs(marker: marker)
        while pids.count < count && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            pids = rankPIDs(marker: marker)
        }
        return pids
    }

    /// Waits (up to `timeout` seconds) for a run's first checkpoint, named by its `latest`
    /// pointer: training is under way, mid-epoch.
    static func waitForFirstCheckpoint(_ runDir: String, timeout: TimeInterval = 120) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && !FileManager.default.fileExists(atPath: runDir + "/latest") { Thread.sleep(forTimeInterval: 0.02) }
    }

    /// Parameter values of a safetensors file, by tensor name.
    static func weights(_ path: String) throws -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: try SafeTensors.read(path).tensors.map { ($0.name, $0.values) })
    }

    /// metrics.jsonl's epoch lines without their timing fields: the losses and accuracies, each
    /// number as Swift prints a Double (every bit shows).
    static func epochMetrics(_ runDir: String) throws -> [[String: String]] {
        let text = try String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let fields = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return fields.filter { !["seconds", "imagesPerSecond"].contains($0.key) }.mapValues { "\(($0 as? NSNumber)?.doubleValue ?? .nan)" }
        }
    }

    /// The largest difference in any tensor, relative to that tensor's largest magnitude.
    static func maxRelativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
        guard a.keys.sorted() == b.keys.sorted() else { return .infinity }
        var worst: Float = 0
        for (name, x) in a {
            guard let y = b[name], y.count == x.count else { return .infinity }
            let scale = max(x.map(abs).max() ?? 0, 1e-12)
            for (u, v) in zip(x, y) { worst = max(worst, abs(u - v) / scale) }
        }
        return worst
    }

}

/// Under real `mpirun` (through cluster/ddprun): the world size must not change what is learned.

/// One directory per test process for every run directory, data set and log the tests make
/// (a full run writes about 70 MB), removed when the process exits, whichever test was last.
private let testsRoot: String = {
    let root = testsRootPath(pid: getpid())
    try! FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: testsRootPath(pid: getpid())) }
    return root
}()

private func testsRootPath(pid: Int32) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ddptrain-tests-\(pid)").path
}
