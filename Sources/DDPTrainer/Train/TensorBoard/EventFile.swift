import Foundation

/// Where an event file stood when a checkpoint was taken: resuming from that checkpoint cuts the
/// file back to `length` bytes, so the steps logged after it (and logged again by the resumed
/// run) appear once.
public struct EventFileMark: Sendable, Equatable {
    /// The file's name inside `RUN_DIR/tb`.
    public let name: String
    public let length: Int
}

/// One TensorBoard event file, appended a record at a time in TFRecord framing: the payload's
/// length (uint64, little-endian), the masked CRC-32C of those 8 bytes, the payload, and the
/// masked CRC-32C of the payload. Every payload is a serialized `tensorflow.Event`.
///
/// ```swift
/// let file = try EventFile.create(in: "runs/r1/tb")   // starts with the version record
/// file.append(SummaryEvent.scalars([("train/loss", 0.73)], step: 50, wallTime: Date().timeIntervalSince1970))
/// ```
///
/// Records are written with one `write` each, unbuffered, so `length` is what is on disk.
/// A failed write (a full disk) stops the file for the rest of the run and keeps `length` at
/// the last complete record; training goes on. Only `sync` may be called from another thread.
final class EventFile: @unchecked Sendable {
    /// TensorBoard reads the files of a directory whose names contain this.
    static let marker = "tfevents"

    let directory: String
    let name: String
    private let descriptor: Int32
    /// Bytes of complete records in the file.
    private(set) var length: Int
    /// Why writing stopped, once it has.
    private(set) var failure: String?

    var mark: EventFileMark { EventFileMark(name: name, length: length) }

    /// Opens `name` in `directory` for appending after its first `length` bytes, cutting
    /// whatever follows them; a missing file is created empty.
    init(directory: String, name: String, keeping length: Int) throws {
        self.directory = directory
        self.name = name
        let path = (directory as NSString).appendingPathComponent(name)
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw UsageError("cannot write TensorBoard events to \(path): \(String(cString: strerror(errno)))") }
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw UsageError("cannot cut \(path) back to the last checkpoint's \(length) bytes: \(reason)")
        }
        self.length = length
    }

    deinit { close(descriptor) }

    /// A new file named as TensorFlow names them (`events.out.tfevents.SECONDS.HOST.PID`),
    /// holding the version record.
    static func create(in directory: String) throws -> EventFile {
        let now = Date().timeIntervalSince1970
        let name = "events.out.\(marker).\(Int(now)).\(ProcessInfo.processInfo.hostName).\(getpid())"
        let file = try EventFile(directory: directory, name: name, keeping: 0)
        file.append(SummaryEvent.version(wallTime: now))
        if let failure = file.failure { throw UsageError("cannot write TensorBoard events to \(directory)/\(name): \(failure)") }
        return file
    }

    /// Appends one record; after a failure, does nothing.
    func append(_ payload: [UInt8]) {
        guard failure == nil else { return }
        var record: [UInt8] = []
        record.reserveCapacity(payload.count + 16)
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { record.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.masked(record).littleEndian) { record.append(contentsOf: $0) }
        record.append(contentsOf: payload)
        withUnsafeBytes(of: CRC32C.masked(payload).littleEndian) { record.append(contentsOf: $0) }
        var written = 0
        while written < record.count {
            let n = record.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                failure = String(cString: strerror(errno))
                return
            }
            written += n
        }
        length += record.count
    }

    /// Makes the records written so far durable (before a checkpoint that marks them is).
    func sync() { fsync(descriptor) }

    /// The event files in `directory`, oldest first (their names begin with the creation time).
    static func names(in directory: String) -> [String] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return all.filter { $0.contains(marker) }.sorted()
    }
}
