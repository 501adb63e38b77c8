import ConvCore

/// Shape inference over a ModelSpec: per-sample activation sizes, the parameter table and the
/// batch-norm running statistics, with every layer checked against the shape it receives.
struct LayerPlan {
    indirect enum Step {
        case conv(ConvShape, weight: Int, bias: Int?)
        /// Per-sample `pixels` × `channels`; `scale` and `shift` index the parameters, `running`
        /// the running mean (then variance) in the buffers.
        case batchNorm(pixels: Int, channels: Int, scale: Int, shift: Int, running: Int)
        case relu, sigmoid, tanh
        case maxPool(PoolShape)
        case avgPool(PoolShape)
        case globalAvgPool(pixels: Int, channels: Int)
        case dropout(rate: Float)
        case flatten
        case dense(DenseShape, weight: Int, bias: Int)
        case residual(body: [Node], shortcut: [Node])
    }
    struct Node {
        let step: Step
        /// Per-sample sizes of the layer's input and output.
        let inputSize: Int, outputSize: Int
    }

    private(set) var nodes: [Node] = []
    private(set) var tensors: [ParameterTensor] = []
    private(set) var parameterCount = 0
    /// Batch norm's running statistics: state that is saved and restored but never trained.
    private(set) var buffers: [ParameterTensor] = []
    private(set) var bufferCount = 0
    private(set) var inputSize = 0, outputSize = 0
    private var counters: [String: Int] = [:]

    /// Throws a `ModelError` naming the layer (as `layers[3].body[1]`) whose input it cannot take.
    init(_ spec: ModelSpec) throws(ModelError) {
        let input = Activation(height: spec.inputHeight, width: spec.inputWidth, channels: spec.inputChannels)
        guard input.height >= 1, input.width >= 1, input.channels >= 1 else {
            throw ModelError(path: "input", problem: "height, width and channels must be at least 1")
        }
        guard spec.classes >= 2 else { throw ModelError(path: "classes", problem: "at least 2 classes are needed (got \(spec.classes))") }
        inputSize = input.size
        var shape = input
        nodes = try plan(spec.layers, path: "layers", shape: &shape)
        guard shape.size == spec.classes else {
            throw ModelError(path: "layers", problem: "the last layer gives \(shape) = \(shape.size) values per image, but the model has \(spec.classes) classes (end with dense(\(spec.classes)))")
        }
        outputSize = shape.size
    }

    /// Per-sample activation shape between layers.
    struct Activation: CustomStringConvertible {
        var height: Int, width: Int, channels: Int
        var size: Int { height * width * channels }
        var description: String { "\(height)x\(width)x\(channels)" }
    }

    private mutating func plan(_ layers: [LayerSpec], path: String, shape: inout Activation) throws(ModelError) -> [Node] {
        var out: [Node] = []
        for (i, layer) in layers.enumerated() {
            let here = "\(path)[\(i)]"
            func fail(_ problem: String) -> ModelError { ModelError(path: here, problem: "\(layer) on a \(shape) input: \(problem)") }
            let inSize = shape.size
            let step: Step
            switch layer {
            case let .conv(outChannels, k, stride, padding, bias):
                guard outChannels >= 1, k >= 1, stride >= 1, padding >= 0 else { throw fail("channels, kernel and stride must be at least 1, padding at least 0") }
                guard padding < k else { throw fail("padding \(padding) must be smaller than the kernel") }
                let s = ConvShape(batch: 1, height: shape.height, width: shape.width, inChannels: shape.channels,
                                  outChannels: outChannels, kernelHeight: k, kernelWidth: k, stride: stride, padding: padding)
                guard shape.height + 2 * padding >= k, shape.width + 2 * padding >= k else { throw fail("the \(k)x\(k) kernel is larger than the padded input") }
                let n = next("conv"), fanIn = k * k * shape.channels
                let w = addParameter("conv\(n).weight", [k, k, shape.channels, outChannels], fanIn: fanIn)
                let b = bias ? addParameter("conv\(n).bias", [outChannels], fanIn: fanIn) : nil
                step = .conv(s, weight: w, bias: b)
                shape = Activation(height: s.outHeight, width: s.outWidth, channels: outChannels)
            case .batchNorm:
                let n = next("bn"), c = shape.channels
                let scale = addParameter("bn\(n).weight", [c], fanIn: 0, decays: false)
                let shift = addParameter("bn\(n).bias", [c], fanIn: 0, decays: false)
                let running = addBuffer("bn\(n).running_mean", [c])
                _ = addBuffer("bn\(n).running_var", [c])
                step = .batchNorm(pixels: shape.height * shape.width, channels: c, scale: scale, shift: shift, running: running)
            case .relu: step = .relu
            case .sigmoid: step = .sigmoid
            case .tanh: step = .tanh
            case let .maxPool(k, stride), let .avgPool(k, stride):
                guard k >= 1, stride >= 1 else { throw fail("size and stride must be at least 1") }
                guard shape.height >= k, shape.width >= k else { throw fail("the \(k)x\(k) window is larger than the input") }
                let s = PoolShape(batch: 1, height: shape.height, width: shape.width, channels: shape.channels, size: k, stride: stride)
                if case .maxPool = layer { step = .maxPool(s) } else { step = .avgPool(s) }
                shape = Activation(height: s.outHeight, width: s.outWidth, channels: shape.channels)
            case .globalAvgPool:
                step = .globalAvgPool(pixels: shape.height * shape.width, channels: shape.channels)
                shape = Activation(height: 1, width: 1, channels: shape.channels)
            case let .dropout(rate):
                guard rate >= 0, rate < 1 else { throw fail("the rate must be in [0, 1)") }
                step = .dropout(rate: rate)
            case .flatten:
                step = .flatten
                shape = Activation(height: 1, width: 1, channels: shape.size)
            case let .dense(outputs):
                guard outputs >= 1 else { throw fail("outputs must be at least 1") }
                let n = next("dense")
                let w = addParameter("dense\(n).weight", [inSize, outputs], fanIn: inSize)
                let b = addParameter("dense\(n).bias", [outputs], fanIn: inSize, decays: false)
                step = .dense(DenseShape(batch: 1, inputs: inSize, outputs: outputs), weight: w, bias: b)
                shape = Activation(height: 1, width: 1, channels: outputs)
            case let .residual(bodySpec, shortcutSpec):
                guard !bodySpec.isEmpty else { throw ModelError(path: "\(here).body", problem: "a residual block needs at least one layer in its body") }
                var bodyShape = shape, shortcutShape = shape
                let body = try plan(bodySpec, path: "\(here).body", shape: &bodyShape)
                let shortcut = try plan(shortcutSpec, path: "\(here).shortcut", shape: &shortcutShape)
                guard bodyShape.height == shortcutShape.height, bodyShape.width == shortcutShape.width,
                      bodyShape.channels == shortcutShape.channels else {
                    throw ModelError(path: here, problem: """
                        the body gives \(bodyShape) but the \(shortcutSpec.isEmpty ? "identity shortcut" : "shortcut") \
                        gives \(shortcutShape); they must match to be added (project the shortcut with a 1x1 conv)
                        """)
                }
                step = .residual(body: body, shortcut: shortcut)
                shape = bodyShape
            }
            out.append(Node(step: step, inputSize: inSize, outputSize: shape.size))
        }
        return out
    }

    private mutating func next(_ kind: String) -> Int {
        counters[kind, default: 0] += 1
        return counters[kind]!
    }

    private mutating func addParameter(_ name: String, _ shape: [Int], fanIn: Int, decays: Bool? = nil) -> Int {
        // Weights decay; biases and batch norm's scale and shift do not (unless the optimizer decays everything).
        let t = ParameterTensor(name: name, offset: parameterCount, shape: shape, fanIn: fanIn,
                                decays: decays ?? name.hasSuffix(".weight"))
        tensors.append(t)
        parameterCount += t.count
        return t.offset
    }

    private mutating func addBuffer(_ name: String, _ shape: [Int]) -> Int {
        let t = ParameterTensor(name: name, offset: bufferCount, shape: shape, fanIn: 0, decays: false)
        buffers.append(t)
        bufferCount += t.count
        return t.offset
    }
}

/// A model definition that cannot be built: `path` names the layer (`layers[3].body[1]`) or field.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) { self.path = path; self.problem = problem }
    public var description: String { "\(path): \(problem)" }
}

extension ModelSpec {
    /// Checks that every layer fits the shape it receives (built-in models always do).
    public func validate() throws(ModelError) { _ = try LayerPlan(self) }
}

extension ConvShape {
    func batched(_ n: Int) -> ConvShape {
        ConvShape(batch: n, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
                  kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: padding)
    }
}
extension PoolShape {
    func batched(_ n: Int) -> PoolShape {
        PoolShape(batch: n, height: height, width: width, channels: channels, size: size, stride: stride)
    }
}
extension DenseShape {
    func batched(_ n: Int) -> DenseShape { DenseShape(batch: n, inputs: inputs, outputs: outputs) }
}
