import Foundation

/// The safetensors file format: an 8-byte little-endian header length, a JSON header naming
/// each tensor's dtype, shape and byte range (plus string `__metadata__`), then the raw
/// little-endian tensor bytes. Python reads it with `safetensors.numpy.load_file`.
///
/// Files are untrusted input: every length, offset and shape is checked against the file's
/// real size before anything is allocated or read.
public enum SafeTensors {
    /// Headers larger than this are refused (the reference implementation caps them at 100 MB).
    public static let maxHeaderBytes = 100_000_000

    public struct TensorInfo: Equatable, Sendable {
        public let name: String
        public let shape: [Int]
        /// Byte range within the data section (after the header).
        public let range: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    public struct Header: Sendable {
        public let metadata: [String: String]
        /// In file order (by offset).
        public let tensors: [TensorInfo]
        public let dataStart: Int
        public let dataBytes: Int
    }

    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: [Float]
    }

    public enum FormatError: Error, CustomStringConvertible, Equatable {
        case unreadable(String, String)
        case unwritable(String, String)
        case malformed(String, String)
        public var description: String {
            switch self {
            case let .unreadable(path, why): return "cannot read \(path): \(why)"
            case let .unwritable(path, why): return "cannot write \(path): \(why)"
            case let .malformed(path, why): return "\(path) is not a valid safetensors file: \(why)"
            }
        }
    }

    /// Writes float32 tensors atomically (temporary file, fsync, rename, fsync of the directory),
    /// so `path` always holds either the previous file or the complete new one.
    public static func write(to path: String, tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)],
                             metadata: [String: String]) throws {
        try writeAtomically(encode(tensors: tensors, metadata: metadata), to: path)
    }

    public static func encode(tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)],
                              metadata: [String: String]) throws -> Data {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * 4
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the tensor data starts 8-byte aligned, as the reference writer does.
        while json.count % 8 != 0 { json.append(0x20) }
        var file = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        for t in tensors {
            file.append(UnsafeBufferPointer(start: t.data, count: t.shape.reduce(1, *)))
        }
        return file
    }

    /// Parses and validates the header of `file` (the whole file's bytes).
    public static func parseHeader(_ file: Data, path: String) throws -> Header {
        func bad(_ why: String) -> FormatError { .malformed(path, why) }
        guard file.count >= 8 else { throw bad("\(file.count) bytes, shorter than the 8-byte header length") }
        let declared = file.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard declared <= UInt64(maxHeaderBytes) else { throw bad("header length \(declared) exceeds the \(maxHeaderBytes)-byte limit") }
        guard declared <= UInt64(file.count - 8) else {
            throw bad("header length \(declared) exceeds the \(file.count - 8) bytes after it (truncated file?)")
        }
        let dataStart = 8 + Int(declared)
        let json = file.subdata(in: file.startIndex + 8..<file.startIndex + dataStart)
        guard let object = try? JSONSerialization.jsonObject(with: json), let header = object as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        if let m = header["__metadata__"] {
            guard let strings = m as? [String: String] else { throw bad("__metadata__ must map strings to strings") }
            metadata = strings
        }
        let dataBytes = file.count - dataStart
        var tensors: [TensorInfo] = []
        for (name, entry) in header where name != "__metadata__" {
            guard let e = entry as? [String: Any] else { throw bad("entry '\(name)' is not an object") }
            guard let dtype = e["dtype"] as? String else { throw bad("tensor '\(name)' has no dtype") }
            guard dtype == "F32" else { throw bad("tensor '\(name)' has dtype \(dtype); only F32 is supported") }
            guard let shape = e["shape"] as? [Int], shape.allSatisfy({ $0 >= 0 }) else {
                throw bad("tensor '\(name)' has a missing or negative shape")
            }
            guard let offsets = e["data_offsets"] as? [Int], offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1],
                  offsets[1] <= dataBytes else {
                throw bad("tensor '\(name)' has data_offsets outside the \(dataBytes) data bytes")
            }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, product <= dataBytes else { throw bad("tensor '\(name)' shape \(shape) is larger than the file") }
                elements = product
            }
            guard offsets[1] - offsets[0] == elements * 4 else {
                throw bad("tensor '\(name)' shape \(shape) needs \(elements * 4) bytes but data_offsets span \(offsets[1] - offsets[0])")
            }
            tensors.append(TensorInfo(name: name, shape: shape, range: offsets[0]..<offsets[1]))
        }
        tensors.sort { $0.range.lowerBound < $1.range.lowerBound }
        // The data section must be covered exactly: no holes, no overlaps, nothing after the last tensor.
        var expected = 0
        for t in tensors {
            guard t.range.lowerBound == expected else { throw bad("tensor '\(t.name)' overlaps another or leaves a gap at byte \(expected)") }
            expected = t.range.upperBound
        }
        guard expected == dataBytes else { throw bad("\(dataBytes - expected) bytes after the last tensor") }
        return Header(metadata: metadata, tensors: tensors, dataStart: dataStart, dataBytes: dataBytes)
    }

    /// Reads a whole file, refusing anything larger than `maxBytes` before reading it.
    public static func readFile(_ path: String, maxBytes: Int) throws -> Data {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? Int else {
            throw FormatError.unreadable(path, "no such file or not readable")
        }
        guard size <= maxBytes else { throw FormatError.malformed(path, "\(size) bytes, larger than the \(maxBytes) expected at most") }
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError.unreadable(path, "read failed") }
        return data
    }

    /// Reads every tensor of a file (for tests and tools; checkpoints are read by `CheckpointFile`).
    public static func read(_ path: String, maxBytes: Int = 1 << 32) throws -> (metadata: [String: String], tensors: [Tensor]) {
        let file = try readFile(path, maxBytes: maxBytes)
        let header = try parseHeader(file, path: path)
        let tensors = header.tensors.map { t in
            Tensor(name: t.name, shape: t.shape, values: values(of: t, in: file, header: header))
        }
        return (header.metadata, tensors.sorted { $0.name < $1.name })
    }

    public static func values(of t: TensorInfo, in file: Data, header: Header) -> [Float] {
        let start = file.startIndex + header.dataStart + t.range.lowerBound
        return [Float](unsafeUninitializedCapacity: t.count) { buffer, initialized in
            _ = file.copyBytes(to: UnsafeMutableRawBufferPointer(buffer), from: start..<start + t.count * 4)
            initialized = t.count
        }
    }
}

/// Temporary file, fsync, rename, fsync of the directory: readers see the old file or the new
/// one, never a mix, and after a crash the rename is durable.
///
/// `pauseHalfway` (seconds) stops after half the bytes, so that a fault injected "while a
/// checkpoint is being written" (cluster/chaos.sh) lands there for certain instead of by luck.
public func writeAtomically(_ data: Data, to path: String, pauseHalfway: Double = 0) throws {
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw SafeTensors.FormatError.unwritable(temporary, "cannot create: \(String(cString: strerror(errno)))") }
    var failure: String?
    data.withUnsafeBytes { raw in
        var offset = 0
        var pauseAt = pauseHalfway > 0 ? raw.count / 2 : raw.count
        while offset < raw.count {
            if offset == pauseAt {
                Thread.sleep(forTimeInterval: pauseHalfway)
                pauseAt = raw.count
            }
            let n = Glibc.write(fd, raw.baseAddress! + offset, pauseAt - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failure = "write failed: \(String(cString: strerror(errno)))"
                return
            }
            offset += n
        }
    }
    if failure == nil && fsync(fd) != 0 { failure = "fsync failed: \(String(cString: strerror(errno)))" }
    close(fd)
    if failure == nil && rename(temporary, path) != 0 { failure = "rename failed: \(String(cString: strerror(errno)))" }
    if let failure {
        unlink(temporary)
        throw SafeTensors.FormatError.unwritable(path, failure)
    }
    let directory = (path as NSString).deletingLastPathComponent
    let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY)
    if dirfd >= 0 { fsync(dirfd); close(dirfd) }
}

#if canImport(Glibc)
import Glibc
#endif
