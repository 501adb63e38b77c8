import Foundation

/// What `ddptrain inspect` shows: metadata, tensors with shapes, and the checksum verdict.
public struct CheckpointReport {
    public let text: String
    /// nil when the file carries no ddptrain checksum (a plain safetensors file).
    public let checksumHolds: Bool?

    public init(path: String) throws {
        let file = try SafeTensors.readFile(path, maxBytes: 1 << 40)
        let header = try SafeTensors.parseHeader(file, path: path)
        var lines = ["\(path): safetensors, \(header.tensors.count) tensors, \(file.count) bytes", "metadata:"]
        for (key, value) in header.metadata.sorted(by: { $0.key < $1.key }) {
            // Multi-line values (the model file) indented under their key.
            lines.append("  \(key): " + value.trimmingCharacters(in: .newlines).replacingOccurrences(of: "\n", with: "\n    "))
        }
        lines.append("tensors:")
        let width = header.tensors.map(\.name.count).max() ?? 0
        for t in header.tensors {
            lines.append("  \(t.name.padding(toLength: width, withPad: " ", startingAt: 0))  F32 \(t.shape)  \(t.count) values")
        }
        if let stored = header.metadata["checksum"] {
            let actual = Checkpoint.checksum(metadata: header.metadata, file: file, header: header)
            checksumHolds = stored == actual
            lines.append(checksumHolds! ? "checksum: OK (\(stored))" : "checksum: MISMATCH (stored \(stored), computed \(actual)): the file is corrupt")
        } else {
            checksumHolds = nil
            lines.append("checksum: none (not written by ddptrain, or a model.safetensors from before ddptrain checksummed it)")
        }
        text = lines.joined(separator: "\n")
    }
}
