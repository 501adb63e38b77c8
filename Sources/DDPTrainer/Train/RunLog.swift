import Foundation

public struct EpochStats: Codable, Sendable {
    public let epoch: Int, epochs: Int, step: Int
    public let trainLoss: Double, trainAccuracy: Double
    public let testLoss: Double, testAccuracy: Double
    public let imagesPerSecond: Double, seconds: Double
}

/// What rank 0 tells the user: one console line per epoch and progress lines between them
/// (`ProgressMode`), the same epoch numbers as JSON Lines in `metrics.jsonl` for scripts, and
/// scalar summaries in TensorBoard event files (`RUN_DIR/tb`). On other ranks every call is a no-op.
final class RunLog {
    /// How the console shows progress; `quiet` prints epoch lines, warnings and errors only.
    enum Console {
        case live(Terminal)
        case plain
        case quiet
    }

    let enabled: Bool
    let directory: String
    let console: Console
    /// Rank 0's TensorBoard event file, once the run's starting point is known.
    var events: EventFile?
    private let metrics: FileHandle?
    /// A live progress line is on the screen, with the cursor at its end.
    private var statusShown = false

    init(directory: String, enabled: Bool, progress: ProgressMode, quiet: Bool) throws {
        self.enabled = enabled
        self.directory = directory
        switch (enabled && !quiet, progress) {
        case (false, _): console = .quiet
        case (true, .plain): console = .plain
        case (true, .live): console = .live(Terminal.standardOutput() ?? Terminal.unknown())
        case (true, .auto): console = Terminal.standardOutput().map { .live($0) } ?? .plain
        }
        guard enabled else { metrics = nil; return }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw UsageError("cannot create run directory \(directory): \(error.localizedDescription)")
        }
        let path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw UsageError("cannot write \(path)") }
        _ = try handle.seekToEnd()
        metrics = handle
    }

    /// A line for the user (not shown with `--quiet`).
    func say(_ line: String) {
        if case .quiet = console { return }
        print(line)
    }

    /// Unbuffered, so lines appear as they happen even when mpirun pipes our output; a live
    /// progress line on the screen is erased first (the next redraw puts it back below).
    private func print(_ line: String) {
        guard enabled else { return }
        clearStatus()
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Warnings go to standard error, prefixed, so they stand out from progress lines.
    func warn(_ line: String) {
        guard enabled else { return }
        clearStatus()
        FileHandle.standardError.write(Data("warning: \(line)\n".utf8))
    }

    /// Live mode: `line` replaces the progress line in place (cut to the terminal's width, so
    /// that it never wraps onto a second row the carriage return cannot reach).
    func status(_ line: String) {
        guard enabled, case .live(let terminal) = console else { return }
        let width = (terminal.columns ?? 80) - 1
        let shown = line.count > width ? String(line.prefix(width)) : line
        FileHandle.standardOutput.write(Data("\r\(shown)\u{1B}[K".utf8))
        statusShown = true
    }

    /// Ends the live progress line where it stands: what is printed next, by this process or
    /// another rank, starts on a line of its own below it.
    func endStatus() {
        guard statusShown else { return }
        FileHandle.standardOutput.write(Data("\n".utf8))
        statusShown = false
    }

    /// Erases the live progress line, e.g. before an error is printed.
    func clearStatus() {
        guard statusShown else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        statusShown = false
    }

    /// Scalar summaries at a global step, to TensorBoard; a failed write is reported once.
    func scalars(_ values: [(tag: String, value: Float)], step: Int) {
        guard enabled, let events, events.failure == nil else { return }
        events.append(SummaryEvent.scalars(values, step: step, wallTime: Date().timeIntervalSince1970))
        if let failure = events.failure {
            warn("cannot write TensorBoard events to \(events.directory)/\(events.name): \(failure); training goes on without them")
        }
    }

    /// The resolved configuration, for people and scripts; checkpoints carry their own copy.
    func saveConfig(_ config: TrainingConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try writeAtomically(try encoder.encode(config), to: (directory as NSString).appendingPathComponent("config.json"))
    }

    /// Prints the epoch's line and appends it to metrics.jsonl; a failed append (a full disk) is
    /// an error naming the file, not a crash in Foundation's non-throwing `write`.
    func epoch(_ s: EpochStats) throws {
        guard enabled else { return }
        scalars([("test/loss", Float(s.testLoss)), ("test/accuracy", Float(s.testAccuracy))], step: s.step)
        print(String(format: "epoch %3d/%d  loss %.4f  train %.2f%%  test loss %.4f  test %.2f%%  %.0f img/s  %.1f s",
                   s.epoch, s.epochs, s.trainLoss, 100 * s.trainAccuracy, s.testLoss, 100 * s.testAccuracy,
                   s.imagesPerSecond, s.seconds))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let metrics, let line = try? encoder.encode(s) else { return }
        do {
            try metrics.write(contentsOf: line + Data("\n".utf8))
        } catch {
            throw UsageError("could not append to \((directory as NSString).appendingPathComponent("metrics.jsonl")): \(error.localizedDescription); the checkpoints are intact")
        }
    }
}
