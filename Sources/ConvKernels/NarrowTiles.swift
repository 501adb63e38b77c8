/// Tiles for outputs of at most 8 channels, compiled into both kernel modules like ConvTiles.swift:
/// 12 output pixels × one 8-wide vector (12 ymm accumulators with either kernel set). LeNet-5's
/// first layer has 6 output channels, and so has its second layer's input gradient; a 6x16 tile
/// would spend 10 of its 16 columns (a 6x32 tile 26 of 32) on channels that do not exist.
///
/// Every output is summed in the same order as by the wide tiles (the bias first in a direct
/// convolution, the bias's row last in a patch-row product), so the results are the same bits.

/// Output channels per narrow tile, and the floats per row of its packed weights.
public let narrowWidth = 8

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// The 12 accumulators of a narrow tile, one per output pixel.
struct NarrowAccumulators {
    var r0 = SIMD8<Float>(), r1 = SIMD8<Float>(), r2 = SIMD8<Float>(), r3 = SIMD8<Float>()
    var r4 = SIMD8<Float>(), r5 = SIMD8<Float>(), r6 = SIMD8<Float>(), r7 = SIMD8<Float>()
    var r8 = SIMD8<Float>(), r9 = SIMD8<Float>(), r10 = SIMD8<Float>(), r11 = SIMD8<Float>()

    init() {}

    /// Every row starting from `row`.
    init(repeating row: SIMD8<Float>) {
        (r0, r1, r2, r3, r4, r5) = (row, row, row, row, row, row)
        (r6, r7, r8, r9, r10, r11) = (row, row, row, row, row, row)
    }

    /// Adds a[r] · b to row r, reading a[r] at `rows[r] + i`.
    @inline(__always)
    mutating func add(_ a: NarrowRows, _ i: Int, _ b: SIMD8<Float>) {
        r0 = r0.addingProduct(SIMD8(repeating: a.p0[i]), b); r1 = r1.addingProduct(SIMD8(repeating: a.p1[i]), b)
        r2 = r2.addingProduct(SIMD8(repeating: a.p2[i]), b); r3 = r3.addingProduct(SIMD8(repeating: a.p3[i]), b)
        r4 = r4.addingProduct(SIMD8(repeating: a.p4[i]), b); r5 = r5.addingProduct(SIMD8(repeating: a.p5[i]), b)
        r6 = r6.addingProduct(SIMD8(repeating: a.p6[i]), b); r7 = r7.addingProduct(SIMD8(repeating: a.p7[i]), b)
        r8 = r8.addingProduct(SIMD8(repeating: a.p8[i]), b); r9 = r9.addingProduct(SIMD8(repeating: a.p9[i]), b)
        r10 = r10.addingProduct(SIMD8(repeating: a.p10[i]), b); r11 = r11.addingProduct(SIMD8(repeating: a.p11[i]), b)
    }

    /// Writes columns 0..<columns of the first `rows` rows, row r at out + r·ldc.
    @inline(__always)
    func write(to out: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int) {
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 12) { tile in
            let t = tile.baseAddress!
            (t[0], t[1], t[2], t[3], t[4], t[5]) = (r0, r1, r2, r3, r4, r5)
            (t[6], t[7], t[8], t[9], t[10], t[11]) = (r6, r7, r8, r9, r10, r11)
            for r in 0..<rows {
                // A whole vector also where rows are contiguous and it stays inside this tile:
                // its extra columns land on the next rows', which are written after it.
                if columns == narrowWidth || (ldc == columns && r * ldc + narrowWidth <= rows * ldc) {
                    UnsafeMutableRawPointer(out + r * ldc).storeBytes(of: t[r], as: SIMD8<Float>.self)
                } else {
                    for q in 0..<columns { out[r * ldc + q] = t[r][q] }
                }
            }
        }
    }
}

/// The 12 rows a narrow tile reads its broadcast operands from (rows past the end repeat the
/// first; their sums are not stored).
struct NarrowRows {
    var p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11: UnsafePointer<Float>

    @inline(__always) init(_ row: (Int) -> UnsafePointer<Float>) {
        (p0, p1, p2, p3, p4, p5) = (row(0), row(1), row(2), row(3), row(4), row(5))
        (p6, p7, p8, p9, p10, p11) = (row(6), row(7), row(8), row(9), row(10), row(11))
    }
}

/// Packs a K×N matrix (N ≤ 8, given element-wise) as K rows of `narrowWidth` floats, zero-padded.
public func packNarrowWeights(k: Int, n: Int, into dst: UnsafeMutablePointer<Float>,
                              _ element: (_ row: Int, _ column: Int) -> Float) {
    precondition(n <= narrowWidth, "a narrow tile holds at most \(narrowWidth) columns")
    for p in 0..<k {
        for q in 0..<narrowWidth { dst[p * narrowWidth + q] = q < n ? element(p, q) : 0 }
    }
}

/// C = A·B for `columns` ≤ 8: A's rows (kc floats each) at a + i·lda, read in place; B packed by
/// `packNarrowWeights`. The narrow counterpart of `gemmBlock(kc:a:lda:rows:packedB:…)`.
public func gemmBlockNarrow(kc: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                            packedB b: UnsafePointer<Float>, columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    var i = 0
    while i < rows {
        let valid = min(12, rows - i), first = a + i * lda
        let operands = NarrowRows { r in r < valid ? first + r * lda : first }
        var acc = NarrowAccumulators()
        var bp = b
        for p in 0..<kc {
            acc.add(operands, p, load8(bp))
            bp += narrowWidth
        }
        acc.write(to: c + i * ldc, ldc: ldc, rows: valid, columns: columns)
        i += 12
    }
}

/// Output pixels first..<last of a convolution with at most 8 output channels: `convolveRows`
/// with 12 pixels per tile and weights packed by `packNarrowWeights`.
public func convolveRowsNarrow(_ g: ConvGeometry, input x: UnsafePointer<Float>, packedWeights w: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                               zeros: UnsafePointer<Float>, first: Int, last: Int) {
    let cout = g.outChannels, cin = g.inChannels
    precondition(cout <= narrowWidth, "a narrow tile holds at most \(narrowWidth) output channels")
    var start = SIMD8<Float>()
    if let bias { for q in 0..<cout { start[q] = bias[q] } }
    let rowLength = g.kernelWidth * cin
    var cursor = PixelCursor(g, first: first)
    var p0 = first
    while p0 < last {
        let valid = min(12, last - p0)
        var image = SIMD16<Int>(), top = SIMD16<Int>(), left = SIMD16<Int>()
        for r in 0..<valid { (image[r], top[r], left[r]) = cursor.next() }
        var acc = NarrowAccumulators(repeating: start)
        var bp = w
        for ky in 0..<g.kernelHeight {
            // As in `convolveRows`: a kernel row inside the image is one run of kw·cin floats.
            var whole = true
            for r in 0..<valid where top[r] + ky >= 0 && top[r] + ky < g.height {
                if left[r] < 0 || left[r] + g.kernelWidth > g.width { whole = false }
            }
            if whole {
                let runs = NarrowRows { r in
                    let iy = top[r] + ky
                    if r >= valid || iy < 0 || iy >= g.height { return zeros }
                    return x + ((image[r] * g.height + iy) * g.width + left[r]) * cin
                }
                for i in 0..<rowLength {
                    acc.add(runs, i, load8(bp))
                    bp += narrowWidth
                }
                continue
            }
            for kx in 0..<g.kernelWidth {
                let taps = NarrowRows { r in
                    let iy = top[r] + ky, ix = left[r] + kx
                    if r >= valid || iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { return zeros }
                    return x + ((image[r] * g.height + iy) * g.width + ix) * cin
                }
                for ci in 0..<cin {
                    acc.add(taps, ci, load8(bp))
                    bp += narrowWidth
                }
            }
        }
        acc.write(to: y + p0 * cout, ldc: cout, rows: valid, columns: cout)
        p0 += 12
    }
}
