import Foundation

/// Where training stands: enough, with the parameters and optimizer state, to continue
/// exactly as if never stopped.
public struct TrainingProgress: Sendable, Equatable {
    /// The epoch in progress (0-based) and how many of its steps are done.
    public var epoch = 0
    public var stepInEpoch = 0
    public var globalStep = 0
    public var optimizerSteps = 0
    /// The epoch's training loss, correct answers and images so far, over the global batches
    /// (`StepExchange`), so that the epoch's printed line is the same whether or not it was
    /// interrupted, and whatever the world size.
    public var lossSum = 0.0, correct = 0.0, seen = 0.0

    public init() {}

    var asDoubles: [Double] {
        [Double(epoch), Double(stepInEpoch), Double(globalStep), Double(optimizerSteps), lossSum, correct, seen]
    }
    init(_ d: [Double]) {
        (epoch, stepInEpoch, globalStep, optimizerSteps) = (Int(d[0]), Int(d[1]), Int(d[2]), Int(d[3]))
        (lossSum, correct, seen) = (d[4], d[5], d[6])
    }
}

/// A checkpoint's content, decoded and validated.
public struct Checkpoint {
    public static let format = "ddptrain-checkpoint-1"

    public let path: String
    public let metadata: [String: String]
    public let progress: TrainingProgress
    public let config: TrainingConfig
    public let parameters: [Float]
    public let optimizerState: [Float]
    /// Batch norm's running statistics, in the network's buffer layout.
    public let buffers: [Float]
    /// Rank 0's TensorBoard event file and its length at this checkpoint (nil in checkpoints
    /// written before ddptrain logged to TensorBoard).
    public let tensorBoard: EventFileMark?

    /// Serialises parameters, optimizer state and everything that identifies the run.
    /// Tensor names say what they are: `conv1.weight`, `optimizer.conv1.weight.momentum`, …
    /// `parameters` and `optimizerState` use the network's layout (they may be a snapshot copy).
    public static func encode(spec: ModelSpec, tensors table: [ParameterTensor], parameters: UnsafePointer<Float>,
                              optimizerState: UnsafePointer<Float>, bufferTensors: [ParameterTensor], buffers: UnsafePointer<Float>,
                              progress: TrainingProgress,
                              config: TrainingConfig, worldSize: Int, dataFingerprint: String,
                              tensorBoard: EventFileMark? = nil, modelMetadata: [String: String] = [:]) throws -> Data {
        let parameterCount = table.reduce(0) { $0 + $1.count }
        var tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)] = table.map { ($0.name, $0.shape, parameters + $0.offset) }
        for (i, slot) in optimizerSlotNames(config.optimizer.kind).enumerated() {
            let base = optimizerState + i * parameterCount
            for t in table { tensors.append(("optimizer.\(t.name).\(slot)", t.shape, base + t.offset)) }
        }
        tensors += bufferTensors.map { ($0.name, $0.shape, buffers + $0.offset) }
        var metadata = [
            "format": format,
            "model": spec.name,
            "layers": spec.description,
            "layout": "conv weights [kh][kw][in][out]; dense weights [in][out]; activations NHWC",
            "config": String(decoding: try JSONEncoder.sorted.encode(config), as: UTF8.self),
            "seed": String(config.seed),
            "global_batch": String(config.globalBatch),
            "optimizer": config.optimizer.kind.rawValue,
            "epoch": String(progress.epoch),
            "step_in_epoch": String(progress.stepInEpoch),
            "global_step": String(progress.globalStep),
            "optimizer_steps": String(progress.optimizerSteps),
            "epoch_sums": "\(progress.lossSum.bitPattern),\(progress.correct.bitPattern),\(progress.seen.bitPattern)",
            "world_size": String(worldSize),
            "data_fingerprint": dataFingerprint,
        ].merging(modelMetadata) { own, _ in own }
        if let tensorBoard {
            metadata["tensorboard_file"] = tensorBoard.name
            metadata["tensorboard_bytes"] = String(tensorBoard.length)
        }
        return try SafeTensors.encode(tensors: tensors, metadata: sealed(metadata, tensors: tensors))
    }

    /// `metadata` plus its `checksum` entry over the metadata and the tensors' bytes (checkpoints
    /// and `model.safetensors`). The data section of a safetensors file is the tensors in this
    /// order, so hashing them equals hashing the file's data, which is how readers verify it.
    public static func sealed(_ metadata: [String: String], tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)]) -> [String: String] {
        var out = metadata
        out["checksum"] = checksum(metadata: metadata, chunks: tensors.map {
            UnsafeRawBufferPointer(start: $0.data, count: $0.shape.reduce(1, *) * 4)
        })
        return out
    }

    /// PyTorch's names for the optimizer's state buffers, in the order they sit in `Optimizer.state`.
    static func optimizerSlotNames(_ kind: OptimizerConfig.Kind) -> [String] {
        kind == .adam ? ["exp_avg", "exp_avg_sq"] : ["momentum"]
    }

    /// FNV-1a over every metadata entry but the checksum itself and over the tensor bytes as
    /// 32-bit words, so a flipped bit anywhere in the file is caught.
    static func checksum(metadata: [String: String], chunks: [UnsafeRawBufferPointer]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) where k != "checksum" {
            for byte in "\(k)=\(v)\n".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        for chunk in chunks {
            for i in 0..<(chunk.count / 4) {
                h = (h ^ UInt64(chunk.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) &* 0x100_0000_01b3
            }
        }
        return String(format: "%016llx", h)
    }

    static func checksum(metadata: [String: String], file: Data, header: SafeTensors.Header) -> String {
        file.withUnsafeBytes { raw in
            checksum(metadata: metadata, chunks: [UnsafeRawBufferPointer(rebasing: raw[header.dataStart..<header.dataStart + header.dataBytes])])
        }
    }

    /// Reads and validates a checkpoint for `network`: format, checksum, model, every tensor's
    /// name and shape. Any problem is a `CheckpointError` naming the file and what is wrong.
    public static func load(_ path: String, for network: Network, optimizer kind: OptimizerConfig.Kind?) throws -> Checkpoint {
        func bad(_ why: String) -> CheckpointError { CheckpointError(path: path, problem: why) }
        func mismatch(_ why: String) -> CheckpointError { CheckpointError(path: path, problem: why, kind: .mismatched) }
        let slots = kind == .adam ? 2 : 1
        let expectedBytes = (network.parameterCount * (1 + slots) + network.bufferCount) * 4
        let file: Data
        let header: SafeTensors.Header
        do {
            file = try SafeTensors.readFile(path, maxBytes: 8 + SafeTensors.maxHeaderBytes + expectedBytes)
            header = try SafeTensors.parseHeader(file, path: path)
        } catch let e as SafeTensors.FormatError {
            throw bad("\(e)".replacingOccurrences(of: "\(path) ", with: "").replacingOccurrences(of: "cannot read \(path): ", with: ""))
        }
        let m = header.metadata
        guard m["format"] == format else { throw bad("not a ddptrain checkpoint (format \(m["format"] ?? "missing"))") }
        guard let stored = m["checksum"] else { throw bad("no checksum in its metadata") }
        guard stored == checksum(metadata: m, file: file, header: header) else {
            throw bad("checksum mismatch: the file is corrupt (truncated or modified)")
        }
        guard m["model"] == network.spec.name else {
            throw mismatch("it holds model '\(m["model"] ?? "?")', not '\(network.spec.name)' (use another --run-dir, or --resume none)")
        }
        guard m["layers"] == network.spec.description else {
            throw mismatch("its model '\(network.spec.name)' has other layers (\(m["layers"] ?? "?")) than this one (\(network.spec.description)); use another --run-dir, or --resume none")
        }
        guard let configJSON = m["config"], let config = try? JSONDecoder().decode(TrainingConfig.self, from: Data(configJSON.utf8)) else {
            throw bad("its config metadata is missing or unreadable")
        }
        func count(_ key: String) throws -> Int {
            guard let v = m[key].flatMap({ Int($0) }), v >= 0 else { throw bad("metadata '\(key)' is missing or not a count") }
            return v
        }
        guard let sums = m["epoch_sums"]?.split(separator: ",").compactMap({ UInt64($0) }), sums.count == 3 else {
            throw bad("metadata 'epoch_sums' is missing or malformed")
        }
        var progress = TrainingProgress()
        progress.epoch = try count("epoch")
        progress.stepInEpoch = try count("step_in_epoch")
        progress.globalStep = try count("global_step")
        progress.optimizerSteps = try count("optimizer_steps")
        (progress.lossSum, progress.correct, progress.seen) = (Double(bitPattern: sums[0]), Double(bitPattern: sums[1]), Double(bitPattern: sums[2]))

        func gather(_ prefix: String, _ suffix: String, _ table: [ParameterTensor]) throws -> [Float] {
            try gatherTensors(table, prefix: prefix, suffix: suffix, file: file, header: header, path: path)
        }
        let parameters = try gather("", "", network.tensors)
        let slotNames = optimizerSlotNames(config.optimizer.kind)
        var state: [Float] = []
        for slot in slotNames { state += try gather("optimizer.", ".\(slot)", network.tensors) }
        let buffers = try gather("", "", network.bufferTensors)
        try rejectUnknownTensors(header, known: network.tensors.map(\.name) + network.bufferTensors.map(\.name)
                                 + slotNames.flatMap { s in network.tensors.map { "optimizer.\($0.name).\(s)" } }, path: path)
        var tensorBoard: EventFileMark?
        if let name = m["tensorboard_file"] {
            guard !name.contains("/"), let length = m["tensorboard_bytes"].flatMap({ Int($0) }), length >= 0 else {
                throw bad("metadata 'tensorboard_file' or 'tensorboard_bytes' is malformed")
            }
            tensorBoard = EventFileMark(name: name, length: length)
        }
        return Checkpoint(path: path, metadata: m, progress: progress, config: config,
                          parameters: parameters, optimizerState: state, buffers: buffers, tensorBoard: tensorBoard)
    }
}

/// The tensors of `table` (named `prefix + name + suffix` in the file) in the network's layout;
/// a missing tensor or another shape means the file holds another model.
func gatherTensors(_ table: [ParameterTensor], prefix: String = "", suffix: String = "",
                   file: Data, header: SafeTensors.Header, path: String) throws -> [Float] {
    let byName = Dictionary(uniqueKeysWithValues: header.tensors.map { ($0.name, $0) })
    var out = [Float](repeating: 0, count: table.reduce(0) { $0 + $1.count })
    for t in table {
        let name = prefix + t.name + suffix
        guard let info = byName[name] else { throw CheckpointError(path: path, problem: "tensor '\(name)' is missing", kind: .mismatched) }
        guard info.shape == t.shape else {
            throw CheckpointError(path: path, problem: "tensor '\(name)' has shape \(info.shape), expected \(t.shape)", kind: .mismatched)
        }
        out.replaceSubrange(t.offset..<t.offset + t.count, with: SafeTensors.values(of: info, in: file, header: header))
    }
    return out
}

func rejectUnknownTensors(_ header: SafeTensors.Header, known names: [String], path: String) throws {
    let known = Set(names)
    if let extra = header.tensors.first(where: { !known.contains($0.name) }) {
        throw CheckpointError(path: path, problem: "unexpected tensor '\(extra.name)'")
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The file is not an intact ddptrain checkpoint (truncated, modified, foreign).
        case damaged
        /// The file is intact but belongs to another model or run.
        case mismatched
    }
    public let path: String
    public let problem: String
    public var kind = Kind.damaged
    public var description: String { "checkpoint \(path): \(problem)" }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
