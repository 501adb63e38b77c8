import ArgumentParser
import DDPTrainer
import Foundation

struct Export: SingleProcessCommand {
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

    @OptionGroup var model: TrainedModelOptions

    @Option(help: ArgumentHelp("""
        The training data, to measure the input normalisation from; only for files written before \
        ddptrain recorded it (used only then).
        """, valueName: "dir"))
    var data: String?

    func run() throws {
        let model = try self.model.load()
        let inputStatistics = try normalization(of: model, dataDirectory: data).0
        if !model.checksummed {
            FileHandle.standardError.write(Data("warning: \(model.path) has no checksum (written by an older ddptrain): its integrity is not verified\n".utf8))
        }
        let network = model.makeNetwork(maxBatch: 1, threads: 1)
        var provenance = ["source": model.path]
        provenance["global_step"] = model.globalStep.map(String.init)
        let bytes = try ONNXExporter.export(network, normalization: inputStatistics, metadata: provenance)
        do {
            try writeAtomically(Data(bytes), to: onnx)
        } catch {
            throw UsageError("\(error)")
        }
        let spec = model.spec
        print("""
            wrote \(onnx): \(describe(model)), \(network.parameterCount.formatted()) parameters; \
            input 'image' float32 NCHW [N, \(spec.inputChannels), \(spec.inputHeight), \(spec.inputWidth)] RGB / 255, \
            output 'logits' [N, \(spec.classes)]
            """)
    }
}
