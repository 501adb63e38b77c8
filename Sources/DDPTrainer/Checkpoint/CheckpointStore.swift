import Foundation

/// A run directory's checkpoints: `checkpoints/step-NNNNNNNN.safetensors`, the `latest` pointer
/// beside them, rotation to the newest `keep`, and a background writer so that training goes on
/// while rank 0's disk catches up.
///
/// Order of a save: the checkpoint file appears atomically (temporary file, fsync, rename,
/// directory fsync); only then is `latest` replaced the same way; only then are old files
/// deleted. A crash at any point leaves `latest` naming a complete, valid checkpoint.
public final class CheckpointStore: @unchecked Sendable {
    public let runDirectory: String
    public let directory: String
    public let keep: Int
    var latestPointer: String { CheckpointStore.latestPointer(in: runDirectory) }
    static func latestPointer(in runDirectory: String) -> String { (runDirectory as NSString).appendingPathComponent("latest") }

    /// Fault injection for cluster/chaos.sh: `DDPTRAIN_CHAOS_WRITE_PAUSE_MS=300` holds every
    /// checkpoint write halfway for 300 ms, a window in which a killed writer must leave
    /// `latest` naming the previous, complete checkpoint. Unset in normal use.
    static let chaosWritePause = Double(ProcessInfo.processInfo.environment["DDPTRAIN_CHAOS_WRITE_PAUSE_MS"] ?? "").map { $0 / 1000 } ?? 0

    private let queue = DispatchQueue(label: "ddptrain.checkpoint-writer")
    private let pending = DispatchGroup()
    private let lock = NSLock()
    private var failure: Error?

    /// Creates the directories and proves they are writable, so a read-only or missing run
    /// directory is reported before any training is done.
    public init(runDirectory: String, keep: Int) throws {
        self.runDirectory = runDirectory
        directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        self.keep = max(1, keep)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try writeAtomically(Data("probe\n".utf8), to: (directory as NSString).appendingPathComponent(".write-probe"))
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(".write-probe"))
        } catch {
            throw UsageError("run directory \(runDirectory) is not writable: \(error)")
        }
        // A writer killed mid-save leaves its temporary file (never named by `latest`).
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.contains(".safetensors.tmp-") {
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
        }
    }

    public static func fileName(globalStep: Int) -> String { String(format: "step-%08d.safetensors", globalStep) }

    /// Queues the checkpoint of `globalStep`: `encode` runs on the writer's thread and its
    /// bytes are written there. Waits only for the previous save, and rethrows its error if
    /// it failed. The caller must keep what `encode` reads unchanged until the next `save`
    /// or `waitForPendingSave`.
    public func save(globalStep: Int, encode: @escaping @Sendable () throws -> Data) throws {
        pending.enter()
        queue.async { [self] in
            defer { pending.leave() }
            do {
                try write(try encode(), globalStep: globalStep)
            } catch {
                lock.lock(); failure = error; lock.unlock()
            }
        }
    }

    /// Blocks until the queued save is on disk; throws what went wrong with it.
    public func waitForPendingSave() throws {
        pending.wait()
        lock.lock(); defer { lock.unlock() }
        if let error = failure {
            failure = nil
            throw error
        }
    }

    func write(_ data: Data, globalStep: Int) throws {
        let name = CheckpointStore.fileName(globalStep: globalStep)
        let path = (directory as NSString).appendingPathComponent(name)
        do {
            try writeAtomically(data, to: path, pauseHalfway: CheckpointStore.chaosWritePause)
        } catch {
            throw UsageError("could not save a checkpoint: \(error); the earlier checkpoints and `latest` are intact")
        }
        do {
            try writeAtomically(Data("checkpoints/\(name)\n".utf8), to: latestPointer)
        } catch {
            throw UsageError("could not update \(latestPointer): \(error); it still names the previous checkpoint")
        }
        for old in checkpointFiles().dropFirst(keep) {
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(old))
        }
    }

    /// Checkpoint file names, newest (highest step) first.
    func checkpointFiles() -> [String] { CheckpointStore.checkpointFiles(in: directory) }

    static func checkpointFiles(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }.sorted(by: >)
    }

    /// Paths to try when resuming: the one `latest` names, then every other, newest first.
    public func resumeCandidates() -> [String] { CheckpointStore.checkpoints(inRunDirectory: runDirectory) }

    /// A run directory's checkpoints, the one `latest` names first, then every other, newest
    /// first; reads only (unlike `init`, which prepares the directory for writing).
    ///
    ///     CheckpointStore.checkpoints(inRunDirectory: "runs/r1").first   // "runs/r1/checkpoints/step-00000790.safetensors"
    public static func checkpoints(inRunDirectory runDirectory: String) -> [String] {
        let directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        var paths: [String] = []
        if let pointer = try? String(contentsOfFile: latestPointer(in: runDirectory), encoding: .utf8) {
            let relative = pointer.trimmingCharacters(in: .whitespacesAndNewlines)
            if !relative.isEmpty { paths.append((runDirectory as NSString).appendingPathComponent(relative)) }
        }
        for name in checkpointFiles(in: directory) {
            let path = (directory as NSString).appendingPathComponent(name)
            if !paths.contains(path) { paths.append(path) }
        }
        return paths
    }
}
