/// Why data could not be used. Each description is one line that starts with the file or
/// directory concerned, because the reader is usually a user looking at the output of one of
/// several MPI ranks and needs to know which file to fix.
public enum DataError: Error, CustomStringConvertible {
    case fileMissing(path: String)
    case emptyFile(path: String)
    /// The size is not a whole number of 3073-byte records.
    case badSize(path: String, bytes: Int)
    /// `record` counts from 0 within the file.
    case badLabel(path: String, record: Int, label: Int)
    /// No candidate directory held `data_batch_1.bin`; `tried` says where each place came from.
    case noDataDirectory(tried: [(path: String, origin: String)])
    case unreadable(path: String, reason: String)
    case unwritable(path: String, reason: String)

    public var description: String {
        let record = CIFAR10.recordBytes
        switch self {
        case .fileMissing(let path):
            return "\(path): file not found (a CIFAR-10 binary directory holds "
                + "\(CIFAR10.trainFiles.first!) … \(CIFAR10.trainFiles.last!) and \(CIFAR10.testFile))"
        case .emptyFile(let path):
            return "\(path): file is empty (0 bytes); a CIFAR-10 binary file holds whole \(record)-byte records"
        case let .badSize(path, bytes):
            return "\(path): size \(bytes) bytes is not a multiple of the \(record)-byte record size "
                + "(\(bytes / record) whole records + \(bytes % record) trailing bytes); "
                + "the file is truncated or not the CIFAR-10 binary version"
        case let .badLabel(path, index, label):
            return "\(path): record \(index) (byte offset \(index * record)) has label \(label), "
                + "but CIFAR-10 labels are 0-9; the file is corrupt or not CIFAR-10 (CIFAR-100?)"
        case .noDataDirectory(let tried):
            let places = tried.map { "\($0.path) (\($0.origin))" }.joined(separator: ", ")
            return "no CIFAR-10 binary data found: tried \(places); none holds \(CIFAR10.trainFiles[0]). "
                + "Get the data with cluster/fetch-cifar10.sh, or write a synthetic set with "
                + "`ddptrain synth --out DIR`, then pass --data DIR or set CIFAR10_DIR"
        case let .unreadable(path, reason):
            return "\(path): cannot read: \(reason)"
        case let .unwritable(path, reason):
            return "\(path): cannot write: \(reason)"
        }
    }
}
