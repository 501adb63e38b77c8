import Foundation

public struct EpochStats: Codable, Sendable {
    public let epoch: Int, epochs: Int, step: Int
    public let trainLoss: Double, trainAccuracy: Double
    public let testLoss: Double, testAccuracy: Double
    public let imagesPerSecond: Double, seconds: Double
}

/// What rank 0 tells the user: one console line per epoch, and the same numbers as JSON Lines
/// in `metrics.jsonl` for scripts. On other ranks every call is a no-op.
final class RunLog {
    let enabled: Bool
    let directory: String
    private let metrics: FileHandle?

    init(directory: String, enabled: Bool) throws {
        self.enabled = enabled
        self.directory = directory
        guard enabled else { metrics = nil; return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw UsageError("cannot create run directory \(directory): \(error.localizedDescription)")
        }
        let path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw UsageError("cannot write \(path)") }
        handle.seekToEndOfFile()
        metrics = handle
    }

    func say(_ line: String) {
        guard enabled else { return }
        // Unbuffered, so lines appear as they happen even when mpirun pipes our output.
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Warnings go to standard error, prefixed, so they stand out from progress lines.
    func warn(_ line: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("warning: \(line)\n".utf8))
    }

    /// The resolved configuration, for people and scripts; checkpoints carry their own copy.
    func saveConfig(_ config: TrainingConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try writeAtomically(try encoder.encode(config), to: (directory as NSString).appendingPathComponent("config.json"))
    }

    func epoch(_ s: EpochStats) {
        guard enabled else { return }
        say(String(format: "epoch %3d/%d  loss %.4f  train %.2f%%  test loss %.4f  test %.2f%%  %.0f img/s  %.1f s",
                   s.epoch, s.epochs, s.trainLoss, 100 * s.trainAccuracy, s.testLoss, 100 * s.testAccuracy,
                   s.imagesPerSecond, s.seconds))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        if let data = try? encoder.encode(s) {
            metrics?.write(data)
            metrics?.write(Data("\n".utf8))
        }
    }
}
