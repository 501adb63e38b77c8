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

    private let layers: [CompiledLayer]
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
    /// `fusing`: whether ReLUs after batch norms and before max pools, and residual additions
    /// (with the ReLU after them) that follow a batch norm, are done by those layers on the way
    /// (the default unless `DDPTRAIN_FUSE_RELU=0`, which keeps them apart for comparison; the
    /// bits are the same either way).
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
            case let .conv(shape, w, b, relus):
                conv2DForward(shape.batched(n), input: x, weights: parameters + w, bias: b.map { UnsafePointer(parameters + $0) },
                              relu: relus.after, output: y, workspace: ws)
            case let .batchNorm(norm):
                normalize(norm, batch: n, input: x, output: y, training: key != nil)
            case .relu, .reluInConvolutions(forward: false, backward: _):
                reluForward(x, y, count: n * layer.outputSize, pool: pool)
            case .reluInBatchNorm, .reluInMaxPool, .reluInConvolutions(forward: true, backward: _):
                break
            case .sigmoid:
                sigmoidForward(x, y, count: n * layer.outputSize, pool: pool)
            case .tanh:
                tanhForward(x, y, count: n * layer.outputSize, pool: pool)
            case let .maxPool(shape, argmax, relu):
                maxPoolForward(shape.batched(n), input: x, output: y, argmax: argmax, relu: relu, pool: pool)
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
            case let .residual(body, shortcut, _, addedByNorm):
                // The shortcut first: a norm that ends the body adds the shortcut's output.
                forward(shortcut, batch: n, key: key)
                forward(body, batch: n, key: key)
                if addedByNorm { continue }
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
            case let .conv(shape, w, b, relus):
                let s = shape.batched(n)
                conv2DBackwardWeights(s, input: x, outputGradient: dOut, weightGradient: gradients + w,
                                      biasGradient: b.map { gradients + $0 }, workspace: ws)
                sink?.gradientsReady(w..<(b.map { $0 + s.outChannels } ?? w + s.weightCount))
                if needDIn {
                    conv2DBackwardData(s, outputGradient: dOut, weights: parameters + w, gate: relus.before ? x : nil,
                                       inputGradient: dIn, workspace: ws)
                }
            case let .batchNorm(norm):
                normalizeBackward(norm, batch: n, input: x, outputGradient: dOut, inputGradient: dIn, sink: sink)
            case .relu, .reluInConvolutions(forward: _, backward: false):
                dIn = dOut
                reluBackward(output: y, outputGradient: dOut, inputGradient: dIn, count: n * layer.outputSize, pool: pool)
            case .reluInBatchNorm, .reluInMaxPool, .reluInConvolutions(forward: _, backward: true):
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
            case let .residual(body, shortcut, saved, _):
                // The gradient both branches start from, kept while they overwrite the shared
                // buffers; a ReLU that the body's last norm did after the addition masks it here.
                let count = n * layer.outputSize, inCount = n * layer.inputSize
                let outputGradient = saved.outputGradient
                if case let .batchNorm(norm) = body.last?.op, norm.residual != nil, norm.relu {
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
        batchNormForward(shape, input: x, mean: bn.mean, invStd: bn.invStd, scale: parameters + bn.scale,
                         shift: parameters + bn.shift, residual: bn.residual, output: y, relu: bn.relu, pool: workspace.pool)
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
        batchNormBackwardStatistics(shape, input: x, outputGradient: dy, mean: bn.mean, invStd: bn.invStd, relu: relu,
                                    sums: bn.sums, pool: workspace.pool)
        let ranks = statistics?.ranks ?? 1
        statistics?.sumAcrossRanks(bn.sums, count: 2 * c)
        let holdsGradients = (statistics?.rank ?? 0) == 0
        for ch in 0..<c {
            gradients[bn.shift + ch] = holdsGradients ? Float(bn.sums[ch]) : 0
            gradients[bn.scale + ch] = holdsGradients ? Float(bn.sums[c + ch]) : 0
        }
        sink?.gradientsReady(bn.scale..<(bn.shift + c))
        batchNormBackwardData(shape, input: x, outputGradient: dy, mean: bn.mean, invStd: bn.invStd,
                              scale: parameters + bn.scale, relu: relu, sums: bn.sums, count: n * bn.pixels * ranks,
                              inputGradient: dx, pool: workspace.pool)
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

    // MARK: reports

    /// One entry per layer, depth first (what `profile` indexes); a residual block's entry is
    /// its addition (and, backward, the copies of the gradient its branches share).
    public var layerSummaries: [LayerSummary] {
        var counters: [String: Int] = [:]
        var out: [LayerSummary] = []
        func name(_ kind: String) -> String { counters[kind, default: 0] += 1; return "\(kind)\(counters[kind]!)" }
        func visit(_ list: [CompiledLayer]) {
            for layer in list {
                // The first layer computes no input gradient: its backward is the weight gradient alone.
                func add(_ name: String, _ shape: [Int] = [layer.outputSize], forwardFlops f: Double = 0) {
                    out.append(LayerSummary(name: name, outputShape: shape, forwardFlops: f, backwardFlops: layer.index == 0 ? f : 2 * f))
                }
                switch layer.op {
                case let .conv(s, _, b, _):
                    let algorithm = " " + s.forwardAlgorithm
                    add(name("conv") + " \(s.kernelHeight)x\(s.kernelWidth)/\(s.stride) \(s.inChannels)→\(s.outChannels)"
                            + (b == nil ? " no bias" : "") + algorithm,
                        [s.outHeight, s.outWidth, s.outChannels], forwardFlops: s.forwardFlops)
                case let .dense(s, _, _):
                    add(name("dense") + " \(s.inputs)→\(s.outputs)", [s.outputs], forwardFlops: s.forwardFlops)
                case let .batchNorm(bn): add(name("bn") + " \(bn.channels)")
                case .relu: add("relu")
                case .reluInBatchNorm: add("relu (done by the batch norm)")
                case .reluInMaxPool: add("relu (done by the max pool)")
                case let .reluInConvolutions(forward, backward):
                    add(forward && backward ? "relu (done by the convolutions)"
                            : forward ? "relu (forward by the convolution)" : "relu (backward by the next conv)")
                case .sigmoid: add("sigmoid")
                case .tanh: add("tanh")
                case let .maxPool(s, _, _): add("maxpool \(s.size)x\(s.size)/\(s.stride)", [s.outHeight, s.outWidth, s.channels])
                case let .avgPool(s): add("avgpool \(s.size)x\(s.size)/\(s.stride)", [s.outHeight, s.outWidth, s.channels])
                case let .globalAvgPool(_, c): add("globalavgpool", [1, 1, c])
                case let .dropout(rate, _): add("dropout \(rate)")
                case .flatten: add("flatten")
                case let .residual(body, shortcut, _, addedByNorm):
                    add(name("add") + (shortcut.isEmpty ? " (identity shortcut" : " (projection shortcut")
                            + (addedByNorm ? ", done by the batch norm)" : ")"))
                    visit(body)
                    visit(shortcut)
                }
            }
        }
        visit(layers)
        return out
    }

    /// Every convolution's feature maps for image `image` of the last forward pass, depth first,
    /// named as their weights are (`conv1`, `conv2`, …): the output of the convolution together
    /// with the batch norm and the activation that directly follow it (HWC), for `ddptrain visualize`.
    /// A residual block's last convolution shows the block's output: its norm adds the shortcut
    /// and does the ReLU after the block (`CompiledLayer.Op.residual`).
    ///
    ///     net.forward(batch: 1, training: nil)
    ///     for map in net.convolutionOutputs(image: 0) { print(map.name, map.height, map.width, map.channels) }
    public func convolutionOutputs(image: Int) -> [FeatureMaps] {
        var out: [FeatureMaps] = []
        func visit(_ list: [CompiledLayer]) {
            for (i, layer) in list.enumerated() {
                switch layer.op {
                case let .conv(s, _, _, _):
                    // Activations may work in place, so the maps are read where the last of the group wrote them.
                    var last = i
                    if last + 1 < list.count, case .batchNorm = list[last + 1].op { last += 1 }
                    if last + 1 < list.count, list[last + 1].isActivation { last += 1 }
                    let start = list[last].output + image * layer.outputSize
                    var values = Array(UnsafeBufferPointer(start: start, count: layer.outputSize))
                    // A ReLU that the max pool does leaves its buffer unrectified.
                    if case .reluInMaxPool = list[last].op { values = values.map { max($0, 0) } }
                    out.append(FeatureMaps(name: "conv\(out.count + 1)", height: s.outHeight, width: s.outWidth, channels: s.outChannels,
                                           values: values))
                case let .residual(body, shortcut, _, _):
                    visit(body)
                    visit(shortcut)
                default:
                    break
                }
            }
        }
        visit(layers)
        return out
    }

    /// The forward multiply-adds ×2 of one image, summed over every layer.
    public var forwardFlopsPerImage: Double { layerSummaries.reduce(0) { $0 + $1.forwardFlops } }
}

/// One layer's output channels for one image, HWC.
public struct FeatureMaps: Sendable {
    public let name: String
    public let height: Int, width: Int, channels: Int
    public let values: [Float]
}

/// A layer with its per-sample shape resolved, its parameters located and its buffers assigned.
struct CompiledLayer {
    enum Op {
        /// Shapes are stored for batch 1 and re-batched per call.
        case conv(ConvShape, weight: Int, bias: Int?, relus: ConvReLUs)
        case batchNorm(CompiledBatchNorm)
        case relu, sigmoid, tanh
        /// A ReLU right after a batch norm, which applies it on the way out and takes its mask in
        /// its backward pass (`FusedReLU`): no work of its own, and the norm's output buffer.
        case reluInBatchNorm
        /// A ReLU right before a max pool over whole 16-channel vectors, which the pool applies
        /// to its 4× fewer outputs (and its mask to the gradient it routes back): no work of its
        /// own, and its input's buffer, left unrectified.
        case reluInMaxPool
        /// A ReLU whose forward the convolution before it does (`ConvReLUs.after`), or whose
        /// backward the input gradient of the convolution after it does (`ConvReLUs.before`), or
        /// both: Winograd's output transforms, on the way out. Otherwise it is `relu`'s pass.
        case reluInConvolutions(forward: Bool, backward: Bool)
        /// `relu`: the pool does the ReLU before it (`reluInMaxPool`).
        case maxPool(PoolShape, argmax: UnsafeMutablePointer<Int32>, relu: Bool)
        case avgPool(PoolShape)
        case globalAvgPool(pixels: Int, channels: Int)
        case dropout(rate: Float, mask: UnsafeMutablePointer<Float>)
        case flatten
        case dense(DenseShape, weight: Int, bias: Int)
        /// `saved`: the block's own copies of the gradients both branches need. `addedByNorm`: the
        /// body ends in a batch norm that adds the shortcut's output (and does the ReLU after the
        /// block, if one follows), so the block's output is the norm's.
        case residual(body: [CompiledLayer], shortcut: [CompiledLayer], saved: ResidualGradients, addedByNorm: Bool)
    }
    let op: Op
    /// Position in the depth-first layer order (for the profile and dropout's key).
    let index: Int
    let input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    let inputSize: Int, outputSize: Int

    var isActivation: Bool {
        switch op {
        case .relu, .reluInBatchNorm, .reluInMaxPool, .reluInConvolutions, .sigmoid, .tanh: return true
        default: return false
        }
    }
}

/// The ReLUs a convolution does on the way (`CompiledLayer.Op.reluInConvolutions`): the one
/// after it in its forward pass, and, in its input gradient, the backward of the one before it
/// (its input is that ReLU's output, which gates the gradient).
struct ConvReLUs {
    var after = false, before = false
}

/// Batch norm's per-layer scratch: this step's statistics, kept for the backward pass.
struct CompiledBatchNorm {
    static let epsilon = 1e-5
    static let momentum = 0.1
    let pixels: Int, channels: Int
    /// Offsets of scale and shift in the parameters, of the running mean (then variance) in the buffers.
    let scale: Int, shift: Int, running: Int
    let mean: UnsafeMutablePointer<Float>, invStd: UnsafeMutablePointer<Float>
    /// 2 × channels partial sums (statistics forward, gradient sums backward).
    let sums: UnsafeMutablePointer<Double>
    /// Whether the ReLU after it is fused into it (`CompiledLayer.Op.reluInBatchNorm`).
    var relu = false
    /// The shortcut's output, when the norm ends a residual block's body and adds it
    /// (`CompiledLayer.Op.residual`'s `addedByNorm`); `relu` is then the ReLU after the block.
    var residual: UnsafePointer<Float>?
}

struct ResidualGradients {
    let outputGradient: UnsafeMutablePointer<Float>
    /// Only with a projection shortcut: its input gradient, while the body's is computed.
    let inputGradient: UnsafeMutablePointer<Float>?
}

/// Turns a `LayerPlan` into `CompiledLayer`s, allocating each layer's output and scratch.
private struct LayerCompiler {
    let maxBatch: Int
    let workspace: ConvWorkspace
    var owned: [UnsafeMutableRawPointer] = []
    /// The largest per-sample activation, for the shared gradient buffers.
    var widest = 0
    /// `Network.init`'s `fusing`.
    let fusing: Bool
    private var nextIndex = 0

    init(maxBatch: Int, workspace: ConvWorkspace, fusing: Bool) {
        self.maxBatch = maxBatch
        self.workspace = workspace
        self.fusing = fusing
    }

    mutating func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(UnsafeMutableRawPointer(p))
        return p
    }

    mutating func doubles(_ n: Int) -> UnsafeMutablePointer<Double> {
        let p = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(UnsafeMutableRawPointer(p))
        return p
    }

    /// Compiles `nodes` reading `input`; returns the layers and the buffer holding the list's output.
    mutating func compile(_ nodes: [LayerPlan.Node], input: UnsafeMutablePointer<Float>) -> (layers: [CompiledLayer], output: UnsafeMutablePointer<Float>) {
        var current = input
        // Whether `current` was written by a layer of this list that no backward pass reads it
        // back from: only then may an activation overwrite it.
        var currentIsScratch = false
        var out: [CompiledLayer] = []
        // Whether the residual block just compiled does the ReLU that follows it, and whether the
        // next convolution does the backward of the ReLU just compiled.
        var reluInResidual = false, reluBeforeConvolution = false
        for (position, node) in nodes.enumerated() {
            let index = nextIndex
            nextIndex += 1
            widest = max(widest, node.outputSize)
            var op: CompiledLayer.Op
            var output: UnsafeMutablePointer<Float>?
            switch node.step {
            case let .conv(shape, w, b):
                workspace.reserve(for: shape.batched(maxBatch))
                op = .conv(shape, weight: w, bias: b, relus: ConvReLUs(before: reluBeforeConvolution))
                reluBeforeConvolution = false
            case let .batchNorm(pixels, channels, scale, shift, running):
                workspace.pool.reservePartialSums(NormShape(batch: maxBatch, pixels: pixels, channels: channels).partialSumCount)
                op = .batchNorm(CompiledBatchNorm(pixels: pixels, channels: channels, scale: scale, shift: shift, running: running,
                                                  mean: floats(channels), invStd: floats(channels), sums: doubles(2 * channels)))
            case .relu, .sigmoid, .tanh:
                op = node.step.activation!
                // In place unless the input is the list's input (the network's, or a residual
                // block's that the other branch still reads) or another activation's output
                // (whose backward reads it).
                if currentIsScratch { output = current }
                // A ReLU on a batch norm's output is done by the norm, in the same pass.
                if reluInResidual {
                    op = .reluInBatchNorm
                    reluInResidual = false
                } else if case .relu = op, currentIsScratch, fusing, let previous = out.last, case var .batchNorm(norm) = previous.op {
                    norm.relu = true
                    out[out.count - 1] = CompiledLayer(op: .batchNorm(norm), index: previous.index, input: previous.input,
                                                       output: previous.output, inputSize: previous.inputSize, outputSize: previous.outputSize)
                    op = .reluInBatchNorm
                } else if case .relu = op, currentIsScratch, fusing, position + 1 < nodes.count,
                          case let .maxPool(pooled) = nodes[position + 1].step, pooled.channels % 16 == 0 {
                    // Over whole 16-channel vectors only: LeNet-5's 6-channel pool took longer
                    // with the ReLU than the ReLU's own pass over its small activations.
                    op = .reluInMaxPool
                } else if case .relu = op, fusing {
                    // Between Winograd convolutions, their output transforms do the ReLU: the
                    // one before, its forward; the one after, its backward, as it writes its input gradient.
                    var forward = false
                    if currentIsScratch, let previous = out.last, case .conv(let shape, let w, let b, var relus) = previous.op,
                       shape.winogradDataPasses != nil {
                        relus.after = true
                        out[out.count - 1] = CompiledLayer(op: .conv(shape, weight: w, bias: b, relus: relus), index: previous.index,
                                                           input: previous.input, output: previous.output,
                                                           inputSize: previous.inputSize, outputSize: previous.outputSize)
                        forward = true
                    }
                    if position + 1 < nodes.count, case let .conv(next, _, _) = nodes[position + 1].step, next.winogradDataPasses != nil {
                        reluBeforeConvolution = true
                    }
                    if forward || reluBeforeConvolution { op = .reluInConvolutions(forward: forward, backward: reluBeforeConvolution) }
                }
            case let .maxPool(shape):
                let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: maxBatch * node.outputSize)
                owned.append(UnsafeMutableRawPointer(argmax))
                let relu: Bool
                if case .reluInMaxPool = out.last?.op { relu = true } else { relu = false }
                op = .maxPool(shape, argmax: argmax, relu: relu)
            case let .avgPool(shape):
                op = .avgPool(shape)
            case let .globalAvgPool(pixels, channels):
                op = .globalAvgPool(pixels: pixels, channels: channels)
            case let .dropout(rate):
                op = .dropout(rate: rate, mask: floats(maxBatch * node.outputSize))
            case .flatten:
                op = .flatten
                output = current
            case let .dense(shape, w, b):
                workspace.reserve(for: shape.batched(maxBatch))
                op = .dense(shape, weight: w, bias: b)
            case let .residual(bodyNodes, shortcutNodes):
                var body = compile(bodyNodes, input: current).layers
                let shortcut = compile(shortcutNodes, input: current).layers
                let saved = ResidualGradients(outputGradient: floats(maxBatch * node.outputSize),
                                              inputGradient: shortcut.isEmpty ? nil : floats(maxBatch * node.inputSize))
                // A body that ends in a batch norm has the norm add the shortcut and do the ReLU
                // after the block: one pass over the block's output instead of three.
                var addedByNorm = false
                if fusing, let last = body.last, case var .batchNorm(norm) = last.op, !norm.relu {
                    norm.residual = UnsafePointer(shortcut.last?.output ?? current)
                    if position + 1 < nodes.count, case .relu = nodes[position + 1].step { norm.relu = true }
                    body[body.count - 1] = CompiledLayer(op: .batchNorm(norm), index: last.index, input: last.input,
                                                         output: last.output, inputSize: last.inputSize, outputSize: last.outputSize)
                    output = last.output
                    addedByNorm = true
                    reluInResidual = norm.relu
                }
                op = .residual(body: body, shortcut: shortcut, saved: saved, addedByNorm: addedByNorm)
            }
            let y = output ?? floats(maxBatch * node.outputSize)
            out.append(CompiledLayer(op: op, index: index, input: current, output: y,
                                     inputSize: node.inputSize, outputSize: node.outputSize))
            if case .flatten = node.step {} else { currentIsScratch = node.step.activation == nil }
            current = y
        }
        return (out, current)
    }
}

extension LayerPlan.Step {
    /// The compiled op of an element-wise activation, nil for any other layer.
    var activation: CompiledLayer.Op? {
        switch self {
        case .relu: return .relu
        case .sigmoid: return .sigmoid
        case .tanh: return .tanh
        default: return nil
        }
    }
}
