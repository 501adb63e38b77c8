import ConvCore
import Dispatch
import Foundation

/// A named slice of the parameter (or running-statistics) buffer, for checkpoints and initialisation.
public struct ParameterTensor: Sendable, Equatable {
    public let name: String
    public let offset: Int
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    /// Fan-in of the layer that owns it: PyTorch's default init draws from ±1/√fanIn.
    /// Zero for batch norm's tensors, which start at their identity (scale 1, shift 0, variance 1).
    public let fanIn: Int
    /// Whether weight decay applies (conv and dense weights) unless the optimizer decays everything.
    public let decays: Bool

    public init(name: String, offset: Int, shape: [Int], fanIn: Int, decays: Bool) {
        self.name = name; self.offset = offset; self.shape = shape; self.fanIn = fanIn; self.decays = decays
    }
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

/// Sums batch norm's per-channel statistics over the ranks that share a global batch, so every
/// rank normalises with the statistics of the whole global batch (as one process would).
public protocol BatchStatisticsReducer: AnyObject {
    /// Ranks whose statistics `sumAcrossRanks` adds together (each holds the same local batch).
    var ranks: Int { get }
    /// This rank's index among them (rank 0 holds batch norm's scale and shift gradients).
    var rank: Int { get }
    /// Sums in place across ranks, combining the ranks' values in `SampleGroups`' tree order
    /// over rank index, so the totals are the same bits whatever the world size.
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int)
}

/// Receives slices of the gradient buffer as the backward pass finishes them.
public protocol GradientSink: AnyObject {
    func gradientsReady(_ range: Range<Int>)
}

/// A model compiled for a maximum batch: every buffer it will ever touch — parameters,
/// gradients, running statistics, activations, scratch — is allocated here, once.
///
///     let net = Network(spec: .resnet20, maxBatch: 64, threads: 2)
///     net.initializeParameters(seed: 0)
///     /* write images into net.input */
///     net.forward(batch: 64, training: key)       // nil: evaluation mode
///     let (loss, correct) = net.loss(labels: labels, batch: 64, gradientScale: 1.0 / 64)
///     net.backward(batch: 64)                      // net.gradients now holds dLoss/dParameters
public final class Network {
    public let spec: ModelSpec
    public let maxBatch: Int
    public let tensors: [ParameterTensor]
    public let parameterCount: Int
    /// All parameters in one allocation, in `tensors` order (layer order, depth first).
    public let parameters: UnsafeMutablePointer<Float>
    /// Same layout as `parameters`.
    public let gradients: UnsafeMutablePointer<Float>
    /// Batch norm's running means and variances, in `bufferTensors` order.
    public let buffers: UnsafeMutablePointer<Float>
    public let bufferTensors: [ParameterTensor]
    public let bufferCount: Int
    public let workspace: ConvWorkspace
    /// Sums batch norm statistics across ranks; nil normalises each rank's batch by itself
    /// (PyTorch DDP's default, which makes training depend on the world size).
    public var statistics: BatchStatisticsReducer?

    /// Label smoothing ε of the loss: the target is (1 − ε)·one-hot + ε/classes.
    public var labelSmoothing: Float = 0

    let layers: [CompiledLayer]
    private let inputBuffer: UnsafeMutablePointer<Float>
    private let outputBuffer: UnsafeMutablePointer<Float>
    private let gradientBuffers: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
    private let logitGradient: UnsafeMutablePointer<Float>
    /// Each sample's loss in the last `loss` call.
    public let sampleLosses: UnsafeMutablePointer<Double>
    private let allocations: [UnsafeMutableRawPointer]

    /// When set, forward and backward add each layer's time to it (for `ddptrain bench`).
    public var profile: LayerProfile?

    public var input: UnsafeMutablePointer<Float> { inputBuffer }
    public var logits: UnsafePointer<Float> { UnsafePointer(outputBuffer) }
    public var inputSize: Int { spec.inputHeight * spec.inputWidth * spec.inputChannels }
    public var classes: Int { spec.classes }
    public var threads: Int { workspace.pool.threads }

    /// Built-in models always compile; a model from a file is validated first (`ModelSpec.validate`).
    /// `sampleGroups` orders every sum over samples (`SampleGroups`): training passes its run's
    /// grouping of the global batch; the default is that of a global batch of `maxBatch`.
    /// `fusing`: whether ReLUs, and residual additions and max pools that follow a batch norm,
    /// are done on the way by the layers next to them (batch norms, max pools, Winograd
    /// convolutions; see `CompiledLayer.Op`) rather than in passes of their own: the default
    /// unless `DDPTRAIN_FUSE_RELU=0`, which keeps them apart for comparison; the bits are the same.
    public init(spec: ModelSpec, maxBatch: Int, threads: Int, sampleGroups: SampleGroups? = nil, precision: Precision = .float32,
                fusing: Bool = ProcessInfo.processInfo.environment["DDPTRAIN_FUSE_RELU"] != "0") {
        let plan: LayerPlan
        do { plan = try LayerPlan(spec) } catch { preconditionFailure("invalid model \(spec.name): \(error)") }
        self.spec = spec
        self.maxBatch = maxBatch
        tensors = plan.tensors
        parameterCount = plan.parameterCount
        bufferTensors = plan.buffers
        bufferCount = plan.bufferCount
        workspace = ConvWorkspace(threads: threads, precision: precision)
        workspace.pool.sampleGroups = sampleGroups ?? .standard(globalBatch: maxBatch)
        var compiler = LayerCompiler(maxBatch: maxBatch, workspace: workspace, fusing: fusing)
        parameters = compiler.floats(plan.parameterCount)
        gradients = compiler.floats(plan.parameterCount)
        buffers = compiler.floats(plan.bufferCount)
        inputBuffer = compiler.floats(maxBatch * plan.inputSize)
        compiler.widest = plan.inputSize
        let compiled = compiler.compile(plan.nodes, input: inputBuffer)
        layers = compiled.layers
        outputBuffer = compiled.output
        gradientBuffers = (compiler.floats(maxBatch * compiler.widest), compiler.floats(maxBatch * compiler.widest))
        logitGradient = compiler.floats(maxBatch * spec.classes)
        sampleLosses = compiler.doubles(maxBatch)
        allocations = compiler.owned
    }

    deinit { allocations.forEach { $0.deallocate() } }

    /// PyTorch's defaults: conv and dense weights and biases uniform in ±1/√fanIn (kaiming_uniform
    /// with a=√5), drawn from a stream keyed by (seed, tensor index) so every rank can reproduce
    /// it; batch norm starts as the identity (scale 1, shift 0, running mean 0, variance 1).
    public func initializeParameters(seed: UInt64) {
        for (i, t) in tensors.enumerated() {
            let p = parameters + t.offset
            if t.fanIn == 0 {
                p.update(repeating: t.name.hasSuffix(".weight") ? 1 : 0, count: t.count)
                continue
            }
            var rng = KeyedRandom(seed: seed, stream: .initialization, UInt64(i))
            let bound = 1 / Float(t.fanIn).squareRoot()
            for j in 0..<t.count { p[j] = (2 * rng.nextFloat() - 1) * bound }
        }
        for t in bufferTensors {
            (buffers + t.offset).update(repeating: t.name.hasSuffix("running_var") ? 1 : 0, count: t.count)
        }
    }

    /// Runs the layers on the first `n` images of `input`. With a key the network is in training
    /// mode (dropout active, batch norm on batch statistics, running statistics updated); without
    /// one, in evaluation mode.
    public func forward(batch n: Int, training key: DropoutKey?) {
        precondition(n >= 1 && n <= maxBatch, "batch \(n) outside 1...\(maxBatch)")
        forward(layers, batch: n, key: key)
    }

    private func forward(_ list: [CompiledLayer], batch n: Int, key: DropoutKey?) {
        let ws = workspace, pool = ws.pool
        for layer in list {
            let x = UnsafePointer(layer.input), y = layer.output
            let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            switch layer.op {
            case let .conv(shape, w, b, relu):
                conv2DForward(shape.batched(n), input: x, weights: parameters + w, bias: b.map { UnsafePointer(parameters + $0) },
                              relu: relu, output: y, workspace: ws)
            case let .batchNorm(norm):
                normalize(norm, batch: n, input: x, output: y, training: key != nil)
            case .relu:
                reluForward(x, y, count: n * layer.outputSize, pool: pool)
            case .reluInBatchNorm, .reluInMaxPool, .reluInConvolution:
                break
            case .sigmoid:
                sigmoidForward(x, y, count: n * layer.outputSize, pool: pool)
            case .tanh:
                tanhForward(x, y, count: n * layer.outputSize, pool: pool)
            case let .maxPool(shape, argmax, relu):
                maxPoolForward(shape.batched(n), input: x, output: y, argmax: argmax, relu: relu, pool: pool)
            case let .maxPoolInBatchNorm(shape, argmax):
                if key == nil { maxPoolForward(shape.batched(n), input: x, output: y, argmax: argmax, pool: pool) }
            case let .avgPool(shape):
                avgPoolForward(shape.batched(n), input: x, output: y, pool: pool)
            case let .globalAvgPool(pixels, channels):
                globalAvgPoolForward(batch: n, pixels: pixels, channels: channels, input: x, output: y, pool: pool)
            case let .dropout(rate, mask):
                if let key {
                    fillDropoutMask(mask, rate: rate, layer: layer.index, perSample: layer.outputSize, batch: n, key: key)
                    multiplyElementwise(x, mask, y, count: n * layer.outputSize, pool: pool)
                } else {
                    y.update(from: x, count: n * layer.outputSize)
                }
            case .flatten:
                break
            case let .dense(shape, w, b):
                denseForward(shape.batched(n), input: x, weights: parameters + w, bias: parameters + b,
                             output: y, workspace: ws)
            case let .residual(body, shortcut, _):
                // The shortcut first: a norm that ends the body adds the shortcut's output.
                forward(shortcut, batch: n, key: key)
                forward(body, batch: n, key: key)
                if layer.normAddingShortcut != nil { continue }
                let addStarted = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
                let shortcutOutput = shortcut.last?.output ?? layer.input
                addElementwise(body.last!.output, shortcutOutput, y, count: n * layer.outputSize, pool: pool)
                profile?.record(layer: layer.index, backward: false, since: addStarted)
                continue
            }
            profile?.record(layer: layer.index, backward: false, since: started)
        }
    }

    /// Softmax cross-entropy of the logits against `labels` (label-smoothed by `labelSmoothing`);
    /// stores dLoss/dLogits for `backward` and each sample's loss in `sampleLosses`.
    public func loss(labels: UnsafePointer<Int32>, batch n: Int, gradientScale: Float) -> (lossSum: Double, correct: Int) {
        softmaxCrossEntropy(logits: logits, labels: labels, batch: n, classes: spec.classes, labelSmoothing: labelSmoothing,
                            gradientScale: gradientScale, logitGradient: logitGradient, rowLosses: sampleLosses)
    }

    /// Back-propagates the stored logit gradient; overwrites `gradients` entirely.
    /// `sink`, if given, is told each parameter layer's slice of `gradients` as soon as it is
    /// final, last layer first, so its all-reduce can overlap the rest of the backward pass.
    public func backward(batch n: Int, sink: GradientSink? = nil) {
        _ = backward(layers, batch: n, outputGradient: logitGradient, sink: sink, needInputGradient: false)
    }

    /// Backward through `list`, last layer first; returns the buffer holding the gradient of the
    /// list's input. Gradients alternate between two network-wide buffers; a residual block keeps
    /// its own copies of the gradients its two branches share.
    private func backward(_ list: [CompiledLayer], batch n: Int, outputGradient: UnsafeMutablePointer<Float>,
                          sink: GradientSink?, needInputGradient: Bool) -> UnsafeMutablePointer<Float> {
        let ws = workspace, pool = ws.pool
        var dOut = outputGradient
        for (i, layer) in list.enumerated().reversed() {
            let x = UnsafePointer(layer.input), y = UnsafePointer(layer.output)
            let needDIn = needInputGradient || i > 0
            let started = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            var dIn = dOut == gradientBuffers.0 ? gradientBuffers.1 : gradientBuffers.0
            switch layer.op {
            case let .conv(shape, w, b, _):
                let s = shape.batched(n)
                conv2DBackwardWeights(s, input: x, outputGradient: dOut, weightGradient: gradients + w,
                                      biasGradient: b.map { gradients + $0 }, workspace: ws)
                sink?.gradientsReady(w..<(b.map { $0 + s.outChannels } ?? w + s.weightCount))
                if needDIn {
                    conv2DBackwardData(s, outputGradient: dOut, weights: parameters + w, inputGradient: dIn, workspace: ws)
                }
            case let .batchNorm(norm):
                normalizeBackward(norm, batch: n, input: x, outputGradient: dOut, inputGradient: dIn, sink: sink)
            case .relu, .reluInConvolution:
                dIn = dOut
                reluBackward(output: y, outputGradient: dOut, inputGradient: dIn, count: n * layer.outputSize, pool: pool)
            case .reluInBatchNorm, .reluInMaxPool, .maxPoolInBatchNorm:
                dIn = dOut
            case .sigmoid:
                dIn = dOut
                sigmoidBackward(output: y, outputGradient: dOut, inputGradient: dIn, count: n * layer.outputSize, pool: pool)
            case .tanh:
                dIn = dOut
                tanhBackward(output: y, outputGradient: dOut, inputGradient: dIn, count: n * layer.outputSize, pool: pool)
            case let .maxPool(shape, argmax, relu):
                maxPoolBackward(shape.batched(n), outputGradient: dOut, argmax: argmax, inputGradient: dIn, reluOutput: relu ? y : nil, pool: pool)
            case let .avgPool(shape):
                avgPoolBackward(shape.batched(n), outputGradient: dOut, inputGradient: dIn, pool: pool)
            case let .globalAvgPool(pixels, channels):
                globalAvgPoolBackward(batch: n, pixels: pixels, channels: channels, outputGradient: dOut, inputGradient: dIn, pool: pool)
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
                if needDIn {
                    denseBackwardData(s, outputGradient: dOut, weights: parameters + w, inputGradient: dIn, workspace: ws)
                }
            case let .residual(body, shortcut, saved):
                // The gradient both branches start from, kept while they overwrite the shared
                // buffers; a ReLU that the body's last norm did after the addition masks it here.
                let count = n * layer.outputSize, inCount = n * layer.inputSize
                let outputGradient = saved.outputGradient
                if layer.normAddingShortcut?.relu == true {
                    reluBackward(output: y, outputGradient: dOut, inputGradient: outputGradient, count: count, pool: pool)
                } else {
                    outputGradient.update(from: dOut, count: count)
                }
                profile?.record(layer: layer.index, backward: true, since: started)
                // What the shortcut passes back to the block's input: the output gradient itself
                // (identity), or the projection's input gradient, kept while the body overwrites
                // the shared buffers. The shortcut's parameters come after the body's, so its
                // gradients finish first.
                let shortcutGradient: UnsafeMutablePointer<Float>
                if let projected = saved.inputGradient {
                    projected.update(from: backward(shortcut, batch: n, outputGradient: outputGradient, sink: sink, needInputGradient: true),
                                     count: inCount)
                    shortcutGradient = projected
                } else {
                    shortcutGradient = outputGradient
                }
                dIn = backward(body, batch: n, outputGradient: outputGradient, sink: sink, needInputGradient: true)
                let addStarted = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
                addElementwise(dIn, shortcutGradient, dIn, count: inCount, pool: pool)
                profile?.record(layer: layer.index, backward: true, since: addStarted)
                dOut = dIn
                continue
            }
            profile?.record(layer: layer.index, backward: true, since: started)
            dOut = dIn
        }
        return dOut
    }

    // MARK: batch norm

    private func normalize(_ bn: CompiledBatchNorm, batch n: Int, input x: UnsafePointer<Float>,
                                  output y: UnsafeMutablePointer<Float>, training: Bool) {
        let c = bn.channels, shape = NormShape(batch: n, pixels: bn.pixels, channels: c)
        let runningMean = buffers + bn.running, runningVariance = runningMean + c
        if training {
            batchNormStatistics(shape, input: x, sums: bn.sums, pool: workspace.pool)
            let ranks = statistics?.ranks ?? 1
            statistics?.sumAcrossRanks(bn.sums, count: 2 * c)
            let count = Double(n * bn.pixels * ranks)
            for ch in 0..<c {
                let mean = bn.sums[ch] / count
                let variance = max(bn.sums[c + ch] / count - mean * mean, 0)
                bn.mean[ch] = Float(mean)
                bn.invStd[ch] = Float(1 / (variance + CompiledBatchNorm.epsilon).squareRoot())
                // PyTorch's update: momentum 0.1, and the unbiased variance for the running estimate.
                let m = CompiledBatchNorm.momentum
                runningMean[ch] = Float((1 - m) * Double(runningMean[ch]) + m * mean)
                runningVariance[ch] = Float((1 - m) * Double(runningVariance[ch]) + m * variance * count / max(count - 1, 1))
            }
        } else {
            for ch in 0..<c {
                bn.mean[ch] = runningMean[ch]
                bn.invStd[ch] = Float(1 / (Double(runningVariance[ch]) + CompiledBatchNorm.epsilon).squareRoot())
            }
        }
        if training, let pooled = bn.pooled {
            batchNormForward(shape, input: x, mean: bn.mean, invStd: bn.invStd, scale: parameters + bn.scale, shift: parameters + bn.shift,
                             relu: bn.relu, pooling: pooled.pooling, pooledOutput: pooled.output, pool: workspace.pool)
        } else {
            batchNormForward(shape, input: x, mean: bn.mean, invStd: bn.invStd, scale: parameters + bn.scale,
                             shift: parameters + bn.shift, residual: bn.residual, output: y, relu: bn.relu, pool: workspace.pool)
        }
    }

    /// Training mode only: the input gradient needs the sums over the whole global batch. With
    /// statistics summed across ranks, the scale and shift gradients are those global sums, held
    /// by rank 0 alone (the others contribute zeros to the gradient all-reduce, which adds them
    /// exactly), so they are the same bits on any world size; with per-rank statistics they are
    /// this rank's sums.
    private func normalizeBackward(_ bn: CompiledBatchNorm, batch n: Int, input x: UnsafePointer<Float>,
                                   outputGradient dy: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>,
                                   sink: GradientSink?) {
        let c = bn.channels, shape = NormShape(batch: n, pixels: bn.pixels, channels: c)
        // A ReLU after a residual addition was undone by the block (`backward`) before the norm's.
        let relu = bn.relu && bn.residual == nil ? FusedReLU(scale: parameters + bn.scale, shift: parameters + bn.shift) : nil
        // With the pool done by the norm, `dy` is the pool's output gradient.
        if let pooled = bn.pooled {
            batchNormBackwardStatistics(shape, input: x, pooledGradient: dy, pooling: pooled.pooling, mean: bn.mean, invStd: bn.invStd,
                                        relu: relu, sums: bn.sums, pool: workspace.pool)
        } else {
            batchNormBackwardStatistics(shape, input: x, outputGradient: dy, mean: bn.mean, invStd: bn.invStd, relu: relu,
                                        sums: bn.sums, pool: workspace.pool)
        }
        let ranks = statistics?.ranks ?? 1
        statistics?.sumAcrossRanks(bn.sums, count: 2 * c)
        let holdsGradients = (statistics?.rank ?? 0) == 0
        for ch in 0..<c {
            gradients[bn.shift + ch] = holdsGradients ? Float(bn.sums[ch]) : 0
            gradients[bn.scale + ch] = holdsGradients ? Float(bn.sums[c + ch]) : 0
        }
        sink?.gradientsReady(bn.scale..<(bn.shift + c))
        let count = n * bn.pixels * ranks
        if let pooled = bn.pooled {
            batchNormBackwardData(shape, input: x, pooledGradient: dy, pooling: pooled.pooling, mean: bn.mean, invStd: bn.invStd,
                                  scale: parameters + bn.scale, relu: relu, sums: bn.sums, count: count, inputGradient: dx, pool: workspace.pool)
        } else {
            batchNormBackwardData(shape, input: x, outputGradient: dy, mean: bn.mean, invStd: bn.invStd, scale: parameters + bn.scale,
                                  relu: relu, sums: bn.sums, count: count, inputGradient: dx, pool: workspace.pool)
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
