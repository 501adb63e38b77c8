/// 2-D convolution on NHWC tensors: Winograd for 3x3 stride-1 layers with 16-multiple channel
/// counts (Winograd.swift), except the forward pass and input gradient of outputs of at most 4
/// pixels (PixelPairs.swift); else the direct register tiles (DirectConv.swift); the input gradient
/// of a strided convolution runs phase by phase on the direct tiles (StridedConv.swift), or
/// through GEMM and im2col's adjoint for a shape that cannot.
///
/// Layouts: input `[batch][height][width][inChannels]`, output `[batch][outHeight][outWidth][outChannels]`,
/// weights `[kernelHeight][kernelWidth][inChannels][outChannels]` (a K×outChannels matrix, K = kh·kw·Cin),
/// bias `[outChannels]`. Channels-last makes every pixel's channels one contiguous vector.
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
    /// Floats of a whole-batch im2col matrix.
    public var columnCount: Int { outputPixels * patchSize }
    /// For stride 1 with a square kernel the input gradient is itself a convolution (of the
    /// output gradient with the flipped kernel); otherwise it goes through im2col's adjoint.
    public var inputGradientIsConvolution: Bool { stride == 1 && kernelHeight == kernelWidth && padding < kernelHeight }
    /// The convolution that gives the input gradient when `inputGradientIsConvolution`: of dY,
    /// padded by k−1−padding, with the flipped, channel-transposed kernel.
    var inputGradientConvolution: ConvShape {
        ConvShape(batch: batch, height: outHeight, width: outWidth, inChannels: outChannels, outChannels: inChannels,
                  kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: 1, padding: kernelHeight - 1 - padding)
    }
    /// Multiply-adds ×2 of the forward pass.
    public var forwardFlops: Double { 2 * Double(outputPixels) * Double(patchSize) * Double(outChannels) }
}

/// Scratch shared by every layer of a network, sized once for the largest layer: the worker
/// pool, GEMM packing buffers, packed weights, a zero row for padding taps, per-group partial
/// weight gradients, and an im2col buffer for strided input gradients (a few images at a time).
public final class ConvWorkspace: @unchecked Sendable {
    public let pool: WorkerPool
    public let gemmScratch: GemmScratch
    /// The compiled convolution kernels this workspace runs.
    public let kernels: ConvKernelSet
    private let im2col = ScratchBuffer<Float>(), packed = ScratchBuffer<Float>(), zeroRow = ScratchBuffer<Float>()
    private let partialSums = ScratchBuffer<Float>(), winograd = ScratchBuffer<Float>(), patchRows = ScratchBuffer<Float>()
    private let winogradBlocks = ScratchBuffer<Float>(), denseTransposeBuffer = ScratchBuffer<Float>()
    private let pairScratch = ScratchBuffer<UInt32>(), pairWeights = ScratchBuffer<UInt32>()
    /// The precision of the products (Precision.swift).
    public let precision: Precision
    public var columns: UnsafeMutablePointer<Float> { im2col.pointer }
    public var columnCapacity: Int { im2col.capacity }
    var packedWeights: UnsafeMutablePointer<Float> { packed.pointer }
    /// A row of zeros that padding taps read.
    var zeros: UnsafeMutablePointer<Float> { zeroRow.pointer }
    var partials: UnsafeMutablePointer<Float> { partialSums.pointer }
    var partialCapacity: Int { partialSums.capacity }
    /// Grows the partial-sum scratch (per sample group or per worker) to `count` floats.
    func reservePartials(_ count: Int) { partialSums.reserve(count) }
    /// dyᵀ and dxᵀ of a dense layer's input gradient (Dense.swift).
    var denseTransposes: UnsafeMutablePointer<Float> { denseTransposeBuffer.pointer }
    func reserveDenseTransposes(_ count: Int) { denseTransposeBuffer.reserve(count) }
    /// Per worker, `winogradPerWorker` floats from `winogradScratch`: a Winograd task's
    /// transformed inputs and products.
    var winogradScratch: UnsafeMutablePointer<Float> { winograd.pointer }
    private(set) var winogradPerWorker = 0
    /// Whole-batch Winograd operands: of the weight gradient split by blocks (and its per-worker
    /// blocks), or of a convolution split by positions.
    var winogradBlockScratch: UnsafeMutablePointer<Float> { winogradBlocks.pointer }
    var winogradBlockScratchCapacity: Int { winogradBlocks.capacity }
    /// How Winograd weight gradients are split into tasks; set it before `reserve`.
    public var winogradGradientSplit = WinogradGradientSplit.fromEnvironment
    /// How Winograd convolutions are split into tasks; set it before `reserve`.
    public var winogradConvolutionSplit = WinogradConvolutionSplit.fromEnvironment
    /// Per worker, `bfloat16PerWorker` pairs from `bfloat16Scratch`: a bf16 Winograd task's
    /// operands (WinogradBFloat16.swift).
    var bfloat16Scratch: UnsafeMutablePointer<UInt32> { pairScratch.pointer }
    private(set) var bfloat16PerWorker = 0
    /// A bf16 layer's transformed weights as pairs.
    var bfloat16Weights: UnsafeMutablePointer<UInt32> { pairWeights.pointer }
    /// Grows the bf16 scratch: `operands` pairs (all workers') and `weights` pairs.
    func reserveBFloat16(operands: Int, weights: Int) {
        pairScratch.reserve(operands)
        pairWeights.reserve(weights)
    }
    /// Per worker, `patchScratchPerWorker` floats: a block of patch rows (PatchConv.swift).
    var patchScratch: UnsafeMutablePointer<Float> { patchRows.pointer }
    /// Floats of im2col scratch a strided layer may use at once (its input gradient is built
    /// image group by image group; 4M floats = 16 MB).
    public static let columnBudget = 1 << 22

    public init(threads: Int, kernels: ConvKernelSet = .best, precision: Precision = .float32) {
        precondition(kernels == .avx2 || ConvKernelSet.cpuSupportsAVX512, "this CPU cannot run the AVX-512 kernels")
        precondition(precision.unavailableReason == nil && (precision == .float32 || kernels == .avx512),
                     precision.unavailableReason ?? "bf16 runs beside the AVX-512 kernels")
        self.kernels = kernels
        self.precision = precision
        pool = WorkerPool(threads: threads)
        gemmScratch = GemmScratch(workers: threads, kernels: kernels)
    }

    /// Grows every buffer to what `shape` needs; called while a network is built, never during a step.
    public func reserve(for shape: ConvShape) {
        let roundUpSliver = { (n: Int) in (n + 31) / 32 * 32 }  // the widest sliver of any kernel set
        let taps = shape.kernelHeight * shape.kernelWidth
        // The patch-row path packs the bias as one more weight row.
        packed.reserve(max((shape.patchSize + 1) * roundUpSliver(shape.outChannels), taps * shape.outChannels * roundUpSliver(shape.inChannels)))
        if shape.usesPatchRows { patchRows.reserve(pool.threads * shape.patchScratchPerWorker) }
        if let algorithm = shape.winograd {
            packed.reserve(max(algorithm.weightCount(k: shape.inChannels, n: shape.outChannels),
                               algorithm.weightCount(k: shape.outChannels, n: shape.inChannels)))
            let widest = max(shape.inChannels, shape.outChannels)
            winogradPerWorker = max(winogradPerWorker, algorithm.scratchCount(inChannels: widest, outChannels: widest))
            winograd.reserve(pool.threads * winogradPerWorker)
            if bfloat16Products(algorithm) {
                bfloat16PerWorker = max(bfloat16PerWorker, algorithm.bfloat16ScratchCount(inChannels: widest, outChannels: widest))
                reserveBFloat16(operands: pool.threads * bfloat16PerWorker, weights: algorithm.bfloat16WeightCount(k: widest, n: widest))
            }
            // The split by positions uses the operands' room, for the forward and the input gradient.
            if algorithm.convolvesByPositions(shape, winogradConvolutionSplit) {
                winogradBlocks.reserve(max(algorithm.operandCount(shape), algorithm.operandCount(shape.inputGradientConvolution)))
                if bfloat16Products(algorithm) {
                    let channelsOfTiles = max(algorithm.tiles(shape) * shape.inChannels,
                                              algorithm.tiles(shape.inputGradientConvolution) * shape.outChannels)
                    reserveBFloat16(operands: algorithm.positions * channelsOfTiles / 2,
                                    weights: algorithm.bfloat16WeightCount(k: widest, n: widest))
                }
            }
            if algorithm.gradientByBlocks(shape, winogradGradientSplit, groupSize: pool.sampleGroups.size) {
                let groups = pool.sampleGroups.count(batch: shape.batch)
                winogradBlocks.reserve(algorithm.blockScratchCount(shape, groups: groups, workers: pool.threads))
            }
        }
        // A narrow direct convolution reads padded copies of its input (forward or flipped), an image per worker.
        for direct in [shape, shape.inputGradientConvolution] where direct.directPadsInput(kernels) {
            im2col.reserve(pool.threads * direct.paddedImage.inputCount)
        }
        // Pixel pairs' input gradient packs Wᵀ of one tap at a time.
        if shape.usesPixelPairs { gemmScratch.reserve(k: shape.outChannels, n: shape.inChannels) }
        // A zero row as long as any kernel row (of the forward or the flipped convolution).
        zeroRow.reserve(shape.kernelWidth * max(shape.inChannels, shape.outChannels), zeroed: true)
        partialSums.reserve(partialGradientCount(shape, self))
        // A strided input gradient needs a phase image per worker (StridedConv.swift), or, for
        // the odd shape that cannot run by phases, im2col and a GEMM.
        if shape.inputGradientByPhases {
            im2col.reserve(pool.threads * shape.phaseImageCount)
        } else if !shape.inputGradientIsConvolution {
            gemmScratch.reserve(k: shape.outChannels, n: shape.patchSize)
            im2col.reserve(max(shape.outHeight * shape.outWidth * shape.patchSize, min(shape.columnCount, ConvWorkspace.columnBudget)))
        }
    }
}

/// y = conv(x, w) + bias, or conv(x, w) when `bias` is nil: a convolution followed by batch
/// norm has no bias (the norm's shift replaces it), and then no bias work is done at all. With
/// `relu`, y = max(that, 0): the ReLU after the convolution, done by Winograd's output transform
/// on the way out (`ConvShape.winogradDataPasses`), by a pass over y otherwise; the same bits either way.
///
///     conv2DForward(shape, input: x, weights: w, bias: nil, output: y, workspace: ws)   // ResNet conv → BN
public func conv2DForward(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, relu: Bool = false, output y: UnsafeMutablePointer<Float>,
                          workspace ws: ConvWorkspace) {
    if let algorithm = s.winogradDataPasses {
        ws.winogradForward(algorithm, s, input: x, weights: w, bias: bias, relu: relu, output: y)
        return
    }
    convolutionForward(s, input: x, weights: w, bias: bias, output: y, workspace: ws)
    if relu { reluForward(y, y, count: s.outputCount, pool: ws.pool) }
}

/// conv2DForward's other algorithms.
private func convolutionForward(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>, workspace ws: ConvWorkspace) {
    let cout = s.outChannels
    if s.usesPixelPairs {
        ws.convolveByPixelPairs(s, input: x, weights: w, bias: bias, output: y)
        return
    }
    if s.usesPlanarTiles {
        ws.convolveByPlanarTiles(s, input: x, weights: w, bias: bias, output: y)
        return
    }
    if s.usesPatchRows {
        ws.convolveByPatchRows(s, input: x, weights: w, bias: bias, output: y)
        return
    }
    packConvWeights(ws.kernels, k: s.patchSize, n: cout, into: ws.packedWeights) { p, j in w[p * cout + j] }
    if s.kernelHeight == 1 && s.kernelWidth == 1 && s.padding == 0 {
        convolvePointwise(ws.kernels, s, input: x, packedWeights: ws.packedWeights, bias: bias, output: y, pool: ws.pool)
        return
    }
    ws.convolveDirect(s, input: x, packedWeights: ws.packedWeights, bias: bias, output: y)
}

/// dW = patchesᵀ·dY and dBias = Σ dY over pixels (both overwritten). Pass `biasGradient: nil`
/// for a convolution without bias (one followed by batch norm): Σ dY is then not computed.
public func conv2DBackwardWeights(_ s: ConvShape, input x: UnsafePointer<Float>,
                                  outputGradient dy: UnsafePointer<Float>,
                                  weightGradient dw: UnsafeMutablePointer<Float>,
                                  biasGradient db: UnsafeMutablePointer<Float>?,
                                  workspace ws: ConvWorkspace) {
    precondition(ws.partialCapacity >= partialGradientCount(s, ws), "conv workspace too small for \(s)")
    if let algorithm = s.winograd {
        ws.winogradBackwardWeights(algorithm, s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db)
        return
    }
    if s.usesPlanarTiles {
        ws.weightGradientByPlanarTiles(s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db)
        return
    }
    if s.usesPatchRows {
        ws.weightGradientByPatchRows(s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db)
        return
    }
    convolutionWeightGradientDirect(ws.kernels, s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db, workspace: ws)
}

/// Floats of per-group partial weight and bias gradients a shape needs.
func partialGradientCount(_ s: ConvShape, _ ws: ConvWorkspace) -> Int {
    let groups = ws.pool.sampleGroups.count(batch: s.batch)
    if let algorithm = s.winograd {
        let byBlocks = algorithm.gradientByBlocks(s, ws.winogradGradientSplit, groupSize: ws.pool.sampleGroups.size)
        return byBlocks ? 0 : groups * (algorithm.gradientSliceCount(s) + algorithm.weightSliceCount(s))
    }
    return groups * partialSliceCount(s)
}

/// dX = the input gradient (overwritten). For stride 1 it is itself a convolution: dY, padded
/// by k−1−padding, correlated with the spatially flipped, channel-transposed kernel; for a
/// larger stride, one such convolution per phase of the input pixels (StridedConv.swift).
public func conv2DBackwardData(_ s: ConvShape, outputGradient dy: UnsafePointer<Float>,
                               weights w: UnsafePointer<Float>,
                               inputGradient dx: UnsafeMutablePointer<Float>,
                               workspace ws: ConvWorkspace) {
    if let algorithm = s.winogradDataPasses {
        ws.winogradBackwardData(algorithm, s, outputGradient: dy, weights: w, inputGradient: dx)
        return
    }
    let kh = s.kernelHeight, kw = s.kernelWidth, cin = s.inChannels, cout = s.outChannels
    if s.usesPatchRows {
        ws.inputGradientByPatchRows(s, outputGradient: dy, weights: w, inputGradient: dx)
        return
    }
    if s.usesPixelPairs {
        ws.inputGradientByPixelPairs(s, outputGradient: dy, weights: w, inputGradient: dx)
        return
    }
    if s.inputGradientIsConvolution {
        let flipped = s.inputGradientConvolution
        packConvWeights(ws.kernels, k: kh * kw * cout, n: cin, into: ws.packedWeights) { p, ci in
            let tap = p / cout, co = p % cout
            let ky = kh - 1 - tap / kw, kx = kw - 1 - tap % kw
            return w[((ky * kw + kx) * cin + ci) * cout + co]
        }
        ws.convolveDirect(flipped, input: dy, packedWeights: ws.packedWeights, bias: nil, output: dx)
        return
    }
    if s.inputGradientByPhases {
        inputGradientByPhases(s, outputGradient: dy, weights: w, inputGradient: dx, workspace: ws)
        return
    }
    let wT = GemmOperand(w, stride: cout, transposed: true)
    // Otherwise dY·Wᵀ gives every patch's gradient, scattered back image group by image group.
    let perImage = s.outHeight * s.outWidth
    let group = max(1, min(s.batch, ws.columnCapacity / (perImage * s.patchSize)))
    var first = 0
    while first < s.batch {
        let n = min(group, s.batch - first)
        let part = ConvShape(batch: n, height: s.height, width: s.width, inChannels: cin, outChannels: cout,
                             kernelHeight: kh, kernelWidth: kw, stride: s.stride, padding: s.padding)
        gemm(m: part.outputPixels, n: s.patchSize, k: cout, a: GemmOperand(dy + first * perImage * cout, stride: cout), b: wT,
             c: ws.columns, ldc: s.patchSize, accumulate: false, scratch: ws.gemmScratch, pool: ws.pool)
        columnsToImage(part, columns: ws.columns, into: dx + first * s.height * s.width * cin, pool: ws.pool)
        first += n
    }
}

/// Scatter-adds every patch-gradient row (one per output pixel, [ky][kx][c]) back onto the pixels it covers.
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
