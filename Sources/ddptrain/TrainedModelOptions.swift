import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation

/// Where `eval`, `predict`, `visualize` and `export` find a trained model: a file, or a run
/// directory's newest.
struct TrainedModelOptions: ParsableArguments {
    @Option(help: "A checkpoint (RUN_DIR/checkpoints/step-*.safetensors) or a run's final RUN_DIR/model.safetensors.")
    var checkpoint: String?

    @Option(help: "A run directory: the checkpoint its `latest` names, else its model.safetensors.")
    var runDir: String?

    func validate() throws {
        switch (checkpoint, runDir) {
        case (nil, nil): throw ValidationError("give the model: --checkpoint PATH or --run-dir DIR")
        case (.some, .some): throw ValidationError("--checkpoint and --run-dir both name a model; give one of them")
        default: break
        }
    }

    /// Reads and validates the model; it must take CIFAR-10 images.
    func load() throws -> TrainedModel {
        let path = try checkpoint ?? TrainedModel.locate(runDirectory: runDir!)
        let model = try TrainedModel.load(path)
        try model.requireCIFAR10Shape()
        return model
    }
}

/// `--threads` for the commands that run a model forward (`eval`, `predict`, `visualize`; not
/// `export`, which only copies weights).
struct InferenceThreads: ParsableArguments {
    @Option(help: "Compute threads (default: this process's share of the node's cores).")
    var threads: Int?

    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The threads of a process that is not one of several on its node.
    var alone: Int { ThreadPlan.decide(requested: threads, localRanks: 1, launchedByMPI: false).threads }

    /// The threads of one of `comm`'s ranks: --threads, else its share of the node.
    func threads(sharing comm: Communicator) -> Int {
        ThreadPlan.decide(requested: threads, localRanks: comm.localSize,
                          launchedByMPI: Communicator.environmentInt("OMPI_COMM_WORLD_SIZE") != nil).threads
    }
}

/// The input statistics to normalise with: the model's own, else (files from before they were
/// recorded) those of the training set in `dataDirectory`, as training measured them.
func normalization(of model: TrainedModel, dataDirectory: String?) throws -> (Normalization, source: String) {
    if let recorded = model.normalization { return (recorded, "recorded in the model file") }
    guard let dataDirectory else {
        throw UsageError("\(model.path) predates recording its input normalisation; pass --data DIR (the data it was trained on) to measure it")
    }
    return (Normalization.measure(try loadCIFAR10(directory: dataDirectory, split: .train)), "measured on the training set in \(dataDirectory)")
}

/// Class names: the data directory's `batches.meta.txt`, else the names recorded with the
/// model, else CIFAR-10's.
func classNames(of model: TrainedModel, dataDirectory: String?) -> [String] {
    if let dataDirectory, FileManager.default.fileExists(atPath: (dataDirectory as NSString).appendingPathComponent(CIFAR10.metaFile)) {
        return loadClassNames(directory: dataDirectory)
    }
    if let names = model.classNames, names.count == model.spec.classes { return names }
    return CIFAR10.defaultClassNames
}

/// What a command's user reads about the model: "tf-tutorial from runs/r1/model.safetensors (global step 790)".
func describe(_ model: TrainedModel) -> String {
    "\(model.spec.name) from \(model.path)" + (model.globalStep.map { " (global step \($0))" } ?? "")
}

extension JSONEncoder {
    /// Sorted snake_case keys, two-space indentation: stable output for scripts and diffs.
    static var report: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }
}
