import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Constants of the CIFAR-10 *binary* distribution (cifar-10-binary.tar.gz).
///
/// Each file is a bare sequence of records with no header: 1 label byte, then 3072 pixel
/// bytes as three 32x32 row-major planes, red, green, blue. The absence of a header is why
/// the reader checks sizes and labels so strictly: a wrong file would otherwise load as
/// plausible-looking garbage.
public enum CIFAR10 {
    public static let trainFiles: [String] = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"
    /// Optional; one class name per line.
    public static let metaFile = "batches.meta.txt"
    /// Where the tarball unpacks relative to the directory it is unpacked in; the last place
    /// `resolveDataDirectory` looks.
    public static let defaultDirectory = "data/cifar-10-batches-bin"
    public static let imageBytes = 3072, recordBytes = 3073, side = 32, channels = 3
    public static let classCount = 10
    public static let defaultClassNames = [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]

    /// The files that make up a split, in the order their records are concatenated.
    public static func files(for split: Split) -> [String] {
        switch split {
        case .train: return trainFiles
        case .test: return [testFile]
        }
    }
}

public enum Split: Sendable, Equatable {
    case train, test
}

/// One file a data set was read from. Names and sizes go into the data fingerprint, so a
/// checkpoint can tell that it is being resumed on different data.
public struct DataSource: Sendable, Equatable, Codable {
    public let name: String
    public let bytes: Int

    public init(name: String, bytes: Int) {
        self.name = name
        self.bytes = bytes
    }
}

/// A split held in memory exactly as stored on disk, minus the label bytes.
///
/// Pixels stay `UInt8` in CHW planes: 184 MB for the training set instead of 737 MB as floats,
/// and normalisation plus the NHWC transpose happen per batch in `BatchAssembler`, where they
/// are fused with augmentation anyway.
public struct LabeledImages: Sendable {
    public let count: Int
    /// `count * 3072` bytes; image `i` starts at `i * 3072`, then R, G, B planes of 32x32.
    public let pixels: [UInt8]
    /// `count` labels in 0...9.
    public let labels: [UInt8]
    /// The files read, in order; empty for images made in memory.
    public let sources: [DataSource]

    public init(pixels: [UInt8], labels: [UInt8], sources: [DataSource] = []) {
        precondition(pixels.count == labels.count * CIFAR10.imageBytes,
                     "\(pixels.count) pixel bytes for \(labels.count) labels; expected \(labels.count * CIFAR10.imageBytes)")
        self.count = labels.count
        self.pixels = pixels
        self.labels = labels
        self.sources = sources
    }
}

/// Reads and validates a split: the training split is the five training files concatenated in
/// order, the test split is `test_batch.bin`.
///
/// Every file is opened and size-checked before any is read, so a truncated fifth file is
/// reported at once rather than after reading the other four; every label is checked while the
/// records are copied. The whole read is a few large `pread(2)` calls and one copy per record,
/// which keeps 60,000 images well under a second.
public func loadCIFAR10(directory: String, split: Split) throws -> LabeledImages {
    let names = CIFAR10.files(for: split)
    var files: [OpenFile] = []
    defer { for f in files { close(f.fd) } }
    for name in names {
        files.append(try OpenFile(path: joinPath(directory, name)))
    }

    let totalRecords = files.reduce(0) { $0 + $1.size / CIFAR10.recordBytes }
    let largest = files.map(\.size).max() ?? 0
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 64)
    defer { scratch.deallocate() }

    var pixels: [UInt8] = []
    let labels = try [UInt8](unsafeUninitializedCapacity: totalRecords) { labelBuffer, labelCount in
        pixels = try [UInt8](unsafeUninitializedCapacity: totalRecords * CIFAR10.imageBytes) { pixelBuffer, pixelCount in
            var record = 0
            for file in files {
                try file.readAll(into: scratch)
                let bytes = UnsafeRawBufferPointer(scratch)
                for r in 0..<(file.size / CIFAR10.recordBytes) {
                    let offset = r * CIFAR10.recordBytes
                    let label = bytes[offset]
                    guard label < CIFAR10.classCount else {
                        throw DataError.badLabel(path: file.path, record: r, label: Int(label))
                    }
                    labelBuffer[record] = label
                    UnsafeMutableRawPointer(pixelBuffer.baseAddress! + record * CIFAR10.imageBytes)
                        .copyMemory(from: bytes.baseAddress! + offset + 1, byteCount: CIFAR10.imageBytes)
                    record += 1
                }
            }
            pixelCount = totalRecords * CIFAR10.imageBytes
        }
        labelCount = totalRecords
    }
    return LabeledImages(pixels: pixels, labels: labels,
                         sources: zip(names, files).map { DataSource(name: $0, bytes: $1.size) })
}

/// Class names from `batches.meta.txt`, or the standard ten when the file is absent or does
/// not hold exactly ten names (names are only used for display, so a bad meta file should not
/// stop training).
public func loadClassNames(directory: String) -> [String] {
    guard let text = try? String(contentsOfFile: joinPath(directory, CIFAR10.metaFile), encoding: .utf8) else {
        return CIFAR10.defaultClassNames
    }
    let names = text.split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty }
    return names.count == CIFAR10.classCount ? names : CIFAR10.defaultClassNames
}

func joinPath(_ directory: String, _ name: String) -> String {
    if directory.isEmpty { return name }
    return directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// An open, size-validated data file.
private struct OpenFile {
    let path: String
    let fd: Int32
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw DataError.fileMissing(path: path) }
            throw DataError.unreadable(path: path, reason: errnoText(code))
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw DataError.unreadable(path: path, reason: errnoText(code))
        }
        guard info.st_mode & 0o170000 == 0o100000 else {
            close(fd)
            throw DataError.unreadable(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        guard size > 0 else {
            close(fd)
            throw DataError.emptyFile(path: path)
        }
        guard size % CIFAR10.recordBytes == 0 else {
            close(fd)
            throw DataError.badSize(path: path, bytes: size)
        }
        self.path = path
        self.fd = fd
        self.size = size
    }

    /// Reads the whole file into the start of `buffer`.
    func readAll(into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < size {
            let n = pread(fd, buffer.baseAddress! + done, size - done, off_t(done))
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw DataError.unreadable(path: path, reason: errnoText(code))
            }
            guard n > 0 else {
                throw DataError.unreadable(path: path, reason: "file shrank from \(size) to \(done) bytes while being read")
            }
            done += n
        }
    }
}
