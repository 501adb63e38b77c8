import ConvCore
import Foundation

/// A layer with its per-sample shape resolved, its parameters located and its buffers assigned.
struct CompiledLayer {
    enum Op {
        /// Shapes are stored for batch 1 and re-batched per call.
        /// `relu`: it does the ReLU after it (`reluInConvolution`).
        case conv(ConvShape, weight: Int, bias: Int?, relu: Bool)
        case batchNorm(CompiledBatchNorm)
        case relu, sigmoid, tanh
        /// A ReLU right after a batch norm, which applies it on the way out and takes its mask in
        /// its backward pass (`FusedReLU`): no work of its own, and the norm's output buffer.
        case reluInBatchNorm
        /// A ReLU right before a max pool over whole 16-channel vectors, which the pool applies
        /// to its 4× fewer outputs (and its mask to the gradient it routes back): no work of its
        /// own, and its input's buffer, left unrectified.
        case reluInMaxPool
        /// A ReLU right after a Winograd convolution, whose output transform applies it on the
        /// way out: no forward work of its own, and the convolution's output buffer. Its backward
        /// is `relu`'s pass (done by the next convolution's input gradient instead, it cost that
        /// as much as it saved; BENCHMARKS.md).
        case reluInConvolution
        /// `relu`: the pool does the ReLU before it (`reluInMaxPool`).
        case maxPool(PoolShape, argmax: UnsafeMutablePointer<Int32>, relu: Bool)
        /// A max pool over disjoint windows of whole vectors right after a batch norm (and its
        /// ReLU), which the norm does image by image while training (`NormPooling`,
        /// `CompiledBatchNorm.pooled`): no training work of its own, the pooled gradient passed
        /// on to the norm. In evaluation the norm writes its whole output (which `visualize`
        /// reads) and the pool runs here.
        case maxPoolInBatchNorm(PoolShape, argmax: UnsafeMutablePointer<Int32>)
        case avgPool(PoolShape)
        case globalAvgPool(pixels: Int, channels: Int)
        case dropout(rate: Float, mask: UnsafeMutablePointer<Float>)
        case flatten
        case dense(DenseShape, weight: Int, bias: Int)
        /// `saved`: the block's own copies of the gradients both branches need. When the body
        /// ends in a batch norm that adds the shortcut (`normAddingShortcut`), the block's output
        /// is that norm's.
        case residual(body: [CompiledLayer], shortcut: [CompiledLayer], saved: ResidualGradients)
    }
    let op: Op
    /// Position in the depth-first layer order (for the profile and dropout's key).
    let index: Int
    let input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    let inputSize: Int, outputSize: Int

    var isActivation: Bool {
        switch op {
        case .relu, .reluInBatchNorm, .reluInMaxPool, .reluInConvolution, .sigmoid, .tanh: return true
        default: return false
        }
    }

    /// A residual block's last batch norm, when it adds the shortcut's output (and, with its
    /// `relu`, does the ReLU after the block); nil for any other layer.
    var normAddingShortcut: CompiledBatchNorm? {
        guard case let .residual(body, _, _) = op, case let .batchNorm(norm) = body.last?.op, norm.residual != nil else { return nil }
        return norm
    }
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
    /// (`CompiledLayer.normAddingShortcut`); `relu` is then the ReLU after the block.
    var residual: UnsafePointer<Float>?
    /// The max pool after it, when the norm does it (`CompiledLayer.Op.maxPoolInBatchNorm`), and
    /// the pool's output buffer.
    var pooled: (pooling: NormPooling, output: UnsafeMutablePointer<Float>)?
}

struct ResidualGradients {
    let outputGradient: UnsafeMutablePointer<Float>
    /// Only with a projection shortcut: its input gradient, while the body's is computed.
    let inputGradient: UnsafeMutablePointer<Float>?
}

/// Turns a `LayerPlan` into `CompiledLayer`s, allocating each layer's output and scratch.
struct LayerCompiler {
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
        let p = allocateAligned(Float.self, capacity: n)
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(UnsafeMutableRawPointer(p))
        return p
    }

    mutating func doubles(_ n: Int) -> UnsafeMutablePointer<Double> {
        let p = allocateAligned(Double.self, capacity: n)
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
        // Whether the residual block just compiled does the ReLU that follows it.
        var reluInResidual = false
        for (position, node) in nodes.enumerated() {
            let index = nextIndex
            nextIndex += 1
            widest = max(widest, node.outputSize)
            var op: CompiledLayer.Op
            var output: UnsafeMutablePointer<Float>?
            switch node.step {
            case let .conv(shape, w, b):
                workspace.reserve(for: shape.batched(maxBatch))
                op = .conv(shape, weight: w, bias: b, relu: false)
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
                } else if case .relu = op, currentIsScratch, fusing, let previous = out.last,
                          case let .conv(shape, w, b, _) = previous.op, shape.winogradDataPasses != nil {
                    // After a Winograd convolution, its output transform does the ReLU.
                    out[out.count - 1] = CompiledLayer(op: .conv(shape, weight: w, bias: b, relu: true), index: previous.index,
                                                       input: previous.input, output: previous.output,
                                                       inputSize: previous.inputSize, outputSize: previous.outputSize)
                    op = .reluInConvolution
                }
            case let .maxPool(shape):
                let argmax = allocateAligned(Int32.self, capacity: maxBatch * node.outputSize)
                owned.append(UnsafeMutableRawPointer(argmax))
                let relu: Bool
                if case .reluInMaxPool = out.last?.op { relu = true } else { relu = false }
                op = .maxPool(shape, argmax: argmax, relu: relu)
                // A norm just before (or before the ReLU it does) does the pool too.
                var at = out.count - 1
                if at >= 0, case .reluInBatchNorm = out[at].op { at -= 1 }
                if fusing, !relu, NormPooling.fits(shape), at >= 0, case var .batchNorm(norm) = out[at].op, norm.residual == nil {
                    let pooledOutput = floats(maxBatch * node.outputSize)
                    let threads = workspace.pool.threads
                    let scratch = floats(NormPooling.scratchCount(threads: threads, pixels: norm.pixels, channels: norm.channels))
                    norm.pooled = (NormPooling(shape: shape, argmax: argmax, scratch: scratch), pooledOutput)
                    out[at] = CompiledLayer(op: .batchNorm(norm), index: out[at].index, input: out[at].input, output: out[at].output,
                                            inputSize: out[at].inputSize, outputSize: out[at].outputSize)
                    op = .maxPoolInBatchNorm(shape, argmax: argmax)
                    output = pooledOutput
                }
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
                if fusing, let last = body.last, case var .batchNorm(norm) = last.op, !norm.relu {
                    norm.residual = UnsafePointer(shortcut.last?.output ?? current)
                    if position + 1 < nodes.count, case .relu = nodes[position + 1].step { norm.relu = true }
                    body[body.count - 1] = CompiledLayer(op: .batchNorm(norm), index: last.index, input: last.input,
                                                         output: last.output, inputSize: last.inputSize, outputSize: last.outputSize)
                    output = last.output
                    reluInResidual = norm.relu
                }
                op = .residual(body: body, shortcut: shortcut, saved: saved)
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
