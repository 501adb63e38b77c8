import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trained model as ONNX: the inference graph, its weights and the input normalisation.",
        discussion: """
            Input 'image': float32 NCHW [N, 3, 32, 32], RGB pixel values / 255 (in [0, 1]); the training \
            set's per-channel mean and std are subtracted and divided inside the graph. Output 'logits': \
            float32 [N, 10] (softmax gives probabilities). Batch norm uses its running statistics; dropout \
            is left out.
              ddptrain export --onnx resnet20.onnx --run-dir runs/resnet20
              ddptrain export --onnx m.onnx --checkpoint runs/r1/model.safetensors
            """)

    @Option(help: ArgumentHelp("The ONNX file to write.", valueName: "file"))
    var onnx: String

    @Option(help: ArgumentHelp("A checkpoint, or a run's model.safetensors.", valueName: "path"))
    var checkpoint: String?

    @Option(help: ArgumentHelp("A run directory: its latest checkpoint, else its model.safetensors.", valueName: "dir"))
    var runDir: String?

    @Option(help: ArgumentHelp("""
        The training data, to measure the input normalisation from; only for files written before \
        ddptrain recorded it (used only then).
        """, valueName: "dir"))
    var data: String?

    func validate() throws {
        if (checkpoint == nil) == (runDir == nil) { throw ValidationError("give either --checkpoint PATH or --run-dir DIR") }
    }

    func run() throws {
        let path = try checkpoint ?? TrainedModel.path(inRunDirectory: runDir!)
        let model = try TrainedModel.load(path)
        let normalization: Normalization
        if let recorded = model.normalization {
            normalization = recorded
        } else if let data {
            normalization = Normalization.measure(try loadCIFAR10(directory: data, split: .train))
        } else {
            throw UsageError("\(path) records no input normalisation (written by an older ddptrain): add --data DIR, the training data, to measure it")
        }
        if !model.checksummed {
            FileHandle.standardError.write(Data("warning: \(path) has no checksum (written by an older ddptrain): its integrity is not verified\n".utf8))
        }
        let network = model.network(maxBatch: 1, threads: 1)
        var provenance = ["source": path]
        provenance["global_step"] = model.metadata["global_step"]
        let bytes = try ONNXExporter.export(network, normalization: normalization, metadata: provenance)
        do {
            try writeAtomically(Data(bytes), to: onnx)
        } catch {
            throw UsageError("\(error)")
        }
        let spec = model.spec
        print("""
            wrote \(onnx): \(spec.name), \(network.parameterCount.formatted()) parameters, from \(path); \
            input 'image' float32 NCHW [N, \(spec.inputChannels), \(spec.inputHeight), \(spec.inputWidth)] RGB / 255, \
            output 'logits' [N, \(spec.classes)]
            """)
    }
}
