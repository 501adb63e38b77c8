/// Convolution without an im2col buffer ("implicit GEMM" with row pointers).
///
/// Y[pixel, co] = bias[co] + Σ_tap Σ_ci X[pixel shifted by tap, ci] · W[tap, ci, co]. The GEMM's A
/// rows are never materialised: for each kernel tap the 6x16 register tile reads its 6 pixels'
/// input channels straight from the NHWC image (or from a zero row where the tap falls into
/// padding). This saves writing and re-reading a K-times-larger patch matrix.

/// Packs `count` K×N weights (rows of `n` floats, or transposed/flipped by `source`) into
/// 16-column slivers [sliver][K][16], zero-padding the last sliver.
@inline(__always)
func packSlivers(k: Int, n: Int, into dst: UnsafeMutablePointer<Float>, _ element: (_ row: Int, _ column: Int) -> Float) {
    let slivers = (n + 15) / 16
    for s in 0..<slivers {
        let out = dst + s * k * 16
        for p in 0..<k {
            for q in 0..<16 {
                let j = s * 16 + q
                out[p * 16 + q] = j < n ? element(p, j) : 0
            }
        }
    }
}

/// Which pixels one 6-row tile covers, and where each one's receptive field starts.
struct TileRows {
    var image = SIMD8<Int>(), y = SIMD8<Int>(), x = SIMD8<Int>(), valid = 0
}

/// Y = conv(X, W) + bias for NHWC X and weights pre-packed by `packConvWeights`.
func convolveDirect(_ s: ConvShape, input x: UnsafePointer<Float>, packedWeights w: UnsafePointer<Float>,
                    bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                    zeros: UnsafePointer<Float>, pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, cout = s.outChannels, k = s.patchSize
    let pixels = s.outputPixels
    let slivers = (cout + 15) / 16
    let rowsPerTask = 96
    let tasks = (pixels + rowsPerTask - 1) / rowsPerTask
    pool.run(tasks: tasks * slivers) { task, _ in
        let sliver = task % slivers
        let first = (task / slivers) * rowsPerTask, last = min(pixels, first + rowsPerTask)
        let columns = min(16, cout - sliver * 16)
        var biasVector = SIMD16<Float>()
        if let bias { for q in 0..<columns { biasVector[q] = bias[sliver * 16 + q] } }
        let wSliver = w + sliver * k * 16
        var p0 = first
        while p0 < last {
            var rows = TileRows()
            rows.valid = min(6, last - p0)
            for r in 0..<rows.valid {
                let p = p0 + r
                rows.image[r] = p / (oh * ow)
                let rem = p % (oh * ow)
                rows.y[r] = (rem / ow) * s.stride - s.padding
                rows.x[r] = (rem % ow) * s.stride - s.padding
            }
            convTile(s, x, wSliver, rows, biasVector, y + p0 * cout + sliver * 16, cout, columns, zeros)
            p0 += 6
        }
    }
}

/// One 6x16 output tile: accumulators stay in registers across every tap and channel.
@inline(__always)
private func convTile(_ s: ConvShape, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ rows: TileRows,
                      _ bias: SIMD16<Float>, _ out: UnsafeMutablePointer<Float>, _ ldc: Int, _ columns: Int,
                      _ zeros: UnsafePointer<Float>) {
    var c0 = bias, c1 = bias, c2 = bias, c3 = bias, c4 = bias, c5 = bias
    let cin = s.inChannels, h = s.height, wd = s.width
    var bp = w
    let rowLength = s.kernelWidth * cin
    for ky in 0..<s.kernelHeight {
        // Where a pixel's whole kernel row lies inside the image, its kx taps are one contiguous
        // run of kw·cin floats, matching the packed weights' [ky][kx][ci] order: one long loop
        // instead of kw short ones. Rows in the vertical padding read zeros.
        var contiguous = true
        @inline(__always) func run(_ r: Int) -> UnsafePointer<Float> {
            let iy = rows.y[r] + ky, ix = rows.x[r]
            if r >= rows.valid || iy < 0 || iy >= h { return zeros }
            if ix < 0 || ix + s.kernelWidth > wd { contiguous = false; return zeros }
            return x + ((rows.image[r] * h + iy) * wd + ix) * cin
        }
        let r0 = run(0), r1 = run(1), r2 = run(2), r3 = run(3), r4 = run(4), r5 = run(5)
        if contiguous {
            for i in 0..<rowLength {
                let bv = loadVector(bp)
                c0 = c0.addingProduct(SIMD16(repeating: r0[i]), bv)
                c1 = c1.addingProduct(SIMD16(repeating: r1[i]), bv)
                c2 = c2.addingProduct(SIMD16(repeating: r2[i]), bv)
                c3 = c3.addingProduct(SIMD16(repeating: r3[i]), bv)
                c4 = c4.addingProduct(SIMD16(repeating: r4[i]), bv)
                c5 = c5.addingProduct(SIMD16(repeating: r5[i]), bv)
                bp += 16
            }
            continue
        }
        for kx in 0..<s.kernelWidth {
            @inline(__always) func row(_ r: Int) -> UnsafePointer<Float> {
                let iy = rows.y[r] + ky, ix = rows.x[r] + kx
                if r >= rows.valid || iy < 0 || iy >= h || ix < 0 || ix >= wd { return zeros }
                return x + ((rows.image[r] * h + iy) * wd + ix) * cin
            }
            let a0 = row(0), a1 = row(1), a2 = row(2), a3 = row(3), a4 = row(4), a5 = row(5)
            for ci in 0..<cin {
                let bv = loadVector(bp)
                c0 = c0.addingProduct(SIMD16(repeating: a0[ci]), bv)
                c1 = c1.addingProduct(SIMD16(repeating: a1[ci]), bv)
                c2 = c2.addingProduct(SIMD16(repeating: a2[ci]), bv)
                c3 = c3.addingProduct(SIMD16(repeating: a3[ci]), bv)
                c4 = c4.addingProduct(SIMD16(repeating: a4[ci]), bv)
                c5 = c5.addingProduct(SIMD16(repeating: a5[ci]), bv)
                bp += 16
            }
        }
    }
    if rows.valid == 6 && columns == 16 {
        storeVector(out, c0); storeVector(out + ldc, c1); storeVector(out + 2 * ldc, c2)
        storeVector(out + 3 * ldc, c3); storeVector(out + 4 * ldc, c4); storeVector(out + 5 * ldc, c5)
        return
    }
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 6) { tile in
        let t = tile.baseAddress!
        t[0] = c0; t[1] = c1; t[2] = c2; t[3] = c3; t[4] = c4; t[5] = c5
        for r in 0..<rows.valid {
            for q in 0..<columns { out[r * ldc + q] = t[r][q] }
        }
    }
}

/// Images per group of the weight gradient: their inputs and output gradients should stay in
/// a core's L2 cache (about 512 KB of them) while every tile is computed. Depends on the
/// shape alone, never on the thread count.
func weightGradientGroupSize(_ s: ConvShape) -> Int {
    let bytesPerImage = 4 * (s.height * s.width * s.inChannels + s.outHeight * s.outWidth * s.outChannels)
    return max(1, min(s.batch, (512 * 1024) / max(bytesPerImage, 1)))
}

/// dW[tap][ci][co] = Σ_pixels X[pixel shifted by tap, ci] · dY[pixel, co], without im2col.
///
/// Each task takes one group of images and writes that group's sum into its own slice of
/// `partials`; the slices are then added in group order. Tiles are 6 channels of one tap ×
/// 16 output channels, accumulated in registers over every pixel of the group.
func convolutionWeightGradientDirect(_ s: ConvShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                     weightGradient dw: UnsafeMutablePointer<Float>, partials: UnsafeMutablePointer<Float>,
                                     pool: WorkerPool) {
    let group = weightGradientGroupSize(s)
    let groups = (s.batch + group - 1) / group
    let cin = s.inChannels, cout = s.outChannels
    let taps = s.kernelHeight * s.kernelWidth
    let channelBlocks = (cin + 5) / 6, slivers = (cout + 15) / 16
    let count = s.weightCount
    pool.run(tasks: groups) { g, _ in
        let out = partials + g * count
        let images = (g * group)..<min(s.batch, (g + 1) * group)
        for tap in 0..<taps {
            for block in 0..<channelBlocks {
                for sliver in 0..<slivers {
                    let ci0 = block * 6, co0 = sliver * 16
                    weightGradientTile(s, x, dy, images: images, ky: tap / s.kernelWidth, kx: tap % s.kernelWidth,
                                       ci0: ci0, rows: min(6, cin - ci0), co0: co0, columns: min(16, cout - co0),
                                       out: out + (tap * cin + ci0) * cout + co0)
                }
            }
        }
    }
    forEachChunk(count, pool: pool) { start, end in
        (dw + start).update(from: partials + start, count: end - start)
        for g in 1..<groups { addInPlace(dw + start, partials + g * count + start, count: end - start) }
    }
}

@inline(__always)
private func weightGradientTile(_ s: ConvShape, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                images: Range<Int>, ky: Int, kx: Int, ci0: Int, rows: Int, co0: Int, columns: Int,
                                out: UnsafeMutablePointer<Float>) {
    var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>()
    var c3 = SIMD16<Float>(), c4 = SIMD16<Float>(), c5 = SIMD16<Float>()
    let cin = s.inChannels, cout = s.outChannels, oh = s.outHeight, ow = s.outWidth
    // Output columns whose tap lands inside the image: ox in oxLow..<oxHigh.
    var oxLow = 0
    while oxLow < ow && oxLow * s.stride - s.padding + kx < 0 { oxLow += 1 }
    var oxHigh = ow
    while oxHigh > oxLow && (oxHigh - 1) * s.stride - s.padding + kx >= s.width { oxHigh -= 1 }
    let full = rows == 6
    for n in images {
        for oy in 0..<oh {
            let iy = oy * s.stride - s.padding + ky
            if iy < 0 || iy >= s.height { continue }
            var a = x + ((n * s.height + iy) * s.width + (oxLow * s.stride - s.padding + kx)) * cin + ci0
            var b = dy + ((n * oh + oy) * ow + oxLow) * cout + co0
            let aStep = s.stride * cin
            for _ in oxLow..<oxHigh {
                let bv = columns == 16 ? loadVector(b) : loadPartialVector(b, columns)
                if full {
                    c0 = c0.addingProduct(SIMD16(repeating: a[0]), bv)
                    c1 = c1.addingProduct(SIMD16(repeating: a[1]), bv)
                    c2 = c2.addingProduct(SIMD16(repeating: a[2]), bv)
                    c3 = c3.addingProduct(SIMD16(repeating: a[3]), bv)
                    c4 = c4.addingProduct(SIMD16(repeating: a[4]), bv)
                    c5 = c5.addingProduct(SIMD16(repeating: a[5]), bv)
                } else {
                    c0 = c0.addingProduct(SIMD16(repeating: a[0]), bv)
                    if rows > 1 { c1 = c1.addingProduct(SIMD16(repeating: a[1]), bv) }
                    if rows > 2 { c2 = c2.addingProduct(SIMD16(repeating: a[2]), bv) }
                    if rows > 3 { c3 = c3.addingProduct(SIMD16(repeating: a[3]), bv) }
                    if rows > 4 { c4 = c4.addingProduct(SIMD16(repeating: a[4]), bv) }
                }
                a += aStep
                b += cout
            }
        }
    }
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 6) { tile in
        let t = tile.baseAddress!
        t[0] = c0; t[1] = c1; t[2] = c2; t[3] = c3; t[4] = c4; t[5] = c5
        for r in 0..<rows {
            if columns == 16 {
                storeVector(out + r * cout, t[r])
            } else {
                for q in 0..<columns { out[r * cout + q] = t[r][q] }
            }
        }
    }
}

/// The first `count` floats at p, zeros after: never reads past p[count-1].
@inline(__always)
func loadPartialVector(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD16<Float> {
    var v = SIMD16<Float>()
    for q in 0..<count { v[q] = p[q] }
    return v
}
