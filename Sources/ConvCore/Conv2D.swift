/// 2-D convolution on NHWC tensors as im2col + GEMM.
///
/// Layouts: input `[batch][height][width][inChannels]`, output `[batch][outHeight][outWidth][outChannels]`,
/// weights `[kernelHeight][kernelWidth][inChannels][outChannels]` (a K×outChannels matrix, K = kh·kw·Cin),
/// bias `[outChannels]`. Channels-last makes every im2col row a run of contiguous copies and the
/// output a plain row-major GEMM result, so no transposes are needed anywhere.
public struct ConvShape: Sendable, Equatable {
    public let batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int
    public let kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int

    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, stride: Int = 1, padding: Int = 0) {
        self.batch = batch; self.height = height; self.width = width
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.stride = stride; self.padding = padding
    }

    public var outHeight: Int { (height + 2 * padding - kernelHeight) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernelWidth) / stride + 1 }
    /// Length of one im2col row: the receptive field of one output pixel.
    public var patchSize: Int { kernelHeight * kernelWidth * inChannels }
    /// Number of output pixels in the batch: the GEMM's M.
    public var outputPixels: Int { batch * outHeight * outWidth }
    public var weightCount: Int { patchSize * outChannels }
    public var inputCount: Int { batch * height * width * inChannels }
    public var outputCount: Int { outputPixels * outChannels }
    /// A 1x1, stride-1, unpadded convolution is a GEMM on the input itself.
    public var isPointwise: Bool { kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0 }
    /// Floats of im2col scratch this shape needs (0 when pointwise).
    public var columnCount: Int { isPointwise ? 0 : outputPixels * patchSize }
    /// Multiply-adds ×2 of the forward pass.
    public var forwardFlops: Double { 2 * Double(outputPixels) * Double(patchSize) * Double(outChannels) }
}

/// Scratch shared by every layer of a network: the worker pool, GEMM packing buffers and
/// an im2col buffer sized once for the largest layer.
public final class ConvWorkspace: @unchecked Sendable {
    public let pool: WorkerPool
    public let gemmScratch: GemmScratch
    public private(set) var columns: UnsafeMutablePointer<Float>
    public private(set) var columnCapacity: Int

    public init(threads: Int, columnCapacity: Int = 0) {
        pool = WorkerPool(threads: threads)
        gemmScratch = GemmScratch(workers: threads)
        self.columnCapacity = max(columnCapacity, 1)
        columns = .allocate(capacity: self.columnCapacity)
    }

    /// Grows the im2col buffer; called while a network is built, never during a step.
    public func reserveColumns(_ count: Int) {
        if count <= columnCapacity { return }
        columns.deallocate()
        columns = .allocate(capacity: count)
        columnCapacity = count
    }

    deinit { columns.deallocate() }
}

/// y = conv(x, w) + bias.
public func conv2DForward(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                          workspace ws: ConvWorkspace) {
    let a = patchMatrix(s, x, ws)
    broadcastRows(bias, count: s.outChannels, rows: s.outputPixels, into: y, pool: ws.pool)
    gemm(m: s.outputPixels, n: s.outChannels, k: s.patchSize,
         a: a, b: GemmOperand(w, stride: s.outChannels),
         c: y, ldc: s.outChannels, accumulate: true, scratch: ws.gemmScratch, pool: ws.pool)
}

/// dW = patchesᵀ·dY and dBias = Σ dY over pixels (both overwritten).
public func conv2DBackwardWeights(_ s: ConvShape, input x: UnsafePointer<Float>,
                                  outputGradient dy: UnsafePointer<Float>,
                                  weightGradient dw: UnsafeMutablePointer<Float>,
                                  biasGradient db: UnsafeMutablePointer<Float>,
                                  workspace ws: ConvWorkspace) {
    let a = patchMatrix(s, x, ws)
    gemm(m: s.patchSize, n: s.outChannels, k: s.outputPixels,
         a: GemmOperand(a.base, stride: a.stride, transposed: true),
         b: GemmOperand(dy, stride: s.outChannels),
         c: dw, ldc: s.outChannels, accumulate: false, scratch: ws.gemmScratch, pool: ws.pool)
    sumRows(dy, rows: s.outputPixels, columns: s.outChannels, into: db)
}

/// dX = col2im(dY·Wᵀ) (overwritten).
public func conv2DBackwardData(_ s: ConvShape, outputGradient dy: UnsafePointer<Float>,
                               weights w: UnsafePointer<Float>,
                               inputGradient dx: UnsafeMutablePointer<Float>,
                               workspace ws: ConvWorkspace) {
    let wT = GemmOperand(w, stride: s.outChannels, transposed: true)
    if s.isPointwise {
        gemm(m: s.outputPixels, n: s.inChannels, k: s.outChannels,
             a: GemmOperand(dy, stride: s.outChannels), b: wT,
             c: dx, ldc: s.inChannels, accumulate: false, scratch: ws.gemmScratch, pool: ws.pool)
        return
    }
    precondition(ws.columnCapacity >= s.columnCount, "conv workspace too small for \(s)")
    gemm(m: s.outputPixels, n: s.patchSize, k: s.outChannels,
         a: GemmOperand(dy, stride: s.outChannels), b: wT,
         c: ws.columns, ldc: s.patchSize, accumulate: false, scratch: ws.gemmScratch, pool: ws.pool)
    columnsToImage(s, columns: ws.columns, into: dx, pool: ws.pool)
}

/// The GEMM's A operand: the input itself for pointwise convolutions, else its im2col expansion.
private func patchMatrix(_ s: ConvShape, _ x: UnsafePointer<Float>, _ ws: ConvWorkspace) -> GemmOperand {
    if s.isPointwise { return GemmOperand(x, stride: s.inChannels) }
    precondition(ws.columnCapacity >= s.columnCount, "conv workspace too small for \(s)")
    imageToColumns(s, x, into: ws.columns, pool: ws.pool)
    return GemmOperand(ws.columns, stride: s.patchSize)
}

/// One row per output pixel holding its receptive field as [ky][kx][c]; padding reads as zero.
public func imageToColumns(_ s: ConvShape, _ x: UnsafePointer<Float>, into col: UnsafeMutablePointer<Float>,
                           pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, cin = s.inChannels, k = s.patchSize
    pool.run(tasks: s.batch * oh) { task, _ in
        let n = task / oh, oy = task % oh
        let image = x + n * s.height * s.width * cin
        var row = col + (task * ow) * k
        for ox in 0..<ow {
            var dst = row
            for ky in 0..<s.kernelHeight {
                let iy = oy * s.stride - s.padding + ky
                for kx in 0..<s.kernelWidth {
                    let ix = ox * s.stride - s.padding + kx
                    if iy >= 0 && iy < s.height && ix >= 0 && ix < s.width {
                        dst.update(from: image + (iy * s.width + ix) * cin, count: cin)
                    } else {
                        dst.update(repeating: 0, count: cin)
                    }
                    dst += cin
                }
            }
            row += k
        }
    }
}

/// The adjoint of imageToColumns: scatter-adds every row back onto the pixels it was read from.
/// One task per image, scanning its rows in order, so the sums are thread-count independent.
public func columnsToImage(_ s: ConvShape, columns col: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>,
                           pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, cin = s.inChannels, k = s.patchSize
    let imageSize = s.height * s.width * cin
    pool.run(tasks: s.batch) { n, _ in
        let image = dx + n * imageSize
        image.update(repeating: 0, count: imageSize)
        var row = col + n * oh * ow * k
        for oy in 0..<oh {
            for ox in 0..<ow {
                var src = row
                for ky in 0..<s.kernelHeight {
                    let iy = oy * s.stride - s.padding + ky
                    for kx in 0..<s.kernelWidth {
                        let ix = ox * s.stride - s.padding + kx
                        if iy >= 0 && iy < s.height && ix >= 0 && ix < s.width {
                            addInPlace(image + (iy * s.width + ix) * cin, src, count: cin)
                        }
                        src += cin
                    }
                }
                row += k
            }
        }
    }
}
