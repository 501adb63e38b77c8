import CBFloat16

/// A dense layer's three products with bfloat16 operands and float32 sums (`Precision.bfloat16`);
/// Dense.swift chooses them. Operands are rounded to pairs (bf16_kernels.h) once per call: the
/// weights by the tasks that use them, the batch's rows up front.
///
/// - forward, Y = X·W: X's rows paired along the inputs, W as pairs of rows [K/2][N];
/// - input gradient, dXᵀ = W·dYᵀ: W's rows paired along the outputs, dYᵀ as [N/2][batch];
/// - weight gradient, each sample group's Xᵀ·dY: X and dY as pairs of samples [samples/2][·].
extension DenseShape {
    var inputPairs: Int { (inputs + 1) / 2 }
    var outputPairs: Int { (outputs + 1) / 2 }
    /// Outputs rounded up to whole 16-pair vectors: the GEMM reads B's rows that far.
    var paddedOutputs: Int { (outputs + 15) / 16 * 16 }
    var paddedBatch: Int { (batch + 15) / 16 * 16 }

    /// Pairs of weights a bf16 pass rounds: W as pairs of rows, or W's rows paired.
    var bfloat16WeightCount: Int { max(inputPairs * paddedOutputs, inputs * outputPairs) }
    /// Pairs of the batch's operands: X's rows paired; dY's rows paired and transposed; or
    /// X and dY in pairs of samples, each group starting a new pair.
    func bfloat16OperandCount(groups: Int) -> Int {
        max(batch * inputPairs, batch * outputPairs + outputPairs * paddedBatch, (batch / 2 + groups) * (inputs + paddedOutputs))
    }
}

/// Columns of Y per task of the bf16 forward pass (a 64-column tile's width).
let bfloat16DenseColumns = 64

extension ConvWorkspace {
    /// Y += X·W, with Y holding the bias rows.
    func bfloat16DenseForward(_ s: DenseShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                              output y: UnsafeMutablePointer<Float>) {
        let k = s.inputs, n = s.outputs, pairs = s.inputPairs, padded = s.paddedOutputs, batch = s.batch
        let xPairs = bfloat16Scratch, wPairs = bfloat16Weights
        ddp_bf16_round_rows(x, k, batch, k, xPairs, pairs)
        pool.run(tasks: (n + bfloat16DenseColumns - 1) / bfloat16DenseColumns) { task, _ in
            let j = task * bfloat16DenseColumns, columns = min(bfloat16DenseColumns, n - j)
            ddp_bf16_interleave_rows(w + j, n, k, columns, wPairs + j, padded)
            ddp_bf16_gemm(pairs, xPairs, pairs, 1, batch, wPairs + j, padded, columns, y + j, n, 1)
        }
    }

    /// dX = dY·Wᵀ (overwritten), formed as dXᵀ = W·dYᵀ in `denseTransposes`.
    func bfloat16DenseBackwardData(_ s: DenseShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                   inputGradient dx: UnsafeMutablePointer<Float>) {
        let n = s.outputs, pairs = s.outputPairs, batch = s.batch, padded = s.paddedBatch
        let dyRows = bfloat16Scratch, dyT = dyRows + batch * pairs, wRows = bfloat16Weights, dxT = denseTransposes
        ddp_bf16_round_rows(dy, n, batch, n, dyRows, pairs)
        for b in 0..<batch { for p in 0..<pairs { dyT[p * padded + b] = dyRows[b * pairs + p] } }
        pool.run(tasks: (s.inputs + denseTransposeRows - 1) / denseTransposeRows) { task, _ in
            let i0 = task * denseTransposeRows, rows = min(denseTransposeRows, s.inputs - i0)
            ddp_bf16_round_rows(w + i0 * n, n, rows, n, wRows + i0 * pairs, pairs)
            ddp_bf16_gemm(pairs, wRows + i0 * pairs, pairs, 1, rows, dyT, padded, batch, dxT + i0 * batch, batch, 0)
            for b in 0..<batch { for r in 0..<rows { dx[b * s.inputs + i0 + r] = dxT[(i0 + r) * batch + b] } }
        }
    }

    /// X and dY of every sample group in pairs of samples, for the per-group products of
    /// `denseBackwardWeights`: returns where each group's pairs start (in rows of pairs).
    func bfloat16DenseGradientOperands(_ s: DenseShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                       groups: Int) -> (x: UnsafeMutablePointer<UInt32>, dy: UnsafeMutablePointer<UInt32>, firstPair: [Int]) {
        let sampleGroups = pool.sampleGroups
        var firstPair = [0]
        for g in 0..<groups { firstPair.append(firstPair[g] + (sampleGroups.samples(g, batch: s.batch).count + 1) / 2) }
        let xPairs = bfloat16Scratch, dyPairs = xPairs + firstPair[groups] * s.inputs
        for g in 0..<groups {
            let samples = sampleGroups.samples(g, batch: s.batch)
            ddp_bf16_interleave_rows(x + samples.lowerBound * s.inputs, s.inputs, samples.count, s.inputs,
                                     xPairs + firstPair[g] * s.inputs, s.inputs)
            ddp_bf16_interleave_rows(dy + samples.lowerBound * s.outputs, s.outputs, samples.count, s.outputs,
                                     dyPairs + firstPair[g] * s.paddedOutputs, s.paddedOutputs)
        }
        return (xPairs, dyPairs, firstPair)
    }
}
