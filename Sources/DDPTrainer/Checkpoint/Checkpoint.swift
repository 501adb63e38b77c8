import Foundation

/// Where training stands: enough, with the parameters and optimizer state, to continue
/// exactly as if never stopped.
public struct TrainingProgress: Sendable, Equatable {
    /// The epoch in progress (0-based) and how many of its steps are done.
    public var epoch = 0
    public var stepInEpoch = 0
    public var globalStep = 0
    public var optimizerSteps = 0
    /// Sums over all ranks of the epoch's training loss, correct answers and images so far,
    /// so that the epoch's printed line is the same whether or not it was interrupted.
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

    /// Serialises parameters, optimizer state and everything that identifies the run.
    /// Tensor names say what they are: `conv1.weight`, `optimizer.conv1.weight.momentum`, …
    static func encode(network: Network, optimizer: Optimizer, progress: TrainingProgress,
                       config: TrainingConfig, worldSize: Int, dataFingerprint: String) throws -> Data {
        var tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)] = []
        for t in network.tensors { tensors.append((t.name, t.shape, UnsafePointer(network.parameters + t.offset))) }
        for (slot, base) in optimizerSlots(optimizer) {
            for t in network.tensors { tensors.append(("optimizer.\(t.name).\(slot)", t.shape, UnsafePointer(base + t.offset))) }
        }
        var metadata = [
            "format": format,
            "model": network.spec.name,
            "layers": network.spec.description,
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
        ]
        let unsigned = try SafeTensors.encode(tensors: tensors, metadata: metadata)
        let header = try SafeTensors.parseHeader(unsigned, path: "<new checkpoint>")
        metadata["checksum"] = checksum(metadata: metadata, data: unsigned, header: header)
        return try SafeTensors.encode(tensors: tensors, metadata: metadata)
    }

    /// The optimizer's state buffers and the suffix each one gets in tensor names (PyTorch's names).
    static func optimizerSlots(_ optimizer: Optimizer) -> [(String, UnsafeMutablePointer<Float>)] {
        switch optimizer.config.kind {
        case .sgd: return [("momentum", optimizer.state)]
        case .adam: return [("exp_avg", optimizer.state), ("exp_avg_sq", optimizer.state + optimizer.count)]
        }
    }

    /// FNV-1a over every metadata entry but the checksum itself and over the tensor bytes, so a
    /// flipped bit anywhere in the file is caught.
    static func checksum(metadata: [String: String], data: Data, header: SafeTensors.Header) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) where k != "checksum" {
            for byte in "\(k)=\(v)\n".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        data.withUnsafeBytes { raw in
            let words = raw.baseAddress! + header.dataStart
            for i in 0..<(header.dataBytes / 4) {
                h = (h ^ UInt64(words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) &* 0x100_0000_01b3
            }
        }
        return String(format: "%016llx", h)
    }

    /// Reads and validates a checkpoint for `network`: format, checksum, model, every tensor's
    /// name and shape. Any problem is a `CheckpointError` naming the file and what is wrong.
    public static func load(_ path: String, for network: Network, optimizer kind: OptimizerConfig.Kind?) throws -> Checkpoint {
        func bad(_ why: String) -> CheckpointError { CheckpointError(path: path, problem: why) }
        let slots = kind == .adam ? 2 : 1
        let expectedBytes = network.parameterCount * 4 * (1 + slots)
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
        guard stored == checksum(metadata: m, data: file, header: header) else {
            throw bad("checksum mismatch: the file is corrupt (truncated or modified)")
        }
        guard m["model"] == network.spec.name else {
            throw bad("it holds model '\(m["model"] ?? "?")', not '\(network.spec.name)'")
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

        let byName = Dictionary(uniqueKeysWithValues: header.tensors.map { ($0.name, $0) })
        func gather(_ prefix: String, _ suffix: String) throws -> [Float] {
            var out = [Float](repeating: 0, count: network.parameterCount)
            for t in network.tensors {
                let name = prefix + t.name + suffix
                guard let info = byName[name] else { throw bad("tensor '\(name)' is missing") }
                guard info.shape == t.shape else { throw bad("tensor '\(name)' has shape \(info.shape), expected \(t.shape)") }
                let values = SafeTensors.values(of: info, in: file, header: header)
                out.replaceSubrange(t.offset..<t.offset + t.count, with: values)
            }
            return out
        }
        let parameters = try gather("", "")
        let slotNames = config.optimizer.kind == .adam ? ["exp_avg", "exp_avg_sq"] : ["momentum"]
        var state: [Float] = []
        for slot in slotNames { state += try gather("optimizer.", ".\(slot)") }
        let known = Set(network.tensors.map(\.name) + slotNames.flatMap { s in network.tensors.map { "optimizer.\($0.name).\(s)" } })
        if let extra = header.tensors.first(where: { !known.contains($0.name) }) {
            throw bad("unexpected tensor '\(extra.name)'")
        }
        return Checkpoint(path: path, metadata: m, progress: progress, config: config,
                          parameters: parameters, optimizerState: state)
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "checkpoint \(path): \(problem)" }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
