import CIFAR10
import DDPTrainer
import Foundation
import Testing

/// ONNX export judged by the real `onnx` checker and `onnxruntime` (pip packages installed by
/// `scripts/install-deps.sh --tests`): the exported graph must compute ddptrain's logits.
@Suite struct ONNXExportTests {
    /// Checks the model (full check, with strict shape inference), runs it on float32 NCHW images
    /// from a raw file and writes the logits raw.
    static let runner = """
        import sys
        import numpy as np, onnx, onnxruntime as ort
        model_path, images_path, count, logits_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        (image,), (logits,) = session.get_inputs(), session.get_outputs()
        assert (image.name, logits.name) == ("image", "logits"), (image.name, logits.name)
        images = np.fromfile(images_path, dtype="<f4").reshape([count] + list(image.shape[1:]))
        session.run(["logits"], {"image": images})[0].astype("<f4").tofile(logits_path)
        print("onnxruntime", ort.__version__, "input", image.shape, "output", logits.shape)
        """

    /// Logits of `network` (evaluation mode) and of onnxruntime on the ONNX file for the same
    /// images: ours normalised by `BatchAssembler` as in training, onnxruntime's given as pixel / 255.
    static func logits(_ network: Network, onnx path: String, images: LabeledImages,
                       normalization: Normalization) throws -> (ours: [Float], onnxruntime: [Float]) {
        let n = images.count
        assemble(images, normalization: normalization, into: network)
        network.forward(batch: n, training: nil)
        let ours = Array(UnsafeBufferPointer(start: network.logits, count: n * network.classes))

        let dir = (path as NSString).deletingLastPathComponent
        let pixels = images.pixels.map { Float($0) / 255 }  // CIFAR-10 records are planar RGB: already NCHW
        try pixels.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/images.f32")) }
        let py = try CLI.run(["python3", "-c", runner, path, dir + "/images.f32", "\(n)", dir + "/logits.f32"])
        try #require(py.status == 0, "onnx checker or onnxruntime failed (pip install onnx onnxruntime):\n\(py.output)")
        let raw = try Data(contentsOf: URL(fileURLWithPath: dir + "/logits.f32"))
        let theirs = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (ours, theirs)
    }

    /// The images, normalised as in training, into the network's input.
    static func assemble(_ images: LabeledImages, normalization: Normalization, into network: Network) {
        let ids = (0..<Int32(images.count)).map { $0 }
        var labels = [Int32](repeating: 0, count: images.count)
        ids.withUnsafeBufferPointer { indices in
            BatchAssembler(images: images, normalization: normalization)
                .assemble(indices: indices, augment: false, seed: 0, epoch: 0, into: network.input, labels: &labels)
        }
    }

    static func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// Deterministic pseudo-random bytes and floats (SplitMix64).
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24) }
    }

    static func randomImages(_ count: Int, seed: UInt64) -> LabeledImages {
        var rng = Random(state: seed)
        return LabeledImages(pixels: (0..<count * CIFAR10.imageBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                             labels: [UInt8](repeating: 0, count: count))
    }

    @Test("every built-in model exports to ONNX that passes the checker and gives ddptrain's logits in onnxruntime",
          arguments: ModelSpec.all.map(\.name))
    func builtInModel(name: String) throws {
        let spec = try #require(ModelSpec.named(name))
        let network = Network(spec: spec, maxBatch: 3, threads: 2)
        network.initializeParameters(seed: 5)
        // Batch norm's scale and shift away from their identity start, so their export is exercised.
        var rng = Random(state: 11)
        for t in network.tensors where t.fanIn == 0 {
            let (lo, hi): (Float, Float) = t.name.hasSuffix(".weight") ? (0.5, 1.5) : (-0.5, 0.5)
            for i in 0..<t.count { network.parameters[t.offset + i] = rng.uniform(lo, hi) }
        }
        let normalization = Normalization(mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26])
        let images = Self.randomImages(3, seed: 17)
        // Running statistics of these very images (training-mode passes, momentum 0.1), so that
        // in evaluation mode every layer keeps its scale and the logits depend on the image.
        Self.assemble(images, normalization: normalization, into: network)
        let ids: [Int32] = [0, 1, 2]
        for _ in 0..<20 {
            ids.withUnsafeBufferPointer { network.forward(batch: 3, training: DropoutKey(seed: 0, epoch: 0, sampleIDs: $0.baseAddress!)) }
        }
        #expect(network.bufferTensors.isEmpty || (0..<network.bufferCount).contains { network.buffers[$0] != 0 && network.buffers[$0] != 1 })
        let path = CLI.temporaryDirectory() + "/\(name).onnx"
        try Data(ONNXExporter.export(network, normalization: normalization)).write(to: URL(fileURLWithPath: path))
        let (ours, theirs) = try Self.logits(network, onnx: path, images: images, normalization: normalization)
        #expect(theirs.count == ours.count)
        let difference = Self.maxAbsDifference(ours, theirs)
        #expect(difference <= 1e-4, "\(name): max |ddptrain − onnxruntime| = \(difference); logits up to \(ours.map(abs).max()!)")
        // Logits that differ between images show the comparison is not between constants.
        #expect(Self.maxAbsDifference(Array(ours[0..<10]), Array(ours[10..<20])) > 1e-3, "\(name): \(ours)")
    }

    /// Every layer kind and the awkward joins: a dense layer straight on a 6x6 map (no flatten),
    /// batch norm after a dense layer, max pooling that drops a row, convs with and without bias,
    /// identity and projection shortcuts, sigmoid, tanh and dropout.
    static let everyLayerModel = """
        {"name": "every-layer", "recipe": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
         "layers": [
           {"conv": 8, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
           {"residual": [{"conv": 8, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "tanh",
                         {"conv": 8, "kernel": 3, "padding": 1}]},
           {"residual": [{"conv": 12, "kernel": 3, "stride": 2, "padding": 1, "bias": false}, "batchnorm", "relu",
                         {"conv": 12, "kernel": 3, "padding": 1, "bias": false}, "batchnorm"],
            "shortcut": [{"conv": 12, "kernel": 1, "stride": 2, "bias": false}, "batchnorm"]},
           "sigmoid", {"maxpool": 3, "stride": 2}, {"conv": 16, "kernel": 5, "padding": 2}, {"avgpool": 2, "stride": 1},
           {"dropout": 0.3}, {"dense": 24}, "batchnorm", "relu", {"dropout": 0.2}, {"dense": 10}
         ]}
        """

    @Test("a model file trained briefly exports from its run directory and from model.safetensors with the same logits as ddptrain")
    func trainedModelFile() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        try Self.everyLayerModel.write(toFile: dir + "/every-layer.json", atomically: true, encoding: .utf8)
        let run = dir + "/run"
        let train = try CLI.run([CLI.binary, "--data", data, "--run-dir", run, "--model", dir + "/every-layer.json",
                                 "--batch-size", "8", "--epochs", "1", "--max-steps", "6", "--threads", "1"])
        try #require(train.status == 0, "\(train.output)")
        // The definition travels with the weights: the model file itself is no longer needed.
        try FileManager.default.removeItem(atPath: dir + "/every-layer.json")

        let model = try TrainedModel.load(run + "/model.safetensors")
        #expect(model.checksummed)
        let normalization = try #require(model.normalization)
        #expect(normalization == Normalization.measure(try loadCIFAR10(directory: data, split: .train)))
        // Six steps of training moved batch norm's running statistics away from (0, 1).
        #expect(model.buffers.contains { $0 != 0 && $0 != 1 })
        let test = try loadCIFAR10(directory: data, split: .test)
        let images = LabeledImages(pixels: Array(test.pixels.prefix(4 * CIFAR10.imageBytes)), labels: Array(test.labels.prefix(4)))
        for source in [["--run-dir", run], ["--checkpoint", run + "/model.safetensors"]] {
            let onnx = CLI.temporaryDirectory() + "/every-layer.onnx"
            let export = try CLI.run([CLI.binary, "export", "--onnx", onnx] + source)
            try #require(export.status == 0, "\(export.output)")
            #expect(export.output.contains("wrote \(onnx): every-layer"), "\(export.output)")
            let (ours, theirs) = try Self.logits(model.makeNetwork(maxBatch: 4, threads: 1), onnx: onnx, images: images,
                                                 normalization: normalization)
            let difference = Self.maxAbsDifference(ours, theirs)
            #expect(difference <= 1e-4, "\(source): max |ddptrain − onnxruntime| = \(difference)")
        }
    }

    /// Flips one bit of `path` at `offset` (negative: from the end).
    static func flipBit(_ path: String, at offset: Int) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[offset < 0 ? bytes.count + offset : offset] ^= 0x01  // in the metadata, a digit becomes another digit
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// tf-tutorial trained for two steps on a small synthetic set: (data directory, run directory).
    static func trainTwoSteps() throws -> (data: String, run: String) {
        let data = try CLI.makeData()
        let run = CLI.temporaryDirectory()
        let train = try CLI.run([CLI.binary, "--data", data, "--run-dir", run, "--batch-size", "8", "--max-steps", "2", "--threads", "1"])
        try #require(train.status == 0, "\(train.output)")
        return (data, run)
    }

    @Test("model.safetensors carries a checksum Python's safetensors ignores, and inspect and export report a flipped bit")
    func weightsIntegrity() throws {
        let (_, run) = try Self.trainTwoSteps()
        let weights = run + "/model.safetensors"
        let inspect = try CLI.run([CLI.binary, "inspect", weights])
        #expect(inspect.status == 0 && inspect.output.contains("checksum: OK"), "\(inspect.output)")
        let py = try CLI.run(["python3", "-c", """
            import sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], "numpy") as f:
                print(sorted(f.keys())[0], f.metadata()["format"], f.metadata()["checksum"])
            """, weights])
        #expect(py.status == 0 && py.output.contains("ddptrain-weights-1"), "\(py.output)")

        let header = try #require(Data(contentsOf: URL(fileURLWithPath: weights)).range(of: Data("\"global_step\":\"2\"".utf8)))
        for (what, offset) in [("a tensor byte", -3), ("the metadata", header.upperBound - 2)] {
            let damaged = CLI.temporaryDirectory() + "/model.safetensors"
            try FileManager.default.copyItem(atPath: weights, toPath: damaged)
            try Self.flipBit(damaged, at: offset)
            let report = try CLI.run([CLI.binary, "inspect", damaged])
            #expect(report.status == 1, "\(what): \(report.output)")
            #expect(report.output.contains("checksum: MISMATCH") && report.output.contains("error: \(damaged): checksum mismatch"),
                    "\(what): \(report.output)")
            let export = try CLI.run([CLI.binary, "export", "--onnx", damaged + ".onnx", "--checkpoint", damaged])
            #expect(export.status != 0 && export.output.contains("checksum mismatch: the file is corrupt"), "\(what): \(export.output)")
            #expect(!FileManager.default.fileExists(atPath: damaged + ".onnx"))
        }
    }

    @Test("a model.safetensors from before the checksum and normalisation were recorded exports with --data, with a warning")
    func olderWeightsFile() throws {
        let (data, run) = try Self.trainTwoSteps()
        // Rewritten with the metadata an older ddptrain wrote: no format, checksum or normalisation.
        let (metadata, tensors) = try SafeTensors.read(run + "/model.safetensors")
        let old = CLI.temporaryDirectory() + "/model.safetensors"
        let kept = metadata.filter { ["model", "layers", "layout", "seed", "global_batch", "global_step"].contains($0.key) }
        try tensors.flatMap(\.values).withUnsafeBufferPointer { all in
            var offset = 0
            let views = tensors.map { t -> (name: String, shape: [Int], data: UnsafePointer<Float>) in
                defer { offset += t.values.count }
                return (t.name, t.shape, all.baseAddress! + offset)
            }
            try SafeTensors.write(to: old, tensors: views, metadata: kept)
        }
        let onnx = old + ".onnx"
        let without = try CLI.run([CLI.binary, "export", "--onnx", onnx, "--checkpoint", old])
        #expect(without.status != 0 && without.output.contains("predates recording its input normalisation; pass --data DIR"),
                "\(without.output)")
        let with = try CLI.run([CLI.binary, "export", "--onnx", onnx, "--checkpoint", old, "--data", data])
        try #require(with.status == 0, "\(with.output)")
        #expect(with.output.contains("warning: \(old) has no checksum"), "\(with.output)")
        let model = try TrainedModel.load(old)
        #expect(!model.checksummed && model.normalization == nil)
        let normalization = Normalization.measure(try loadCIFAR10(directory: data, split: .train))
        let (ours, theirs) = try Self.logits(model.makeNetwork(maxBatch: 3, threads: 1), onnx: onnx,
                                             images: Self.randomImages(3, seed: 2), normalization: normalization)
        #expect(Self.maxAbsDifference(ours, theirs) <= 1e-4)
    }

    @Test("export refuses bad input with one line naming the problem")
    func badInput() throws {
        let dir = CLI.temporaryDirectory()
        let plain = dir + "/plain.safetensors"
        let one: [Float] = [1]
        try one.withUnsafeBufferPointer {
            try SafeTensors.write(to: plain, tensors: [("x", [1], $0.baseAddress!)], metadata: [:])
        }
        let cases: [([String], String)] = [
            (["export", "--onnx", dir + "/a.onnx"], "give the model: --checkpoint PATH or --run-dir DIR"),
            (["export", "--onnx", dir + "/a.onnx", "--run-dir", dir, "--checkpoint", plain], "--checkpoint and --run-dir both name a model"),
            (["export", "--onnx", dir + "/a.onnx", "--run-dir", dir], "run directory \(dir) holds no checkpoints/step-*.safetensors and no model.safetensors"),
            (["export", "--onnx", dir + "/a.onnx", "--checkpoint", dir + "/missing.safetensors"], "checkpoint \(dir)/missing.safetensors: no such file or not readable"),
            (["export", "--onnx", dir + "/a.onnx", "--checkpoint", plain], "not a ddptrain checkpoint or model.safetensors"),
            // Export only copies weights: it offers no --threads that would do nothing.
            (["export", "--onnx", dir + "/a.onnx", "--checkpoint", plain, "--threads", "2"], "Unknown option '--threads'"),
        ]
        for (arguments, message) in cases {
            let r = try CLI.run([CLI.binary] + arguments)
            #expect(r.status != 0 && r.output.contains(message), "\(arguments): \(r.output)")
            #expect(!r.output.contains("Fatal error"), "\(arguments): \(r.output)")
        }
    }
}
