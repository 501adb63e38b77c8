import ConvCore
import Dispatch

/// A named slice of the parameter buffer, for checkpoints and initialisation.
public struct ParameterTensor: Sendable, Equatable {
    public let name: String
    public let offset: Int
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    /// Fan-in of the layer that owns it: PyTorch's default init draws from ±1/√fanIn.
    public let fanIn: Int
}

/// Where dropout's randomness comes from: the same (seed, epoch, sample) always drops the
/// same units, whichever rank or batch position the sample lands in.
public struct DropoutKey {
    public let seed: UInt64
    public let epoch: Int
    public let sampleIDs: UnsafePointer<Int32>
    public init(seed: UInt64, epoch: Int, sampleIDs: UnsafePointer<Int32>) {
        self.seed = seed; self.epoch = epoch; self.sampleIDs = sampleIDs
    }
}

/// A sequential model compiled for a maximum batch: every buffer it will ever touch —
/// parameters, gradients, activations, scratch — is allocated here, once.
///
///     let net = Network(spec: .tfTutorial, maxBatch: 64, threads: 2)
///     net.initializeParameters(seed: 0)
///     /* write images into net.input */
///     net.forward(batch: 64, dropout: nil)
///     let (loss, correct) = net.loss(labels: labels, batch: 64, gradientScale: 1.0 / 64)
///     net.backward(batch: 64)          // net.gradients now holds dLoss/dParameters
public final class Network {
    public let spec: ModelSpec
    public let maxBatch: Int
    public let tensors: [ParameterTensor]
    public let parameterCount: Int
    /// All parameters in one allocation, in `tensors` order.
    public let parameters: UnsafeMutablePointer<Float>
    /// Same layout as `parameters`.
    public let gradients: UnsafeMutablePointer<Float>
    public let workspace: ConvWorkspace

    private let layers: [CompiledLayer]
    /// activations[l] is the input of layer l; activations[layers.count] holds the logits.
    private let activations: [UnsafeMutablePointer<Float>]
    private let gradientBuffers: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    private let logitGradient: UnsafeMutablePointer<Float>
    private var allocations: [UnsafeMutableRawPointer] = []

    /// When set, forward and backward add each layer's time to it (for `ddptrain bench`).
    public var profile: LayerProfile?

    public var input: UnsafeMutablePointer<Float> { activations[0] }
    public var logits: UnsafePointer<Float> { UnsafePointer(activations[layers.count]) }
    public var inputSize: Int { spec.inputHeight * spec.inputWidth * spec.inputChannels }
    public var classes: Int { spec.classes }
    public var threads: Int { workspace.pool.threads }

    public init(spec: ModelSpec, maxBatch: Int, threads: Int) {
        self.spec = spec
        self.maxBatch = maxBatch
        let plan = LayerPlan(spec)
        tensors = plan.tensors
        parameterCount = plan.parameterCount
        workspace = ConvWorkspace(threads: threads)

        var owned: [UnsafeMutableRawPointer] = []
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            owned.append(UnsafeMutableRawPointer(p))
            return p
        }
        parameters = floats(plan.parameterCount)
        gradients = floats(plan.parameterCount)

        var acts = [floats(maxBatch * plan.sizes[0])]
        var compiled: [CompiledLayer] = []
        var maxActivation = plan.sizes[0]
        for (l, step) in plan.steps.enumerated() {
            let outSize = plan.sizes[l + 1]
            let op: CompiledLayer.Op
            switch step {
            case let .conv(shape, w, b):
                op = .conv(shape, weight: w, bias: b)
                workspace.reserve(for: shape.batched(maxBatch))
            case .relu: op = .relu
            case let .maxPool(shape):
                let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: maxBatch * outSize)
                owned.append(UnsafeMutableRawPointer(argmax))
                op = .maxPool(shape, argmax: argmax)
            case let .dropout(rate): op = .dropout(rate: rate, mask: floats(maxBatch * outSize))
            case .flatten: op = .flatten
            case let .dense(shape, w, b):
                op = .dense(shape, weight: w, bias: b)
                workspace.reserve(for: shape.batched(maxBatch))
            }
            compiled.append(CompiledLayer(op: op, inputSize: plan.sizes[l], outputSize: outSize))
            // ReLU and flatten work in place: no backward pass needs their input.
            if step.worksInPlace { acts.append(acts[l]) } else { acts.append(floats(maxBatch * outSize)) }
            maxActivation = max(maxActivation, outSize)
        }
        layers = compiled
        activations = acts
        gradientBuffers = (floats(maxBatch * maxActivation), floats(maxBatch * maxActivation))
        logitGradient = floats(maxBatch * spec.classes)
        allocations = owned
    }

    deinit { allocations.forEach { $0.deallocate() } }

    /// PyTorch's default: weights and biases uniform in ±1/√fanIn (kaiming_uniform with a=√5),
    /// drawn from a stream keyed by (seed, tensor index) so every rank can reproduce it.
    public func initializeParameters(seed: UInt64) {
        for (i, t) in tensors.enumerated() {
            var rng = KeyedRandom(seed: seed, stream: .initialization, UInt64(i))
            let bound = 1 / Float(t.fanIn).squareRoot()
            for j in 0..<t.count {
                parameters[t.offset + j] = (2 * rng.nextFloat() - 1) * bound
            }
        }
    }

    /// Runs the layers on the first `n` images of `input`. Dropout is active only when a key is given.
    public func forward(batch n: Int, dropout: DropoutKey?) {
        precondition(n >= 1 && n <= maxBatch, "batch \(n) outside 1...\(maxBatch)")
        let ws = workspace, pool = ws.pool
        for (l, layer) in layers.enumerated() {
            let x = UnsafePointer(activations[l]), y = activations[l + 1]
            let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer { profile?.record(layer: l, backward: false, since: started) }
            switch layer.op {
            case let .conv(shape, w, b):
                conv2DForward(shape.batched(n), input: x, weights: parameters + w, bias: parameters + b,
                              output: y, workspace: ws)
            case .relu:
                reluForward(x, y, count: n * layer.outputSize, pool: pool)
            case let .maxPool(shape, argmax):
                maxPoolForward(shape.batched(n), input: x, output: y, argmax: argmax, pool: pool)
            case let .dropout(rate, mask):
                if let key = dropout {
                    fillDropoutMask(mask, rate: rate, layer: l, perSample: layer.outputSize, batch: n, key: key)
                    multiplyElementwise(x, mask, y, count: n * layer.outputSize, pool: pool)
                } else {
                    y.update(from: x, count: n * layer.outputSize)
                }
            case .flatten:
                break
            case let .dense(shape, w, b):
                denseForward(shape.batched(n), input: x, weights: parameters + w, bias: parameters + b,
                             output: y, workspace: ws)
            }
        }
    }

    /// Softmax cross-entropy of the logits against `labels`; stores dLoss/dLogits for `backward`.
    public func loss(labels: UnsafePointer<Int32>, batch n: Int, gradientScale: Float) -> (lossSum: Double, correct: Int) {
        softmaxCrossEntropy(logits: logits, labels: labels, batch: n, classes: spec.classes,
                            gradientScale: gradientScale, logitGradient: logitGradient)
    }

    /// Back-propagates the stored logit gradient; overwrites `gradients` entirely.
    /// `sink`, if given, is told each parameter layer's slice of `gradients` as soon as it is
    /// final, last layer first, so its all-reduce can overlap the rest of the backward pass.
    public func backward(batch n: Int, sink: GradientSink? = nil) {
        let ws = workspace, pool = ws.pool
        var dOut = logitGradient
        for l in layers.indices.reversed() {
            let layer = layers[l]
            let x = UnsafePointer(activations[l]), y = UnsafePointer(activations[l + 1])
            let needInputGradient = l > 0
            let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            defer { profile?.record(layer: l, backward: true, since: started) }
            let other = dOut == gradientBuffers.0 ? gradientBuffers.1 : gradientBuffers.0
            var dIn = other
            switch layer.op {
            case let .conv(shape, w, b):
                let s = shape.batched(n)
                conv2DBackwardWeights(s, input: x, outputGradient: dOut, weightGradient: gradients + w,
                                      biasGradient: gradients + b, workspace: ws)
                sink?.gradientsReady(w..<(b + s.outChannels))
                if needInputGradient {
                    conv2DBackwardData(s, outputGradient: dOut, weights: parameters + w, inputGradient: dIn, workspace: ws)
                }
            case .relu:
                dIn = dOut
                reluBackward(output: y, outputGradient: dOut, inputGradient: dIn, count: n * layer.outputSize, pool: pool)
            case let .maxPool(shape, argmax):
                maxPoolBackward(shape.batched(n), outputGradient: dOut, argmax: argmax, inputGradient: dIn, pool: pool)
            case let .dropout(_, mask):
                dIn = dOut
                multiplyElementwise(dOut, mask, dIn, count: n * layer.outputSize, pool: pool)
            case .flatten:
                dIn = dOut
            case let .dense(shape, w, b):
                let s = shape.batched(n)
                denseBackwardWeights(s, input: x, outputGradient: dOut, weightGradient: gradients + w,
                                     biasGradient: gradients + b, workspace: ws)
                sink?.gradientsReady(w..<(b + s.outputs))
                if needInputGradient {
                    denseBackwardData(s, outputGradient: dOut, weights: parameters + w, inputGradient: dIn, workspace: ws)
                }
            }
            dOut = dIn
        }
    }

    /// One entry per compiled layer, in order (what `profile` indexes).
    public var layerSummaries: [LayerSummary] {
        var convs = 0, denses = 0
        return layers.enumerated().map { l, layer in
            switch layer.op {
            case let .conv(s, _, _):
                convs += 1
                let f = s.forwardFlops
                let algorithm = s.winograd.map { " " + $0.rawValue } ?? " direct"
                return LayerSummary(name: "conv\(convs) \(s.kernelHeight)x\(s.kernelWidth)/\(s.stride) \(s.inChannels)→\(s.outChannels)" + algorithm,
                                    outputShape: [s.outHeight, s.outWidth, s.outChannels], forwardFlops: f,
                                    backwardFlops: l == 0 ? f : 2 * f)
            case let .dense(s, _, _):
                denses += 1
                let f = s.forwardFlops
                return LayerSummary(name: "dense\(denses) \(s.inputs)→\(s.outputs)", outputShape: [s.outputs],
                                    forwardFlops: f, backwardFlops: l == 0 ? f : 2 * f)
            case .relu: return LayerSummary(name: "relu", outputShape: [layer.outputSize], forwardFlops: 0, backwardFlops: 0)
            case let .maxPool(s, _):
                return LayerSummary(name: "maxpool \(s.size)x\(s.size)/\(s.stride)", outputShape: [s.outHeight, s.outWidth, s.channels],
                                    forwardFlops: 0, backwardFlops: 0)
            case let .dropout(rate, _): return LayerSummary(name: "dropout \(rate)", outputShape: [layer.outputSize], forwardFlops: 0, backwardFlops: 0)
            case .flatten: return LayerSummary(name: "flatten", outputShape: [layer.outputSize], forwardFlops: 0, backwardFlops: 0)
            }
        }
    }

    /// Inverted dropout: kept units are scaled by 1/(1−rate) so evaluation needs no rescaling.
    private func fillDropoutMask(_ mask: UnsafeMutablePointer<Float>, rate: Float, layer: Int,
                                 perSample: Int, batch n: Int, key: DropoutKey) {
        let scale = 1 / (1 - rate)
        workspace.pool.run(tasks: n) { i, _ in
            var rng = KeyedRandom(seed: key.seed, stream: .dropout, UInt64(key.epoch) << 16 | UInt64(layer),
                                  UInt64(UInt32(bitPattern: key.sampleIDs[i])))
            let m = mask + i * perSample
            for j in 0..<perSample { m[j] = rng.nextFloat() < rate ? 0 : scale }
        }
    }
}

/// Receives slices of the gradient buffer as the backward pass finishes them.
public protocol GradientSink: AnyObject {
    func gradientsReady(_ range: Range<Int>)
}

/// A layer with its per-sample shape resolved and its parameters located.
struct CompiledLayer {
    enum Op {
        /// Shapes are stored for batch 1 and re-batched per call.
        case conv(ConvShape, weight: Int, bias: Int)
        case relu
        case maxPool(PoolShape, argmax: UnsafeMutablePointer<Int32>)
        case dropout(rate: Float, mask: UnsafeMutablePointer<Float>)
        case flatten
        case dense(DenseShape, weight: Int, bias: Int)
    }
    let op: Op
    let inputSize: Int, outputSize: Int
}
