import CIFAR10
import Protobuf

/// Writes a network's inference graph with its weights as an ONNX model (opset 17), so a model
/// trained here runs in onnxruntime, TensorRT, OpenVINO, Core ML converters and the like.
///
/// The graph takes `image`, float32 NCHW `[N, C, H, W]` with RGB pixel values / 255 (in [0, 1],
/// as torchvision's `ToTensor` gives them), subtracts the training set's per-channel mean and
/// divides by its standard deviation (the first two nodes), and returns `logits`, float32
/// `[N, classes]`, unnormalised class scores (softmax gives probabilities). Batch norm runs in
/// inference mode on the running statistics with our epsilon; dropout is left out (the identity
/// at inference, as our inverted dropout needs no rescaling).
///
/// Our tensors are channels-last; ONNX's are channels-first. Conv weights are transposed from
/// `[kh][kw][in][out]` to `[out][in][kh][kw]`; dense weights `[in][out]` are Gemm's B as they are.
/// Flattening a spatial map (explicitly, or by a dense layer on it) is a Transpose to NHWC and
/// then Flatten, so the dense weights see their inputs in our (h, w, c) order.
///
///     let bytes = try ONNXExporter.export(network, normalization: norm, metadata: ["source": path])
///     try Data(bytes).write(to: URL(fileURLWithPath: "model.onnx"))
public enum ONNXExporter {
    public static func export(_ network: Network, normalization: Normalization,
                              metadata: [String: String] = [:]) throws -> [UInt8] {
        let spec = network.spec
        guard normalization.mean.count == spec.inputChannels, normalization.std.count == spec.inputChannels else {
            throw UsageError("the normalisation has \(normalization.mean.count) channels but model \(spec.name) takes \(spec.inputChannels)")
        }
        let plan = try LayerPlan(spec)
        var graph = ONNXGraphBuilder(network: network)
        let input = ONNXGraphBuilder.Value(name: "image", height: spec.inputHeight, width: spec.inputWidth,
                                           channels: spec.inputChannels, is4D: true)
        let normalized = graph.normalize(input, normalization)
        let result = graph.flattenNHWC(graph.emit(plan.nodes, from: normalized))
        graph.renameFinalOutput(result, to: "logits")

        let doc = """
            ddptrain model '\(spec.name)': \(spec.description). \
            Input 'image': float32 NCHW [N, \(spec.inputChannels), \(spec.inputHeight), \(spec.inputWidth)], RGB, \
            pixel values / 255 in [0, 1]; the training set's per-channel normalisation (x - mean) / std, \
            mean \(normalization.mean), std \(normalization.std), is part of the graph. \
            Output 'logits': float32 [N, \(spec.classes)], unnormalised class scores (softmax gives probabilities). \
            Batch norm uses the running statistics; dropout is omitted (identity at inference).
            """
        var model = ProtobufWriter()
        model.int64(1, ONNXProto.irVersion)
        model.string(2, "ddptrain")
        model.string(6, doc)
        model.message(7) { g in
            for node in graph.nodes { g.message(1) { node.write(to: &$0) } }
            g.string(2, spec.name)
            for t in graph.initializers {
                g.message(5) { ONNXProto.writeTensor(name: t.name, dims: t.dims, type: t.type, rawData: t.raw, to: &$0) }
            }
            g.message(11) {
                ONNXProto.writeValueInfo(name: "image", dims: [.symbol("N"), .size(spec.inputChannels), .size(spec.inputHeight), .size(spec.inputWidth)],
                                         doc: "float32 NCHW RGB, pixel values / 255 in [0, 1] (not normalised: the graph does that)", to: &$0)
            }
            g.message(12) {
                ONNXProto.writeValueInfo(name: "logits", dims: [.symbol("N"), .size(spec.classes)],
                                         doc: "unnormalised class scores (apply softmax for probabilities)", to: &$0)
            }
        }
        model.message(8) { $0.int64(2, ONNXProto.opsetVersion) }
        let properties = metadata.merging([
            "model": spec.name,
            "layers": spec.description,
            "input": "image: float32 NCHW [N, \(spec.inputChannels), \(spec.inputHeight), \(spec.inputWidth)], RGB / 255 in [0, 1]",
            "normalization_mean": normalization.mean.map { "\($0)" }.joined(separator: ","),
            "normalization_std": normalization.std.map { "\($0)" }.joined(separator: ","),
            "output": "logits: float32 [N, \(spec.classes)]",
        ]) { mine, _ in mine }
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            model.message(14) { ONNXProto.writeEntry(key: key, value: value, to: &$0) }
        }
        return model.bytes
    }
}

/// Accumulates the nodes and initializers of the graph while walking the layer plan.
struct ONNXGraphBuilder {
    /// A tensor of the graph with its per-sample shape in our terms; 4-D values are NCHW, 2-D
    /// ones `[N, channels]` (height and width 1).
    struct Value {
        var name: String
        var height: Int, width: Int, channels: Int
        var is4D: Bool
    }

    struct Initializer {
        let name: String
        let dims: [Int]
        let type: ONNXProto.ElementType
        let raw: [UInt8]
    }

    private(set) var nodes: [ONNXProto.Node] = []
    private(set) var initializers: [Initializer] = []
    private var uses: [String: Int] = [:]
    private let parameters: UnsafePointer<Float>, buffers: UnsafePointer<Float>
    /// Parameter and running-statistics tensors by their offset, as the plan's steps locate them.
    private let tensorAt: [Int: ParameterTensor], bufferAt: [Int: ParameterTensor]

    init(network: Network) {
        parameters = UnsafePointer(network.parameters)
        buffers = UnsafePointer(network.buffers)
        tensorAt = Dictionary(uniqueKeysWithValues: network.tensors.map { ($0.offset, $0) })
        bufferAt = Dictionary(uniqueKeysWithValues: network.bufferTensors.map { ($0.offset, $0) })
    }

    /// `relu`, `relu_2`, …: node and value names stay unique and readable.
    private mutating func unique(_ base: String) -> String {
        uses[base, default: 0] += 1
        return uses[base]! == 1 ? base : "\(base)_\(uses[base]!)"
    }

    /// Adds a node; its output value has the node's (unique) name.
    private mutating func node(_ op: String, _ base: String, _ inputs: [String], _ attributes: [ONNXProto.Attribute] = []) -> String {
        let name = unique(base)
        nodes.append(ONNXProto.Node(op: op, name: name, inputs: inputs, output: name, attributes: attributes))
        return name
    }

    private mutating func floats(_ name: String, _ dims: [Int], _ values: [Float]) -> String {
        initializers.append(Initializer(name: name, dims: dims, type: .float, raw: values.withUnsafeBytes { Array($0) }))
        return name
    }

    private mutating func floats(_ name: String, _ dims: [Int], at pointer: UnsafePointer<Float>) -> String {
        floats(name, dims, Array(UnsafeBufferPointer(start: pointer, count: dims.reduce(1, *))))
    }

    private mutating func int64s(_ name: String, _ values: [Int64]) -> String {
        initializers.append(Initializer(name: name, dims: [values.count], type: .int64, raw: values.withUnsafeBytes { Array($0) }))
        return name
    }

    /// The layer name a parameter tensor belongs to: `conv3.weight` → `conv3`.
    private func layerName(ofParameterAt offset: Int) -> String {
        String(tensorAt[offset]!.name.split(separator: ".").first!)
    }

    /// (x − mean) / std per channel, as `BatchAssembler` normalises training images.
    mutating func normalize(_ x: Value, _ n: Normalization) -> Value {
        let shape = [1, n.mean.count, 1, 1]
        let centred = node("Sub", "subtract_mean", [x.name, floats("normalization.mean", shape, n.mean)])
        var out = x
        out.name = node("Div", "divide_by_std", [centred, floats("normalization.std", shape, n.std)])
        return out
    }

    /// Back to NCHW `[N, C, 1, 1]` for an op that needs an image (a dense layer's output feeding a conv).
    mutating func as4D(_ x: Value) -> Value {
        if x.is4D { return x }
        let shape = int64s(unique("shape_\(x.channels)x1x1"), [0, Int64(x.channels), 1, 1])  // 0: keep the batch size
        return Value(name: node("Reshape", "reshape", [x.name, shape]), height: 1, width: 1, channels: x.channels, is4D: true)
    }

    /// `[N, H·W·C]` in our channels-last order: a spatial map is transposed to NHWC first.
    mutating func flattenNHWC(_ x: Value) -> Value {
        if !x.is4D { return x }
        var input = x.name
        if x.height * x.width > 1 { input = node("Transpose", "to_nhwc", [input], [.ints("perm", [0, 2, 3, 1])]) }
        return Value(name: node("Flatten", "flatten", [input], [.int("axis", 1)]), height: 1, width: 1,
                     channels: x.height * x.width * x.channels, is4D: false)
    }

    mutating func emit(_ plan: [LayerPlan.Node], from input: Value) -> Value {
        var x = input
        for layer in plan {
            switch layer.step {
            case let .conv(s, w, b):
                let name = layerName(ofParameterAt: w)
                let (k, kw, cin, cout) = (s.kernelHeight, s.kernelWidth, s.inChannels, s.outChannels)
                let ours = parameters + w
                var oihw = [Float](repeating: 0, count: s.weightCount)
                for o in 0..<cout {
                    for i in 0..<cin {
                        for y in 0..<k {
                            for xx in 0..<kw { oihw[((o * cin + i) * k + y) * kw + xx] = ours[((y * kw + xx) * cin + i) * cout + o] }
                        }
                    }
                }
                var inputs = [as4D(x).name, floats("\(name).weight", [cout, cin, k, kw], oihw)]
                if let b { inputs.append(floats("\(name).bias", [cout], at: parameters + b)) }
                let p = Int64(s.padding), st = Int64(s.stride)
                x = Value(name: node("Conv", name, inputs, [.ints("kernel_shape", [Int64(k), Int64(kw)]), .ints("strides", [st, st]),
                                                            .ints("pads", [p, p, p, p])]),
                          height: s.outHeight, width: s.outWidth, channels: cout, is4D: true)
            case let .batchNorm(_, c, scale, shift, running):
                let name = layerName(ofParameterAt: scale)
                let mean = bufferAt[running]!, variance = bufferAt[running + c]!
                let inputs = [as4D(x).name, floats("\(name).weight", [c], at: parameters + scale), floats("\(name).bias", [c], at: parameters + shift),
                              floats(mean.name, [c], at: buffers + mean.offset), floats(variance.name, [c], at: buffers + variance.offset)]
                x = Value(name: node("BatchNormalization", name, inputs, [.float("epsilon", Float(CompiledBatchNorm.epsilon))]),
                          height: x.height, width: x.width, channels: c, is4D: true)
            case .relu: x.name = node("Relu", "relu", [x.name])
            case .sigmoid: x.name = node("Sigmoid", "sigmoid", [x.name])
            case .tanh: x.name = node("Tanh", "tanh", [x.name])
            case let .maxPool(s), let .avgPool(s):
                let op: String
                if case .maxPool = layer.step { op = "MaxPool" } else { op = "AveragePool" }
                let attributes: [ONNXProto.Attribute] = [.ints("kernel_shape", [Int64(s.size), Int64(s.size)]),
                                                         .ints("strides", [Int64(s.stride), Int64(s.stride)])]
                x = Value(name: node(op, op == "MaxPool" ? "maxpool" : "avgpool", [as4D(x).name], attributes),
                          height: s.outHeight, width: s.outWidth, channels: s.channels, is4D: true)
            case let .globalAvgPool(_, c):
                x = Value(name: node("GlobalAveragePool", "globalavgpool", [as4D(x).name]), height: 1, width: 1, channels: c, is4D: true)
            case .dropout:
                break
            case .flatten:
                x = flattenNHWC(x)
            case let .dense(s, w, b):
                let name = layerName(ofParameterAt: w)
                let inputs = [flattenNHWC(x).name, floats("\(name).weight", [s.inputs, s.outputs], at: parameters + w),
                              floats("\(name).bias", [s.outputs], at: parameters + b)]
                x = Value(name: node("Gemm", name, inputs), height: 1, width: 1, channels: s.outputs, is4D: false)
            case let .residual(body, shortcut):
                var b = emit(body, from: x), s = emit(shortcut, from: x)
                if b.is4D != s.is4D { (b, s) = (as4D(b), as4D(s)) }
                x = Value(name: node("Add", "add", [b.name, s.name]), height: b.height, width: b.width, channels: b.channels, is4D: b.is4D)
            }
        }
        return x
    }

    /// Every layer either adds a node or passes its input through, so the result is the last
    /// node's output; it takes the graph output's name.
    mutating func renameFinalOutput(_ result: Value, to name: String) {
        precondition(nodes.last?.output == result.name, "the graph's result is not its last node's output")
        nodes[nodes.count - 1].output = name
    }
}
