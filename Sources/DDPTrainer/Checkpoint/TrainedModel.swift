import CIFAR10
import Foundation

/// The weights of a trained model and what is needed to use them, from a checkpoint
/// (`checkpoints/step-*.safetensors`) or a run's final `model.safetensors`: the model definition,
/// parameters and running statistics in the network's layout, and the input normalisation.
///
///     let model = try TrainedModel.load(TrainedModel.path(inRunDirectory: "runs/resnet20"))
///     let network = model.network(maxBatch: 16, threads: 2)   // weights loaded, ready for forward
public struct TrainedModel {
    /// `format` of a run's `model.safetensors` (checkpoints have `Checkpoint.format`).
    public static let weightsFormat = "ddptrain-weights-1"

    public let path: String
    public let spec: ModelSpec
    public let metadata: [String: String]
    public let parameters: [Float]
    public let buffers: [Float]
    /// nil for files written before ddptrain recorded it.
    public let normalization: Normalization?
    /// Whether the file carried a checksum (it held: `load` refuses a file whose does not).
    /// A `model.safetensors` written before ddptrain checksummed it has none.
    public let checksummed: Bool

    /// The newest weights of a run directory: the checkpoint `latest` names (the run's end
    /// writes one too), else `model.safetensors`.
    public static func path(inRunDirectory directory: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw UsageError("run directory \(directory) does not exist")
        }
        if let latest = CheckpointStore.latest(inRunDirectory: directory), FileManager.default.fileExists(atPath: latest) {
            return latest
        }
        let weights = (directory as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights) else {
            throw UsageError("run directory \(directory) has neither a checkpoint (latest) nor model.safetensors: has it trained?")
        }
        return weights
    }

    /// Reads and verifies a file of trained weights. Any problem is a `UsageError` naming the file.
    public static func load(_ path: String) throws -> TrainedModel {
        func bad(_ problem: String) -> UsageError { UsageError("\(path): \(problem)") }
        let file: Data
        let header: SafeTensors.Header
        do {
            file = try SafeTensors.readFile(path, maxBytes: 1 << 40)
            header = try SafeTensors.parseHeader(file, path: path)
        } catch {
            throw UsageError("\(error)")
        }
        let m = header.metadata
        if let stored = m["checksum"], stored != Checkpoint.checksum(metadata: m, file: file, header: header) {
            throw bad("checksum mismatch: the file is corrupt (truncated or modified)")
        }
        let spec = try modelSpec(m, path: path)
        let probe = Network(spec: spec, maxBatch: 1, threads: 1)
        let parameters: [Float], buffers: [Float]
        do {
            parameters = try header.gather(probe.tensors, from: file)
            buffers = try header.gather(probe.bufferTensors, from: file)
        } catch {
            throw bad("not the weights of model \(spec.name): \(error.problem)")
        }
        var normalization: Normalization?
        if let json = m["normalization"] {
            guard let decoded = try? JSONDecoder().decode(Normalization.self, from: Data(json.utf8)) else {
                throw bad("its normalization metadata is unreadable")
            }
            normalization = decoded
        }
        return TrainedModel(path: path, spec: spec, metadata: m, parameters: parameters, buffers: buffers,
                            normalization: normalization, checksummed: m["checksum"] != nil)
    }

    /// The model a file was trained as: its recorded model file, else the built-in model of its
    /// name, else (checkpoints of model files before the definition was recorded) the model file
    /// its configuration names. Whichever it is must have the recorded layers.
    static func modelSpec(_ m: [String: String], path: String) throws -> ModelSpec {
        func bad(_ problem: String) -> UsageError { UsageError("\(path): \(problem)") }
        guard let name = m["model"], let layers = m["layers"] else {
            throw bad("not a ddptrain checkpoint or model.safetensors (no model in its metadata)")
        }
        let spec: ModelSpec
        if let json = m["model_file"] {
            do { spec = try ModelSpec.parse(json: json, file: "\(path) (model_file metadata)") } catch { throw UsageError("\(error)") }
        } else if let builtIn = ModelSpec.named(name), builtIn.description == layers {
            spec = builtIn
        } else if let config = m["config"].flatMap({ try? JSONDecoder().decode(TrainingConfig.self, from: Data($0.utf8)) }),
                  let file = try? ModelSpec.resolve(config.model) {
            spec = file
        } else {
            throw bad("model '\(name)' is not built in and the file does not record its definition")
        }
        guard spec.description == layers else {
            throw bad("model '\(name)' here has other layers (\(spec.description)) than the file records (\(layers))")
        }
        return spec
    }

    /// A network holding these weights, for inference (`forward(batch:training: nil)`).
    public func network(maxBatch: Int, threads: Int) -> Network {
        let network = Network(spec: spec, maxBatch: maxBatch, threads: threads)
        network.parameters.update(from: parameters, count: parameters.count)
        network.buffers.update(from: buffers, count: buffers.count)
        return network
    }
}
