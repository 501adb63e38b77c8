import CIFAR10
import Foundation

/// A trained model read back to be used: its definition, weights, running statistics and the
/// input normalisation it was trained with, from a checkpoint (`checkpoints/step-*.safetensors`)
/// or a run's final `model.safetensors`.
///
///     let model = try TrainedModel.load("runs/r1/model.safetensors")
///     let network = model.makeNetwork(maxBatch: 100, threads: 2)   // weights in place, evaluation-ready
///
/// Both kinds of file record the model itself (`model_file`: the model as a model file), so a
/// model trained from `--model net.json` loads without that file; files written before that are
/// understood when they name a built-in model.
public struct TrainedModel {
    /// `format` of a run's `model.safetensors` (checkpoints have `Checkpoint.format`).
    public static let weightsFormat = "ddptrain-weights-1"

    public let path: String
    public let spec: ModelSpec
    public let parameters: [Float]
    /// Batch norm's running statistics, in the network's buffer layout.
    public let buffers: [Float]
    /// The statistics of the training set; nil in files written before they were recorded.
    public let normalization: Normalization?
    /// The class names of the training data (`batches.meta.txt`), when recorded.
    public let classNames: [String]?
    /// The training step the weights are from, when recorded.
    public let globalStep: Int?
    /// Whether the file carried a checksum (it held: `load` refuses a file whose does not). A
    /// `model.safetensors` written before ddptrain checksummed it has none.
    public let checksummed: Bool

    /// Metadata keys written with every checkpoint and `model.safetensors`.
    enum Key {
        static let modelFile = "model_file", normalization = "normalization", classNames = "class_names"
    }

    /// The metadata that makes a weights file usable on its own: the model as a model file, the
    /// input normalisation and the class names.
    public static func metadata(spec: ModelSpec, normalization: Normalization, classNames: [String]) -> [String: String] {
        let encoder = JSONEncoder.sorted
        return [Key.modelFile: spec.modelFileJSON,
                Key.normalization: String(decoding: (try? encoder.encode(normalization)) ?? Data(), as: UTF8.self),
                Key.classNames: String(decoding: (try? encoder.encode(classNames)) ?? Data(), as: UTF8.self)]
    }

    /// Reads and validates a checkpoint (checksum, every tensor's name and shape against the
    /// model it names) or a `model.safetensors` (its checksum if it has one, as files since
    /// ddptrain-weights-1 do; every tensor's name and shape). Problems are
    /// `CheckpointError`s naming the file.
    public static func load(_ path: String) throws -> TrainedModel {
        let file: Data
        let header: SafeTensors.Header
        do {
            file = try SafeTensors.readFile(path, maxBytes: 1 << 40)
            header = try SafeTensors.parseHeader(file, path: path)
        } catch let e as SafeTensors.FormatError {
            throw CheckpointError(path: path, problem: "\(e)".replacingOccurrences(of: "\(path) ", with: "")
                .replacingOccurrences(of: "cannot read \(path): ", with: ""))
        }
        let m = header.metadata
        let spec = try modelSpec(metadata: m, path: path)
        let probe = Network(spec: spec, maxBatch: 1, threads: 1)
        let parameters: [Float], buffers: [Float]
        if m["format"] == Checkpoint.format {
            let checkpoint = try Checkpoint.load(path, for: probe, optimizer: m["optimizer"].flatMap(OptimizerConfig.Kind.init(rawValue:)))
            (parameters, buffers) = (checkpoint.parameters, checkpoint.buffers)
        } else {
            if let stored = m["checksum"], stored != Checkpoint.checksum(metadata: m, file: file, header: header) {
                throw CheckpointError(path: path, problem: "checksum mismatch: the file is corrupt (truncated or modified)")
            }
            parameters = try gatherTensors(probe.tensors, file: file, header: header, path: path)
            buffers = try gatherTensors(probe.bufferTensors, file: file, header: header, path: path)
            try rejectUnknownTensors(header, known: probe.tensors.map(\.name) + probe.bufferTensors.map(\.name), path: path)
        }
        func decoded<T: Decodable>(_ key: String, as type: T.Type) throws -> T? {
            guard let text = m[key] else { return nil }
            guard let value = try? JSONDecoder().decode(type, from: Data(text.utf8)) else {
                throw CheckpointError(path: path, problem: "its '\(key)' metadata is unreadable")
            }
            return value
        }
        let normalization = try decoded(Key.normalization, as: Normalization.self)
        if let n = normalization, n.mean.count != CIFAR10.channels || n.std.count != CIFAR10.channels || !n.std.allSatisfy({ $0 > 0 }) {
            throw CheckpointError(path: path, problem: "its normalization metadata needs 3 means and 3 positive deviations")
        }
        return TrainedModel(path: path, spec: spec, parameters: parameters, buffers: buffers, normalization: normalization,
                            classNames: try decoded(Key.classNames, as: [String].self),
                            globalStep: m["global_step"].flatMap { Int($0) }, checksummed: m["checksum"] != nil)
    }

    /// The model a file's metadata describes: its `model_file`, else the built-in model it names;
    /// either way its layers must be the ones recorded in `layers`.
    static func modelSpec(metadata m: [String: String], path: String) throws -> ModelSpec {
        guard let name = m["model"] else {
            throw CheckpointError(path: path, problem: "not a ddptrain checkpoint or model.safetensors (no 'model' in its metadata)")
        }
        let spec: ModelSpec
        if let json = m[Key.modelFile] {
            do {
                spec = try ModelSpec.parse(json: json, file: "\(path) (model_file metadata)")
            } catch {
                throw CheckpointError(path: path, problem: "its recorded model does not load: \(error)")
            }
        } else if let builtIn = ModelSpec.named(name) {
            spec = builtIn
        } else {
            throw CheckpointError(path: path, problem: """
                its model '\(name)' is not built in, and the file predates recording model files in it; \
                retrain, or resume it once with the current ddptrain to rewrite it
                """, kind: .mismatched)
        }
        if let layers = m["layers"], layers != spec.description {
            throw CheckpointError(path: path, problem: "its metadata names model '\(name)', whose layers (\(spec.description)) are not the ones recorded (\(layers))", kind: .mismatched)
        }
        return spec
    }

    /// The file `eval --run-dir` and `predict --run-dir` use: the checkpoint `latest` names (else
    /// the newest), or, in a directory without checkpoints, its `model.safetensors`.
    public static func locate(runDirectory: String) throws -> String {
        if let checkpoint = CheckpointStore.checkpoints(inRunDirectory: runDirectory)
            .first(where: { FileManager.default.fileExists(atPath: $0) }) {
            return checkpoint
        }
        let weights = (runDirectory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights) else {
            throw UsageError("run directory \(runDirectory) holds no checkpoints/step-*.safetensors and no model.safetensors")
        }
        return weights
    }

    /// The run directory the file belongs to: the parent of `checkpoints/`, or the directory of
    /// a `model.safetensors`.
    public var runDirectory: String {
        let directory = (path as NSString).deletingLastPathComponent
        let parent = (directory as NSString).lastPathComponent == "checkpoints" ? (directory as NSString).deletingLastPathComponent : directory
        return parent.isEmpty ? "." : parent
    }

    /// eval and predict feed CIFAR-10-shaped images and read ten class scores.
    public func requireCIFAR10Shape() throws {
        guard spec.inputHeight == CIFAR10.side, spec.inputWidth == CIFAR10.side, spec.inputChannels == CIFAR10.channels,
              spec.classes == CIFAR10.classCount else {
            throw UsageError("""
                \(path): model '\(spec.name)' takes \(spec.inputHeight)x\(spec.inputWidth)x\(spec.inputChannels) \
                inputs and has \(spec.classes) classes; eval and predict work with CIFAR-10's 32x32x3 and 10 classes
                """)
        }
    }

    /// A network for batches of up to `maxBatch` images holding these weights, for evaluation
    /// (`forward(batch:training: nil)`).
    public func makeNetwork(maxBatch: Int, threads: Int) -> Network {
        let network = Network(spec: spec, maxBatch: maxBatch, threads: threads)
        parameters.withUnsafeBufferPointer { network.parameters.update(from: $0.baseAddress!, count: $0.count) }
        buffers.withUnsafeBufferPointer { if let base = $0.baseAddress { network.buffers.update(from: base, count: $0.count) } }
        return network
    }
}
