import CBFloat16
import ConvKernels
import ConvKernelsAVX512

/// Fully connected layer: y[batch][out] = x[batch][in] · W[in][out] + b.
public struct DenseShape: Sendable, Equatable {
    public let batch: Int, inputs: Int, outputs: Int
    public init(batch: Int, inputs: Int, outputs: Int) {
        self.batch = batch; self.inputs = inputs; self.outputs = outputs
    }
    public var weightCount: Int { inputs * outputs }
    public var forwardFlops: Double { 2 * Double(batch) * Double(inputs) * Double(outputs) }
}

public func denseForward(_ s: DenseShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>, workspace ws: ConvWorkspace) {
    broadcastRows(bias, count: s.outputs, rows: s.batch, into: y, pool: ws.pool)
    if ws.precision == .bfloat16 { return ws.bfloat16DenseForward(s, input: x, weights: w, output: y) }
    gemm(m: s.batch, n: s.outputs, k: s.inputs, a: GemmOperand(x, stride: s.inputs),
         b: GemmOperand(w, stride: s.outputs), c: y, ldc: s.outputs, accumulate: true,
         scratch: ws.gemmScratch, pool: ws.pool)
}

/// dW = xᵀ·dy, db = Σ dy (both overwritten), summed over the batch in the sample groups' order
/// (`SampleGroups`): each task takes a block of `denseGradientRows` rows of dW (inputs) and, a
/// patch of it at a time, forms every group's partial product for the patch in its worker's
/// scratch and adds the partials in tree order. A patch is small enough that its partials stay
/// in L1: the groups' inner dimension is only a few samples, so partials of whole row blocks
/// (as a first version had) made the product wait on L2 for their stores and the tree's adds.
public func denseBackwardWeights(_ s: DenseShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                 weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>,
                                 workspace ws: ConvWorkspace) {
    let sampleGroups = ws.pool.sampleGroups, groups = sampleGroups.count(batch: s.batch), n = s.outputs
    let perWorker = denseGradientScratchCount(s, groups: groups), kernels = ws.kernels
    ws.reservePartials(ws.pool.threads * perWorker)  // grows on the first call only; networks reserve up front
    let scratch = ws.partials, blocks = (s.inputs + denseGradientRows - 1) / denseGradientRows
    let patchRows = 2 * kernels.outerProductRows
    let pairs = ws.precision == .bfloat16 ? ws.bfloat16DenseGradientOperands(s, input: x, outputGradient: dy, groups: groups) : nil
    // The last task sums the bias gradient, the others one row block of dW each.
    ws.pool.run(tasks: blocks + 1) { task, worker in
        let partials = scratch + worker * perWorker
        if task == blocks {
            for g in 0..<groups {
                let samples = sampleGroups.samples(g, batch: s.batch)
                sumRows(dy + samples.lowerBound * n, rows: samples.count, columns: n, into: partials + g * n)
            }
            addSlicesInTree(partials, slice: n, count: n, groups: groups)
            db.update(from: partials, count: n)
            return
        }
        let blockEnd = min(s.inputs, (task + 1) * denseGradientRows)
        for i in stride(from: task * denseGradientRows, to: blockEnd, by: patchRows) {
            let rows = min(patchRows, blockEnd - i)
            for j in stride(from: 0, to: n, by: denseGradientColumns) {
                let columns = min(denseGradientColumns, n - j), slice = rows * denseGradientColumns
                for g in 0..<groups {
                    let samples = sampleGroups.samples(g, batch: s.batch)
                    let a = x + samples.lowerBound * s.inputs + i, b = dy + samples.lowerBound * n + j
                    if let pairs {
                        let first = pairs.firstPair[g], count = pairs.firstPair[g + 1] - first
                        ddp_bf16_gemm(count, pairs.x + first * s.inputs + i, 1, s.inputs, rows,
                                      pairs.dy + first * s.paddedOutputs + j, s.paddedOutputs, columns,
                                      partials + g * slice, denseGradientColumns, 0)
                        continue
                    }
                    switch kernels {
                    case .avx2:
                        ConvKernels.transposedProduct(count: samples.count, a: a, lda: s.inputs, rows: rows, b: b, ldb: n,
                                                      columns: columns, c: partials + g * slice, ldc: denseGradientColumns, accumulate: false)
                    case .avx512:
                        ConvKernelsAVX512.transposedProduct(count: samples.count, a: a, lda: s.inputs, rows: rows, b: b, ldb: n,
                                                            columns: columns, c: partials + g * slice, ldc: denseGradientColumns, accumulate: false)
                    }
                }
                addSlicesInTree(partials, slice: slice, count: slice, groups: groups)
                for r in 0..<rows { (dw + (i + r) * n + j).update(from: partials + r * denseGradientColumns, count: columns) }
            }
        }
    }
}

/// Rows of dW per task of the dense weight gradient.
let denseGradientRows = 48
/// Columns of dW per patch whose group partials are summed at once (see `denseBackwardWeights`).
let denseGradientColumns = 64

/// Floats of one worker's scratch for a dense weight gradient: every group's partial for one
/// patch, or one bias gradient's partials.
func denseGradientScratchCount(_ s: DenseShape, groups: Int) -> Int {
    let patchRows = 2 * max(ConvKernels.outerProductTileRows, ConvKernelsAVX512.outerProductTileRows)
    return groups * max(patchRows * denseGradientColumns, s.outputs)
}

/// dx = dy·Wᵀ (overwritten). Where the batch is whole slivers it is formed transposed, dxᵀ =
/// W·dyᵀ, with W's rows read in place: the other way round packs Wᵀ, a transposing copy of the
/// whole weight matrix every step, where the transposes of dy and dx are a batch's rows. Each
/// sum runs over the outputs in the same order and the same chunks either way.
public func denseBackwardData(_ s: DenseShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                              inputGradient dx: UnsafeMutablePointer<Float>, workspace ws: ConvWorkspace) {
    let batch = s.batch, kernels = ws.kernels
    if ws.precision == .bfloat16 { return ws.bfloat16DenseBackwardData(s, outputGradient: dy, weights: w, inputGradient: dx) }
    guard batch % kernels.sliverWidth == 0 && batch <= denseTransposeBatch else {
        gemm(m: batch, n: s.inputs, k: s.outputs, a: GemmOperand(dy, stride: s.outputs),
             b: GemmOperand(w, stride: s.outputs, transposed: true), c: dx, ldc: s.inputs, accumulate: false,
             scratch: ws.gemmScratch, pool: ws.pool)
        return
    }
    ws.reserveDenseTransposes((s.inputs + s.outputs) * batch)  // grows on the first call only
    let dyT = ws.denseTransposes, dxT = dyT + s.outputs * batch
    for b in 0..<batch { for o in 0..<s.outputs { dyT[o * batch + b] = dy[b * s.outputs + o] } }
    let blocks = (s.inputs + denseTransposeRows - 1) / denseTransposeRows
    ws.pool.run(tasks: blocks) { task, _ in
        let i0 = task * denseTransposeRows, rows = min(denseTransposeRows, s.inputs - i0)
        multiplyInPlace(kernels, k: s.outputs, a: w + i0 * s.outputs, lda: s.outputs, rows: rows, b: dyT, ldb: batch,
                        columns: batch, c: dxT + i0 * batch, ldc: batch, accumulate: false)
        for b in 0..<batch { for r in 0..<rows { dx[b * s.inputs + i0 + r] = dxT[(i0 + r) * batch + b] } }
    }
}

/// Rows of W per task of the transposed dense input gradient, and the largest batch it takes
/// (past it, packing Wᵀ costs little next to the product).
let denseTransposeRows = 96, denseTransposeBatch = 256

extension ConvWorkspace {
    /// Sizes the GEMM's packing for a dense layer's three products; called while a network is built.
    public func reserve(for s: DenseShape) {
        gemmScratch.reserve(k: s.inputs, n: s.outputs)
        gemmScratch.reserve(k: s.outputs, n: s.inputs)
        reservePartials(pool.threads * denseGradientScratchCount(s, groups: pool.sampleGroups.count(batch: s.batch)))
        reserveDenseTransposes((s.inputs + s.outputs) * s.batch)
        if precision == .bfloat16 {
            reserveBFloat16(operands: s.bfloat16OperandCount(groups: pool.sampleGroups.count(batch: s.batch)),
                            weights: s.bfloat16WeightCount)
        }
    }
}
