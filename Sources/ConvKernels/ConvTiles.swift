/// The convolution micro-kernels, compiled twice: into `ConvKernels` for AVX2+FMA and into
/// `ConvKernelsAVX512` (this same file, symlinked) for AVX-512. Each module's `TileWidth.swift`
/// sets `vectorsPerRow`: a register tile is 6 output pixels × `vectorsPerRow` SIMD16 vectors,
/// that is 12 ymm accumulators (6x16) with AVX2 or 12 zmm accumulators (6x32) with AVX-512.
/// ConvCore picks the module at start-up from the CPU's features.
///
/// Y[pixel, co] = bias[co] + Σ_tap Σ_ci X[pixel shifted by tap, ci] · W[tap, ci, co]: the GEMM's A
/// rows are never materialised; each tile reads its 6 pixels' input channels straight from the
/// NHWC image, or from a zero row where a tap falls into padding.

/// Output channels per packed weight sliver and per tile.
public let sliverWidth = 16 * vectorsPerRow

/// A convolution's geometry, in plain integers (the kernels know no ConvCore types).
public struct ConvGeometry {
    public let batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int
    public let kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int
    public let outHeight: Int, outWidth: Int
    /// Where `convolveRows` starts reading: output pixel (oy, ox) reads input rows from
    /// oy·stride − paddingTop and columns from ox·stride − paddingLeft. Both are `padding`
    /// except in the phases of a strided convolution's input gradient.
    public let paddingTop: Int, paddingLeft: Int
    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int) {
        self.batch = batch; self.height = height; self.width = width
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth; self.stride = stride; self.padding = padding
        outHeight = (height + 2 * padding - kernelHeight) / stride + 1
        outWidth = (width + 2 * padding - kernelWidth) / stride + 1
        (paddingTop, paddingLeft) = (padding, padding)
    }

    /// A geometry (for `convolveRows` only) with its own top and left padding and output size:
    /// reads past the bottom and right edges are zeros like any padding. One phase of a strided
    /// convolution's input gradient is such a convolution, of stride 1 (ConvCore/StridedConv.swift).
    public init(batch: Int, height: Int, width: Int, inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                paddingTop: Int, paddingLeft: Int, outHeight: Int, outWidth: Int, stride: Int = 1) {
        self.batch = batch; self.height = height; self.width = width
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth; self.stride = stride; padding = paddingTop
        self.paddingTop = paddingTop; self.paddingLeft = paddingLeft
        self.outHeight = outHeight; self.outWidth = outWidth
    }
}

@inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
@inline(__always) func store(_ p: UnsafeMutablePointer<Float>, _ v: SIMD16<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// Packs a K×N matrix (given element-wise) into slivers [sliver][K][sliverWidth], zero-padded.
public func packWeightSlivers(k: Int, n: Int, into dst: UnsafeMutablePointer<Float>,
                              _ element: (_ row: Int, _ column: Int) -> Float) {
    let slivers = (n + sliverWidth - 1) / sliverWidth
    for s in 0..<slivers {
        let out = dst + s * k * sliverWidth
        for p in 0..<k {
            for q in 0..<sliverWidth {
                let j = s * sliverWidth + q
                out[p * sliverWidth + q] = j < n ? element(p, j) : 0
            }
        }
    }
}

/// The 12 accumulators of a tile: rows 0–5, low and (AVX-512) high 16 columns.
struct Accumulators {
    var l0 = SIMD16<Float>(), l1 = SIMD16<Float>(), l2 = SIMD16<Float>()
    var l3 = SIMD16<Float>(), l4 = SIMD16<Float>(), l5 = SIMD16<Float>()
    var h0 = SIMD16<Float>(), h1 = SIMD16<Float>(), h2 = SIMD16<Float>()
    var h3 = SIMD16<Float>(), h4 = SIMD16<Float>(), h5 = SIMD16<Float>()

    /// Adds a[r] · b to row r for each of the 6 rows; b is `vectorsPerRow` vectors at `bp`.
    @inline(__always)
    mutating func add(_ a0: Float, _ a1: Float, _ a2: Float, _ a3: Float, _ a4: Float, _ a5: Float,
                      _ bp: UnsafePointer<Float>) {
        let b0 = load(bp)
        l0 = l0.addingProduct(SIMD16(repeating: a0), b0); l1 = l1.addingProduct(SIMD16(repeating: a1), b0)
        l2 = l2.addingProduct(SIMD16(repeating: a2), b0); l3 = l3.addingProduct(SIMD16(repeating: a3), b0)
        l4 = l4.addingProduct(SIMD16(repeating: a4), b0); l5 = l5.addingProduct(SIMD16(repeating: a5), b0)
        if vectorsPerRow == 2 {
            let b1 = load(bp + 16)
            h0 = h0.addingProduct(SIMD16(repeating: a0), b1); h1 = h1.addingProduct(SIMD16(repeating: a1), b1)
            h2 = h2.addingProduct(SIMD16(repeating: a2), b1); h3 = h3.addingProduct(SIMD16(repeating: a3), b1)
            h4 = h4.addingProduct(SIMD16(repeating: a4), b1); h5 = h5.addingProduct(SIMD16(repeating: a5), b1)
        }
    }

    init() {}

    /// A tile holding the first `rows` rows and `columns` columns at `source` (row stride `ldc`), zeros elsewhere.
    @inline(__always)
    init(from source: UnsafePointer<Float>, ldc: Int, rows: Int, columns: Int) {
        if rows == 6 && columns == sliverWidth {
            l0 = load(source); l1 = load(source + ldc); l2 = load(source + 2 * ldc)
            l3 = load(source + 3 * ldc); l4 = load(source + 4 * ldc); l5 = load(source + 5 * ldc)
            if vectorsPerRow == 2 {
                h0 = load(source + 16); h1 = load(source + ldc + 16); h2 = load(source + 2 * ldc + 16)
                h3 = load(source + 3 * ldc + 16); h4 = load(source + 4 * ldc + 16); h5 = load(source + 5 * ldc + 16)
            }
            return
        }
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 12) { tile in
            let t = tile.baseAddress!
            t.initialize(repeating: SIMD16(), count: 12)
            for r in 0..<rows {
                for q in 0..<columns {
                    if q < 16 { t[r][q] = source[r * ldc + q] } else { t[6 + r][q - 16] = source[r * ldc + q] }
                }
            }
            (l0, l1, l2, l3, l4, l5) = (t[0], t[1], t[2], t[3], t[4], t[5])
            (h0, h1, h2, h3, h4, h5) = (t[6], t[7], t[8], t[9], t[10], t[11])
        }
    }

    /// Writes the first `rows` rows and `columns` columns of the tile (row stride `ldc`).
    @inline(__always)
    func write(to out: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int) {
        if rows == 6 && columns == sliverWidth {
            store(out, l0); store(out + ldc, l1); store(out + 2 * ldc, l2)
            store(out + 3 * ldc, l3); store(out + 4 * ldc, l4); store(out + 5 * ldc, l5)
            if vectorsPerRow == 2 {
                store(out + 16, h0); store(out + ldc + 16, h1); store(out + 2 * ldc + 16, h2)
                store(out + 3 * ldc + 16, h3); store(out + 4 * ldc + 16, h4); store(out + 5 * ldc + 16, h5)
            }
            return
        }
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 12) { tile in
            let t = tile.baseAddress!
            t[0] = l0; t[1] = l1; t[2] = l2; t[3] = l3; t[4] = l4; t[5] = l5
            t[6] = h0; t[7] = h1; t[8] = h2; t[9] = h3; t[10] = h4; t[11] = h5
            for r in 0..<rows {
                for q in 0..<columns { out[r * ldc + q] = q < 16 ? t[r][q] : t[6 + r][q - 16] }
            }
        }
    }
}

/// Output pixel coordinates advanced one pixel at a time: integer divisions per pixel cost as
/// much as the arithmetic of a small layer's tile.
struct PixelCursor {
    let g: ConvGeometry
    var n: Int, oy: Int, ox: Int

    @inline(__always) init(_ g: ConvGeometry, first: Int) {
        let perImage = g.outHeight * g.outWidth
        (self.g, n, oy, ox) = (g, first / perImage, (first % perImage) / g.outWidth, first % g.outWidth)
    }

    /// The pixel's image and the input row and column its receptive field starts at; then on
    /// to the next pixel.
    @inline(__always) mutating func next() -> (image: Int, top: Int, left: Int) {
        let pixel = (n, oy * g.stride - g.paddingTop, ox * g.stride - g.paddingLeft)
        ox += 1
        if ox == g.outWidth {
            ox = 0
            oy += 1
            if oy == g.outHeight { oy = 0; n += 1 }
        }
        return pixel
    }
}

/// Output pixels first..<last for one sliver of output channels.
public func convolveRows(_ g: ConvGeometry, input x: UnsafePointer<Float>, packedWeights w: UnsafePointer<Float>,
                         bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                         zeros: UnsafePointer<Float>, first: Int, last: Int, sliver: Int) {
    let cout = g.outChannels, cin = g.inChannels
    let k = g.kernelHeight * g.kernelWidth * cin
    let columns = min(sliverWidth, cout - sliver * sliverWidth)
    var initial = Accumulators()
    if let bias {
        for q in 0..<columns {
            if q < 16 { initial.l0[q] = bias[sliver * sliverWidth + q] } else { initial.h0[q - 16] = bias[sliver * sliverWidth + q] }
        }
        (initial.l1, initial.l2, initial.l3, initial.l4, initial.l5) = (initial.l0, initial.l0, initial.l0, initial.l0, initial.l0)
        (initial.h1, initial.h2, initial.h3, initial.h4, initial.h5) = (initial.h0, initial.h0, initial.h0, initial.h0, initial.h0)
    }
    let wSliver = w + sliver * k * sliverWidth
    let rowLength = g.kernelWidth * cin
    var cursor = PixelCursor(g, first: first)
    var p0 = first
    while p0 < last {
        let valid = min(6, last - p0)
        var image = SIMD8<Int>(), top = SIMD8<Int>(), left = SIMD8<Int>()
        for r in 0..<valid { (image[r], top[r], left[r]) = cursor.next() }
        var acc = initial
        var bp = UnsafePointer(wSliver)
        for ky in 0..<g.kernelHeight {
            // Where a pixel's whole kernel row lies inside the image, its kx taps are one
            // contiguous run of kw·cin floats, in the packed weights' [ky][kx][ci] order.
            // (A flag returned, not a captured variable, keeps Swift's exclusivity checks out.)
            @inline(__always) func run(_ r: Int) -> (UnsafePointer<Float>, Bool) {
                let iy = top[r] + ky, ix = left[r]
                if r >= valid || iy < 0 || iy >= g.height { return (zeros, true) }
                if ix < 0 || ix + g.kernelWidth > g.width { return (zeros, false) }
                return (x + ((image[r] * g.height + iy) * g.width + ix) * cin, true)
            }
            let (r0, c0) = run(0), (r1, c1) = run(1), (r2, c2) = run(2)
            let (r3, c3) = run(3), (r4, c4) = run(4), (r5, c5) = run(5)
            if c0 && c1 && c2 && c3 && c4 && c5 {
                for i in 0..<rowLength {
                    acc.add(r0[i], r1[i], r2[i], r3[i], r4[i], r5[i], bp)
                    bp += sliverWidth
                }
                continue
            }
            for kx in 0..<g.kernelWidth {
                @inline(__always) func tap(_ r: Int) -> UnsafePointer<Float> {
                    let iy = top[r] + ky, ix = left[r] + kx
                    if r >= valid || iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { return zeros }
                    return x + ((image[r] * g.height + iy) * g.width + ix) * cin
                }
                let a0 = tap(0), a1 = tap(1), a2 = tap(2), a3 = tap(3), a4 = tap(4), a5 = tap(5)
                for ci in 0..<cin {
                    acc.add(a0[ci], a1[ci], a2[ci], a3[ci], a4[ci], a5[ci], bp)
                    bp += sliverWidth
                }
            }
        }
        acc.write(to: y + p0 * cout + sliver * sliverWidth, ldc: cout, rows: valid, columns: columns)
        p0 += 6
    }
}

/// One image group's weight gradient, dW[tap][ci][co] = Σ_pixels X[pixel shifted by tap, ci] ·
/// dY[pixel, co], into `out`: for each tap, a sum of outer products over the pixels.
public func weightGradientGroup(_ g: ConvGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                images: Range<Int>, into out: UnsafeMutablePointer<Float>) {
    let cin = g.inChannels, cout = g.outChannels
    for tap in 0..<(g.kernelHeight * g.kernelWidth) {
        sumOuterProducts(rows: cin, columns: cout, into: out + tap * cin * cout, ldc: cout, accumulate: false) { ci0, co0 in
            TapPixels(g, x, dy, images: images, ky: tap / g.kernelWidth, kx: tap % g.kernelWidth, ci0: ci0, co0: co0)
        }
    }
}

/// The pixels one weight-gradient tile visits: every output pixel of `images` whose tap (ky, kx)
/// lands inside the image, with pointers to its input channels ci0... and its output
/// gradients co0....
struct TapPixels: OuterProductTerms {
    let g: ConvGeometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>
    let images: Range<Int>, ky: Int, kx: Int, ci0: Int, co0: Int
    /// Output columns whose tap lands inside the image.
    let oxLow: Int, oxHigh: Int

    init(_ g: ConvGeometry, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, images: Range<Int>,
         ky: Int, kx: Int, ci0: Int, co0: Int) {
        (self.g, self.x, self.dy, self.images, self.ky, self.kx, self.ci0, self.co0) = (g, x, dy, images, ky, kx, ci0, co0)
        var low = 0
        while low < g.outWidth && low * g.stride - g.padding + kx < 0 { low += 1 }
        var high = g.outWidth
        while high > low && (high - 1) * g.stride - g.padding + kx >= g.width { high -= 1 }
        (oxLow, oxHigh) = (low, high)
    }

    @inline(__always) func forEach(_ body: (_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Void) {
        let cin = g.inChannels, cout = g.outChannels, oh = g.outHeight, ow = g.outWidth
        for n in images {
            for oy in 0..<oh {
                let iy = oy * g.stride - g.padding + ky
                if iy < 0 || iy >= g.height { continue }
                var a = x + ((n * g.height + iy) * g.width + (oxLow * g.stride - g.padding + kx)) * cin + ci0
                var b = dy + ((n * oh + oy) * ow + oxLow) * cout + co0
                let aStep = g.stride * cin
                for _ in oxLow..<oxHigh {
                    body(a, b)
                    a += aStep
                    b += cout
                }
            }
        }
    }
}
