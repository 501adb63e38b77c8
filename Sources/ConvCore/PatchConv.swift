import ConvKernels
import ConvKernelsAVX512
import Foundation

/// Convolutions with few input channels (a network's first layer reads 3 colours) on patch rows:
/// each output pixel's receptive field copied into one contiguous row, [ky][kx][ci] like the
/// weights, followed by a 1 that multiplies the bias. The direct tiles would spend as much on
/// a pixel's tap bookkeeping as on its 27 multiply-adds; here the forward pass is the GEMM tile
/// reading the rows in place (K = 27 + 1 for the bias). A block of rows is built per task in a
/// worker's scratch: one row per output pixel, K floats long.
///
/// The weight gradient is a sum of outer products of patches with output gradients. It writes
/// no rows: each image is padded once into scratch, where a kernel row's taps are one run of
/// floats, and the tiles read the patches in place (`paddedImageProduct`). Only the transposed
/// form for fewer than 16 output channels still builds rows.
///
/// The input gradient runs on patch rows too: dY·Wᵀ gives each output pixel's patch-row
/// gradient, added back onto the pixels the patch covers. The flipped convolution the other
/// paths use would spend half its multiply-adds on padding for LeNet-5's second layer (a 10x10
/// output padded by 4), and 5 of every 8 columns of its narrow tile on a 3-channel first layer.

private let patchRowsEnabled = ProcessInfo.processInfo.environment["DDPTRAIN_PATCH_ROWS"] != "0"

/// Output pixels per block in the forward pass: the rows and the block's outputs stay in L1. The
/// weight gradient takes blocks twice as long: its running sums are loaded and stored once per
/// block, and each tile reads only a few floats of every pixel.
let patchBlock = 96, patchGradientBlock = 192

extension ConvShape {
    /// Whether this convolution runs on patch rows: fewer input channels than half a 16-wide
    /// vector and a kernel larger than 1x1 (a 1x1 kernel reads its rows in place already).
    /// `DDPTRAIN_PATCH_ROWS=0` keeps such layers on the direct tiles, for comparison.
    public var usesPatchRows: Bool { patchRowsEnabled && inChannels < 8 && kernelHeight * kernelWidth > 1 && winograd == nil }

    /// How the forward pass runs, for reports: "pixel pairs" (with the weight gradient's Winograd
    /// variant, if any), "planar" (with patch rows for the input gradient), the Winograd variant,
    /// "patch rows" or "direct".
    public var forwardAlgorithm: String {
        if usesPixelPairs { return "pixel pairs" + (winograd.map { ", dW \($0.rawValue)" } ?? "") }
        if usesPlanarTiles { return "planar" }
        return winograd?.rawValue ?? (usesPatchRows ? "patch rows" : "direct")
    }

    /// Floats per patch row: the patch, the bias's 1, then zeros up to a whole number of 8-float
    /// vectors or, where the weight gradient runs along the rows (`patchGradientAlongRows`), of
    /// its slivers of 16 or 32 columns.
    var patchRowLength: Int {
        let k = patchSize + 1
        return patchGradientAlongRows ? (k + 31) / 32 * 32 : (k + 7) / 8 * 8
    }

    /// Whether the weight gradient is formed transposed, dWᵀ = Σ dYᵀ·patch row, with tiles of
    /// output channels × patch floats: for fewer output channels than a 16-wide vector
    /// (LeNet-5's first layer has 6), whose tiles the other way round would hold 6 of 16 columns.
    /// Every sum is the same, over the same pixels in the same order.
    var patchGradientAlongRows: Bool { outChannels < 16 }

    /// Floats per row of the input gradient's patch rows: whole slivers of either kernel set.
    var patchGradientRowLength: Int { (patchSize + 31) / 32 * 32 }

    /// Floats of patch-row scratch one worker needs: a padded image for the weight gradient (or,
    /// transposed, a block of rows and its running sums); or the input gradient's block of rows
    /// and padded image; or the planar tiles' scratch.
    var patchScratchPerWorker: Int {
        max(patchGradientAlongRows ? patchGradientBlock * patchRowLength + patchRowLength * outChannels : paddedImageCount,
            patchBlock * patchGradientRowLength + paddedImageCount, usesPlanarTiles ? planarScratchPerWorker : 0)
    }

    /// Floats of one row, and of one image, with the padding around it.
    var paddedRowLength: Int { (width + 2 * padding) * inChannels }
    var paddedImageCount: Int { (height + 2 * padding) * paddedRowLength }
}

/// Writes the patch rows of output pixels `pixels` (numbered over the batch), `s.patchRowLength`
/// floats apart from `rows` on. It goes output row by output row and, within one, kernel row by
/// kernel row, so that the inner loop only steps its source and destination (the per-pixel
/// index arithmetic of a first attempt cost as much as the products).
func writePatchRows(_ s: ConvShape, input x: UnsafePointer<Float>, zeros: UnsafePointer<Float>, pixels: Range<Int>,
                    into rows: UnsafeMutablePointer<Float>) {
    let oh = s.outHeight, ow = s.outWidth, cin = s.inChannels, kw = s.kernelWidth
    let length = s.patchRowLength, run = kw * cin, step = s.stride * cin
    var p = pixels.lowerBound, segment = rows
    while p < pixels.upperBound {
        let n = p / (oh * ow), oy = (p % (oh * ow)) / ow, ox0 = p % ow
        let count = min(ow - ox0, pixels.upperBound - p)
        // Output columns whose kernel row lies inside the image: [interiorLow, interiorHigh).
        let interiorLow = max(ox0, min(ox0 + count, (s.padding + s.stride - 1) / s.stride))
        let interiorHigh = max(interiorLow, min(ox0 + count, s.width - kw + s.padding >= 0 ? (s.width - kw + s.padding) / s.stride + 1 : 0))
        for ky in 0..<s.kernelHeight {
            let iy = oy * s.stride - s.padding + ky
            var dst = segment + ky * run
            if iy < 0 || iy >= s.height {
                for _ in 0..<count {
                    copyRun(dst, zeros, count: run)
                    dst += length
                }
                continue
            }
            let line = x + (n * s.height + iy) * s.width * cin
            for ox in ox0..<interiorLow {
                copyPartialRun(s, line: line, left: ox * s.stride - s.padding, into: dst)
                dst += length
            }
            var src = line + (interiorLow * s.stride - s.padding) * cin
            for _ in interiorLow..<interiorHigh {
                copyRun(dst, src, count: run)
                src += step
                dst += length
            }
            for ox in interiorHigh..<(ox0 + count) {
                copyPartialRun(s, line: line, left: ox * s.stride - s.padding, into: dst)
                dst += length
            }
        }
        var tail = segment + s.patchSize
        for _ in 0..<count {
            writeTail(tail, count: length - s.patchSize)
            tail += length
        }
        segment += count * length
        p += count
    }
}

/// Copies an image into the middle of a zeroed (height + 2·padding) × (width + 2·padding) one.
func padImage(_ s: ConvShape, _ image: UnsafePointer<Float>, into padded: UnsafeMutablePointer<Float>) {
    let row = s.width * s.inChannels, paddedRow = s.paddedRowLength
    padded.update(repeating: 0, count: s.paddedImageCount)
    for y in 0..<s.height {
        (padded + (y + s.padding) * paddedRow + s.padding * s.inChannels).update(from: image + y * row, count: row)
    }
}

/// One kernel row of a pixel whose row reaches into the left or right padding.
@inline(__always) private func copyPartialRun(_ s: ConvShape, line: UnsafePointer<Float>, left: Int, into dst: UnsafeMutablePointer<Float>) {
    let cin = s.inChannels
    for kx in 0..<s.kernelWidth {
        let ix = left + kx, out = dst + kx * cin
        if ix < 0 || ix >= s.width {
            for c in 0..<cin { out[c] = 0 }
        } else {
            for c in 0..<cin { out[c] = line[ix * cin + c] }
        }
    }
}

/// Copies a kernel row's floats 8 at a time, the last 8 overlapping the others where the count
/// is not a multiple of 8 (LeNet-5's 15): scalar copies of the 27 floats of a 3x3x3 patch took as
/// long as the patch's 28 × 32 multiply-adds, and the scalar rest of each 5x3 row was a third
/// of LeNet-5's step.
@inline(__always) private func copyRun(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    @inline(__always) func copy8(_ i: Int) {
        UnsafeMutableRawPointer(dst + i).storeBytes(of: UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
    }
    if count < 8 {
        for i in 0..<count { dst[i] = src[i] }
        return
    }
    var i = 0
    while i + 8 < count {
        copy8(i)
        i += 8
    }
    copy8(count - 8)
}

/// Writes a patch row's tail: the bias's 1, then zeros to the row's end, 8 floats at a time
/// (the last 8 overlapping).
@inline(__always) private func writeTail(_ tail: UnsafeMutablePointer<Float>, count: Int) {
    @inline(__always) func store(_ i: Int, _ v: SIMD8<Float>) { UnsafeMutableRawPointer(tail + i).storeBytes(of: v, as: SIMD8<Float>.self) }
    if count < 8 {
        tail[0] = 1
        for i in 1..<count { tail[i] = 0 }
        return
    }
    var i = 8
    while i < count - 8 {
        store(i, SIMD8())
        i += 8
    }
    store(count - 8, SIMD8())
    store(0, SIMD8(1, 0, 0, 0, 0, 0, 0, 0))
}

extension ConvWorkspace {
    /// Y = conv(X, W) + bias: per block of output pixels, its patch rows times the weights packed
    /// with the bias as one more row.
    func convolveByPatchRows(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>) {
        let cout = s.outChannels, k = s.patchSize + (bias == nil ? 0 : 1), kernels = self.kernels.forColumns(cout)
        packConvWeights(kernels, k: k, n: cout, into: packedWeights) { p, j in p < s.patchSize ? w[p * cout + j] : bias![j] }
        let weights = UnsafePointer(packedWeights), scratch = patchScratch, perWorker = s.patchScratchPerWorker
        let length = s.patchRowLength, zeros = UnsafePointer(self.zeros)
        pool.run(tasks: (s.outputPixels + patchBlock - 1) / patchBlock) { task, worker in
            let first = task * patchBlock, count = min(patchBlock, s.outputPixels - first)
            let rows = scratch + worker * perWorker
            writePatchRows(s, input: x, zeros: zeros, pixels: first..<(first + count), into: rows)
            multiplyRows(kernels, kc: k, a: rows, lda: length, rows: count, packedB: weights, columns: cout, c: y + first * cout, ldc: cout)
        }
    }

    /// dW = Σ patchᵀ · dY over pixels, and dBias (what a patch row's constant 1 gives: Σ dY)
    /// unless `db` is nil, summed by image groups (`sumOverImageGroups`).
    func weightGradientByPatchRows(_ s: ConvShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                   weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>?) {
        if s.patchGradientAlongRows {
            transposedWeightGradientByPatchRows(s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db)
            return
        }
        // Each patch is read in place from its image, padded once into the worker's scratch:
        // writing its patch rows took 29 % of this pass (a row per pixel, as long as the patch).
        let cout = s.outChannels, ow = s.outWidth, perImage = s.outHeight * ow, imageSize = s.height * s.width * s.inChannels
        let paddedRow = s.paddedRowLength
        let blockRows = max(1, patchGradientBlock / ow)
        let scratch = patchScratch, perWorker = s.patchScratchPerWorker, kernels = self.kernels.forColumns(cout)
        sumOverImageGroups(s, weightGradient: dw, biasGradient: db) { images, worker, out in
            let padded = scratch + worker * perWorker, bias = db == nil ? nil : out + s.weightCount
            for n in images {
                padImage(s, x + n * imageSize, into: padded)
                for oy in stride(from: 0, to: s.outHeight, by: blockRows) {
                    let pixels = (a: UnsafePointer(padded + oy * s.stride * paddedRow), pixelStep: s.stride * s.inChannels,
                                  rowStep: s.stride * paddedRow, rows: min(blockRows, s.outHeight - oy), columns: ow)
                    let b = dy + (n * perImage + oy * ow) * cout
                    let accumulate = n > images.lowerBound || oy > 0
                    switch kernels {
                    case .avx2:
                        ConvKernels.paddedImageProduct(pixels: pixels, kernelRows: s.kernelHeight, kernelRowStep: paddedRow,
                                                       run: s.kernelWidth * s.inChannels, b: b, ldb: cout, columns: cout,
                                                       c: out, ldc: cout, bias: bias, accumulate: accumulate)
                    case .avx512:
                        ConvKernelsAVX512.paddedImageProduct(pixels: pixels, kernelRows: s.kernelHeight, kernelRowStep: paddedRow,
                                                             run: s.kernelWidth * s.inChannels, b: b, ldb: cout, columns: cout,
                                                             c: out, ldc: cout, bias: bias, accumulate: accumulate)
                    }
                }
            }
        }
    }

    /// dWᵀ = Σ dYᵀ · patch row, block of patch rows by block, for `patchGradientAlongRows`.
    private func transposedWeightGradientByPatchRows(_ s: ConvShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                                     weightGradient dw: UnsafeMutablePointer<Float>,
                                                     biasGradient db: UnsafeMutablePointer<Float>?) {
        let cout = s.outChannels, length = s.patchRowLength, perImage = s.outHeight * s.outWidth
        let rowsOut = s.patchSize + (db == nil ? 0 : 1)
        let scratch = patchScratch, perWorker = s.patchScratchPerWorker, kernels = self.kernels, zeros = UnsafePointer(self.zeros)
        // sums is dWᵀ: output channels × whole slivers of the patch row.
        let alongColumns = (rowsOut + kernels.sliverWidth - 1) / kernels.sliverWidth * kernels.sliverWidth
        sumOverImageGroups(s, weightGradient: dw, biasGradient: db) { images, worker, out in
            let rows = scratch + worker * perWorker, sums = rows + patchGradientBlock * length
            let pixels = (images.lowerBound * perImage)..<(images.upperBound * perImage)
            var first = pixels.lowerBound
            while first < pixels.upperBound {
                let count = min(patchGradientBlock, pixels.upperBound - first)
                writePatchRows(s, input: x, zeros: zeros, pixels: first..<(first + count), into: rows)
                let accumulate = first > pixels.lowerBound
                switch kernels {
                case .avx2:
                    ConvKernels.transposedProduct(count: count, a: dy + first * cout, lda: cout, rows: cout, b: rows, ldb: length,
                                                  columns: alongColumns, c: sums, ldc: alongColumns, accumulate: accumulate)
                case .avx512:
                    ConvKernelsAVX512.transposedProduct(count: count, a: dy + first * cout, lda: cout, rows: cout, b: rows, ldb: length,
                                                        columns: alongColumns, c: sums, ldc: alongColumns, accumulate: accumulate)
                }
                first += count
            }
            for p in 0..<rowsOut { for co in 0..<cout { out[p * cout + co] = sums[co * alongColumns + p] } }
        }
    }

    /// dX = the input gradient (overwritten). One task per image, block of output rows by block:
    /// the block's patch-row gradients, dY·Wᵀ, into the worker's scratch, then added onto the
    /// image, padded in scratch, while they are in L1. Each input pixel sums its terms in the
    /// order of the output pixels, whatever the thread count.
    func inputGradientByPatchRows(_ s: ConvShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                  inputGradient dx: UnsafeMutablePointer<Float>) {
        // Rows of whole slivers (their extra columns are zeros), so that every tile is stored whole.
        let cout = s.outChannels, k = s.patchSize, length = s.patchGradientRowLength
        packConvWeights(kernels, k: cout, n: length, into: packedWeights) { co, p in p < k ? w[p * cout + co] : 0 }
        let weights = UnsafePointer(packedWeights), scratch = patchScratch, perWorker = s.patchScratchPerWorker
        let kernels = self.kernels, ow = s.outWidth, perImage = s.outHeight * ow, imageSize = s.height * s.width * s.inChannels
        let blockRows = max(1, patchBlock / ow), paddedRow = s.paddedRowLength
        let run = s.kernelWidth * s.inChannels
        pool.run(tasks: s.batch) { n, worker in
            let rows = scratch + worker * perWorker, padded = rows + patchBlock * length
            padded.update(repeating: 0, count: s.paddedImageCount)
            for oy0 in stride(from: 0, to: s.outHeight, by: blockRows) {
                let oy1 = min(oy0 + blockRows, s.outHeight)
                multiplyRows(kernels, kc: cout, a: dy + (n * perImage + oy0 * ow) * cout, lda: cout, rows: (oy1 - oy0) * ow,
                             packedB: weights, columns: length, c: rows, ldc: length)
                var row = UnsafePointer(rows)
                for oy in oy0..<oy1 {
                    var patch = padded + oy * s.stride * paddedRow
                    for _ in 0..<ow {
                        for ky in 0..<s.kernelHeight {
                            let dst = patch + ky * paddedRow, src = row + ky * run
                            addInPlace(dst, src, count: run)
                        }
                        patch += s.stride * s.inChannels
                        row += length
                    }
                }
            }
            unpadImage(s, padded, into: dx + n * imageSize)
        }
    }
}

/// The inverse of `padImage`: copies the middle of a padded image out.
func unpadImage(_ s: ConvShape, _ padded: UnsafePointer<Float>, into image: UnsafeMutablePointer<Float>) {
    let row = s.width * s.inChannels, paddedRow = s.paddedRowLength
    for y in 0..<s.height {
        (image + y * row).update(from: padded + (y + s.padding) * paddedRow + s.padding * s.inChannels, count: row)
    }
}
