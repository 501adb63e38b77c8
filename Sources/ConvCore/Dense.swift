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
    gemm(m: s.batch, n: s.outputs, k: s.inputs, a: GemmOperand(x, stride: s.inputs),
         b: GemmOperand(w, stride: s.outputs), c: y, ldc: s.outputs, accumulate: true,
         scratch: ws.gemmScratch, pool: ws.pool)
}

/// dW = xᵀ·dy, db = Σ dy (both overwritten).
public func denseBackwardWeights(_ s: DenseShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                 weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>,
                                 workspace ws: ConvWorkspace) {
    gemm(m: s.inputs, n: s.outputs, k: s.batch, a: GemmOperand(x, stride: s.inputs, transposed: true),
         b: GemmOperand(dy, stride: s.outputs), c: dw, ldc: s.outputs, accumulate: false,
         scratch: ws.gemmScratch, pool: ws.pool)
    sumRows(dy, rows: s.batch, columns: s.outputs, into: db)
}

/// dx = dy·Wᵀ (overwritten).
public func denseBackwardData(_ s: DenseShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                              inputGradient dx: UnsafeMutablePointer<Float>, workspace ws: ConvWorkspace) {
    gemm(m: s.batch, n: s.inputs, k: s.outputs, a: GemmOperand(dy, stride: s.outputs),
         b: GemmOperand(w, stride: s.outputs, transposed: true), c: dx, ldc: s.inputs, accumulate: false,
         scratch: ws.gemmScratch, pool: ws.pool)
}

extension ConvWorkspace {
    /// Sizes the GEMM's packing for a dense layer's three products; called while a network is built.
    public func reserve(for s: DenseShape) {
        gemmScratch.reserve(k: s.inputs, n: s.outputs)
        gemmScratch.reserve(k: s.batch, n: s.outputs)
        gemmScratch.reserve(k: s.outputs, n: s.inputs)
    }
}
