import Foundation

/// `RUN_DIR/tb`, made ready for a session of a run so that every step's scalars are in it once.
///
/// * A fresh start removes the event files of earlier attempts (their steps will be logged again).
/// * A resume from a checkpoint that marks its event file cuts that file back to the mark,
///   removes the files created after it, and appends to it: the steps logged between the
///   checkpoint and the interruption are dropped, and the resumed run logs them again.
/// * A checkpoint without a mark (written before ddptrain logged to TensorBoard), or whose
///   file is gone or shorter than its mark, starts a new file beside the others.
///
/// ```swift
/// let events = try TensorBoardDirectory.open("runs/r1/tb", resuming: checkpoint.map { .checkpoint($0.tensorBoard) } ?? .fresh,
///                                            warn: log.warn)
/// ```
enum TensorBoardDirectory {
    enum Start {
        case fresh
        case checkpoint(EventFileMark?)
    }

    static func open(_ directory: String, resuming start: Start, warn: (String) -> Void) throws -> EventFile {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw UsageError("cannot create TensorBoard directory \(directory): \(error.localizedDescription)")
        }
        let existing = EventFile.names(in: directory)
        switch start {
        case .fresh:
            try remove(existing, from: directory)
        case .checkpoint(nil):
            break
        case .checkpoint(let mark?):
            let path = (directory as NSString).appendingPathComponent(mark.name)
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
            guard let size, size >= mark.length else {
                warn("the checkpoint's TensorBoard file \(path) is \(size.map { "\($0) bytes, shorter than the \(mark.length) it had" } ?? "missing"); starting a new one")
                break
            }
            try remove(existing.filter { $0 > mark.name }, from: directory)
            return try EventFile(directory: directory, name: mark.name, keeping: mark.length)
        }
        return try EventFile.create(in: directory)
    }

    private static func remove(_ names: [String], from directory: String) throws {
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                try FileManager.default.removeItem(atPath: path)
            } catch {
                throw UsageError("cannot remove \(path), whose steps this run logs again: \(error.localizedDescription)")
            }
        }
    }
}
