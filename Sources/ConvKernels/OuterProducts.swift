/// Sums of outer products, C[i][j] = Σ_terms a[i] · b[j]: the shape of every weight gradient
/// (a = input channels at a pixel, b = output gradients there). Compiled into both kernel
/// modules like ConvTiles.swift. A tile is `weightGradientRows` rows (6 with AVX2, 8 with
/// AVX-512) × one sliver of columns.

/// Rows per full outer-product tile: a sum whose row count is a multiple of it has no edge tile.
public let outerProductTileRows = weightGradientRows

/// The (a, b) pairs one tile sums over, starting at the tile's first row and column.
protocol OuterProductTerms {
    func forEach(_ body: (_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Void)
}

/// Rows of two matrices taken in step: a + t·lda and b + t·ldb for t < count.
struct MatrixRows: OuterProductTerms {
    let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, count: Int
    @inline(__always) func forEach(_ body: (_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Void) {
        var a = self.a, b = self.b
        for _ in 0..<count {
            body(a, b)
            a += lda
            b += ldb
        }
    }
}

/// C[i][j] (+)= Σ_t A[t][i] · B[t][j] for i < rows, j < columns (A is count × rows with row
/// stride lda, B count × columns with row stride ldb): the Winograd weight gradient, and AᵀB
/// products with a short inner dimension (a dense layer's weight gradient).
public func transposedProduct(count: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                              b: UnsafePointer<Float>, ldb: Int, columns: Int,
                              c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    sumOuterProducts(rows: rows, columns: columns, into: c, ldc: ldc, accumulate: accumulate) { i, j in
        MatrixRows(a: a + i, lda: lda, b: b + j, ldb: ldb, count: count)
    }
}

/// Output pixels read in place from a zero-padded image: `rows` output rows of `columns` pixels,
/// `pixelStep` floats apart within a row and `rowStep` from row to row, each with its output
/// gradients (`ldb` floats apart, pixel after pixel).
struct PaddedImagePixels: OuterProductTerms {
    let a: UnsafePointer<Float>, pixelStep: Int, rowStep: Int, b: UnsafePointer<Float>, ldb: Int, rows: Int, columns: Int
    @inline(__always) func forEach(_ body: (_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Void) {
        var row = a, b = self.b
        for _ in 0..<rows {
            var a = row
            for _ in 0..<columns {
                body(a, b)
                a += pixelStep
                b += ldb
            }
            row += rowStep
        }
    }
}

/// A convolution's weight gradient straight from a zero-padded image, with no patch rows
/// written: C[t][j] (+)= Σ_p patch_p[t] · B[p][j] over the output pixels p of `pixels`, where
/// a kernel row's taps are `run` contiguous floats of the image and kernel row ky starts
/// `ky · kernelRowStep` floats after kernel row 0 (C's rows [ky][kx][ci], like the weights).
/// With `bias`, also bias[j] (+)= Σ_p B[p][j], the sum a patch row's constant 1 would give.
/// Every sum runs over the pixels in order, as over patch rows.
public func paddedImageProduct(pixels: (a: UnsafePointer<Float>, pixelStep: Int, rowStep: Int, rows: Int, columns: Int),
                               kernelRows: Int, kernelRowStep: Int, run: Int,
                               b: UnsafePointer<Float>, ldb: Int, columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                               bias: UnsafeMutablePointer<Float>?, accumulate: Bool) {
    for ky in 0..<kernelRows {
        sumOuterProducts(rows: run, columns: columns, into: c + ky * run * ldc, ldc: ldc, accumulate: accumulate) { i, j in
            PaddedImagePixels(a: pixels.a + ky * kernelRowStep + i, pixelStep: pixels.pixelStep, rowStep: pixels.rowStep,
                              b: b + j, ldb: ldb, rows: pixels.rows, columns: pixels.columns)
        }
    }
    guard let bias else { return }
    withUnsafePointer(to: Float(1)) { one in
        transposedProduct(count: pixels.rows * pixels.columns, a: one, lda: 0, rows: 1, b: b, ldb: ldb, columns: columns,
                          c: bias, ldc: columns, accumulate: accumulate)
    }
}

/// C (row stride ldc) = or += Σ a ⊗ b, tile by tile; `terms(i, j)` gives the pairs of the tile
/// at row i, column j.
@inline(__always)
func sumOuterProducts<Terms: OuterProductTerms>(rows: Int, columns: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                                                accumulate: Bool, _ terms: (_ row: Int, _ column: Int) -> Terms) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: sliverWidth) { scratch in
        for i in stride(from: 0, to: rows, by: weightGradientRows) {
            for j in stride(from: 0, to: columns, by: sliverWidth) {
                let height = min(weightGradientRows, rows - i), width = min(sliverWidth, columns - j)
                if height == weightGradientRows && width == sliverWidth {
                    let tile = c + i * ldc + j
                    if weightGradientRows == 8 {
                        outerProductTile8(terms(i, j), into: tile, ldc: ldc, accumulate: accumulate)
                    } else {
                        outerProductTile6(terms(i, j), into: tile, ldc: ldc, accumulate: accumulate)
                    }
                    continue
                }
                if width == sliverWidth && height < 6 {
                    outerProductShortTile(terms(i, j), rows: height, into: c + i * ldc + j, ldc: ldc, accumulate: accumulate)
                    continue
                }
                for r in stride(from: i, to: i + height, by: 6) {
                    outerProductEdgeTile(terms(r, j), rows: min(6, i + height - r), columns: width, into: c + r * ldc + j,
                                         ldc: ldc, accumulate: accumulate, padded: scratch.baseAddress!)
                }
            }
        }
    }
}

/// A tile of at most 6 rows × at most a sliver, at the edges of C.
private func outerProductEdgeTile<Terms: OuterProductTerms>(_ terms: Terms, rows: Int, columns: Int,
                                                            into out: UnsafeMutablePointer<Float>, ldc: Int,
                                                            accumulate: Bool, padded: UnsafeMutablePointer<Float>) {
    var acc = accumulate ? Accumulators(from: out, ldc: ldc, rows: rows, columns: columns) : Accumulators()
    let fullColumns = columns == sliverWidth
    terms.forEach { a, b in
        // Missing rows read as zero; a narrow last sliver is copied so no load reads past B.
        var bp = b
        if !fullColumns {
            for q in 0..<sliverWidth { padded[q] = q < columns ? b[q] : 0 }
            bp = UnsafePointer(padded)
        }
        acc.add(a[0], rows > 1 ? a[1] : 0, rows > 2 ? a[2] : 0, rows > 3 ? a[3] : 0, rows > 4 ? a[4] : 0,
                rows > 5 ? a[5] : 0, bp)
    }
    acc.write(to: out, ldc: ldc, rows: rows, columns: columns)
}

/// A tile of 1–5 rows × a whole sliver (the last 2 rows of 32 input channels in 6-row tiles,
/// the last 4 of 64), with only its rows' accumulators: the edge tile's zero rows made 2 rows
/// cost as much as 6. One case per row count, so each loop keeps its accumulators in registers.
@inline(never)
private func outerProductShortTile<Terms: OuterProductTerms>(_ terms: Terms, rows: Int, into out: UnsafeMutablePointer<Float>,
                                                             ldc: Int, accumulate: Bool) {
    switch rows {
    case 1: shortTile(terms, rows: 1, into: out, ldc: ldc, accumulate: accumulate)
    case 2: shortTile(terms, rows: 2, into: out, ldc: ldc, accumulate: accumulate)
    case 3: shortTile(terms, rows: 3, into: out, ldc: ldc, accumulate: accumulate)
    case 4: shortTile(terms, rows: 4, into: out, ldc: ldc, accumulate: accumulate)
    default: shortTile(terms, rows: 5, into: out, ldc: ldc, accumulate: accumulate)
    }
}

/// `outerProductShortTile` for a constant row count: rows past it fold away.
@inline(__always)
private func shortTile<Terms: OuterProductTerms>(_ terms: Terms, rows: Int, into out: UnsafeMutablePointer<Float>, ldc: Int,
                                                 accumulate: Bool) {
    var l0 = SIMD16<Float>(), l1 = SIMD16<Float>(), l2 = SIMD16<Float>(), l3 = SIMD16<Float>(), l4 = SIMD16<Float>()
    var h0 = SIMD16<Float>(), h1 = SIMD16<Float>(), h2 = SIMD16<Float>(), h3 = SIMD16<Float>(), h4 = SIMD16<Float>()
    @inline(__always) func loadRow(_ r: Int, _ l: inout SIMD16<Float>, _ h: inout SIMD16<Float>) {
        guard accumulate && r < rows else { return }
        l = load(out + r * ldc)
        if vectorsPerRow == 2 { h = load(out + r * ldc + 16) }
    }
    @inline(__always) func addRow(_ r: Int, _ a: UnsafePointer<Float>, _ b0: SIMD16<Float>, _ b1: SIMD16<Float>,
                               _ l: inout SIMD16<Float>, _ h: inout SIMD16<Float>) {
        guard r < rows else { return }
        let s = SIMD16(repeating: a[r])
        l = l.addingProduct(s, b0)
        if vectorsPerRow == 2 { h = h.addingProduct(s, b1) }
    }
    @inline(__always) func storeRow(_ r: Int, _ l: SIMD16<Float>, _ h: SIMD16<Float>) {
        guard r < rows else { return }
        store(out + r * ldc, l)
        if vectorsPerRow == 2 { store(out + r * ldc + 16, h) }
    }
    loadRow(0, &l0, &h0); loadRow(1, &l1, &h1); loadRow(2, &l2, &h2); loadRow(3, &l3, &h3); loadRow(4, &l4, &h4)
    terms.forEach { a, b in
        let b0 = load(b), b1 = vectorsPerRow == 2 ? load(b + 16) : SIMD16()
        addRow(0, a, b0, b1, &l0, &h0); addRow(1, a, b0, b1, &l1, &h1); addRow(2, a, b0, b1, &l2, &h2)
        addRow(3, a, b0, b1, &l3, &h3); addRow(4, a, b0, b1, &l4, &h4)
    }
    storeRow(0, l0, h0); storeRow(1, l1, h1); storeRow(2, l2, h2); storeRow(3, l3, h3); storeRow(4, l4, h4)
}

/// The common AVX2 tile (6 rows × a whole sliver) in a function of its own: with only this
/// loop nest in view LLVM keeps all 12 accumulators in registers, which it did not when the
/// edge-handling loop shared the function.
@inline(never)
private func outerProductTile6<Terms: OuterProductTerms>(_ terms: Terms, into out: UnsafeMutablePointer<Float>, ldc: Int,
                                                         accumulate: Bool) {
    var acc = accumulate ? Accumulators(from: out, ldc: ldc, rows: 6, columns: sliverWidth) : Accumulators()
    var l0 = acc.l0, l1 = acc.l1, l2 = acc.l2, l3 = acc.l3, l4 = acc.l4, l5 = acc.l5
    var h0 = acc.h0, h1 = acc.h1, h2 = acc.h2, h3 = acc.h3, h4 = acc.h4, h5 = acc.h5
    terms.forEach { a, b in
        let b0 = load(b)
        l0 = l0.addingProduct(SIMD16(repeating: a[0]), b0); l1 = l1.addingProduct(SIMD16(repeating: a[1]), b0)
        l2 = l2.addingProduct(SIMD16(repeating: a[2]), b0); l3 = l3.addingProduct(SIMD16(repeating: a[3]), b0)
        l4 = l4.addingProduct(SIMD16(repeating: a[4]), b0); l5 = l5.addingProduct(SIMD16(repeating: a[5]), b0)
        if vectorsPerRow == 2 {
            let b1 = load(b + 16)
            h0 = h0.addingProduct(SIMD16(repeating: a[0]), b1); h1 = h1.addingProduct(SIMD16(repeating: a[1]), b1)
            h2 = h2.addingProduct(SIMD16(repeating: a[2]), b1); h3 = h3.addingProduct(SIMD16(repeating: a[3]), b1)
            h4 = h4.addingProduct(SIMD16(repeating: a[4]), b1); h5 = h5.addingProduct(SIMD16(repeating: a[5]), b1)
        }
    }
    (acc.l0, acc.l1, acc.l2, acc.l3, acc.l4, acc.l5) = (l0, l1, l2, l3, l4, l5)
    (acc.h0, acc.h1, acc.h2, acc.h3, acc.h4, acc.h5) = (h0, h1, h2, h3, h4, h5)
    acc.write(to: out, ldc: ldc, rows: 6, columns: sliverWidth)
}

/// With AVX-512's 32 registers: 8 rows × 32 columns (16 zmm accumulators), which also divides
/// the common channel counts (32, 64) with no edge tile.
@inline(never)
private func outerProductTile8<Terms: OuterProductTerms>(_ terms: Terms, into out: UnsafeMutablePointer<Float>, ldc: Int,
                                                         accumulate: Bool) {
    var l0 = SIMD16<Float>(), l1 = SIMD16<Float>(), l2 = SIMD16<Float>(), l3 = SIMD16<Float>()
    var l4 = SIMD16<Float>(), l5 = SIMD16<Float>(), l6 = SIMD16<Float>(), l7 = SIMD16<Float>()
    var h0 = SIMD16<Float>(), h1 = SIMD16<Float>(), h2 = SIMD16<Float>(), h3 = SIMD16<Float>()
    var h4 = SIMD16<Float>(), h5 = SIMD16<Float>(), h6 = SIMD16<Float>(), h7 = SIMD16<Float>()
    if accumulate {
        (l0, h0, l1, h1) = (load(out), load(out + 16), load(out + ldc), load(out + ldc + 16))
        (l2, h2, l3, h3) = (load(out + 2 * ldc), load(out + 2 * ldc + 16), load(out + 3 * ldc), load(out + 3 * ldc + 16))
        (l4, h4, l5, h5) = (load(out + 4 * ldc), load(out + 4 * ldc + 16), load(out + 5 * ldc), load(out + 5 * ldc + 16))
        (l6, h6, l7, h7) = (load(out + 6 * ldc), load(out + 6 * ldc + 16), load(out + 7 * ldc), load(out + 7 * ldc + 16))
    }
    terms.forEach { a, b in
        let b0 = load(b), b1 = load(b + 16)
        var s = SIMD16(repeating: a[0]); l0 = l0.addingProduct(s, b0); h0 = h0.addingProduct(s, b1)
        s = SIMD16(repeating: a[1]); l1 = l1.addingProduct(s, b0); h1 = h1.addingProduct(s, b1)
        s = SIMD16(repeating: a[2]); l2 = l2.addingProduct(s, b0); h2 = h2.addingProduct(s, b1)
        s = SIMD16(repeating: a[3]); l3 = l3.addingProduct(s, b0); h3 = h3.addingProduct(s, b1)
        s = SIMD16(repeating: a[4]); l4 = l4.addingProduct(s, b0); h4 = h4.addingProduct(s, b1)
        s = SIMD16(repeating: a[5]); l5 = l5.addingProduct(s, b0); h5 = h5.addingProduct(s, b1)
        s = SIMD16(repeating: a[6]); l6 = l6.addingProduct(s, b0); h6 = h6.addingProduct(s, b1)
        s = SIMD16(repeating: a[7]); l7 = l7.addingProduct(s, b0); h7 = h7.addingProduct(s, b1)
    }
    store(out, l0); store(out + 16, h0); store(out + ldc, l1); store(out + ldc + 16, h1)
    store(out + 2 * ldc, l2); store(out + 2 * ldc + 16, h2); store(out + 3 * ldc, l3); store(out + 3 * ldc + 16, h3)
    store(out + 4 * ldc, l4); store(out + 4 * ldc + 16, h4); store(out + 5 * ldc, l5); store(out + 5 * ldc + 16, h5)
    store(out + 6 * ldc, l6); store(out + 6 * ldc + 16, h6); store(out + 7 * ldc, l7); store(out + 7 * ldc + 16, h7)
}
