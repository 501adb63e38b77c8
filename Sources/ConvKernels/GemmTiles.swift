/// The GEMM micro-kernel, compiled into both kernel modules like ConvTiles.swift: a tile is
/// 6 rows × `sliverWidth` columns of C (12 ymm or 12 zmm accumulators), fed by a 6-row A sliver
/// packed [p][6] and a B sliver packed [p][sliverWidth], both zero-padded.

/// C rows 0..<rows (row stride `ldc`) and columns 0..<columns of a block of `slivers` B slivers
/// (`columns` counts all of them) = A block · B slivers, or += C when `accumulate`. The A block
/// holds ⌈rows/6⌉ slivers of kc floats × 6; each B sliver kc × sliverWidth. B slivers are the
/// outer loop, so each stays in L1 while every A sliver passes over it.
public func gemmBlock(kc: Int, packedA a: UnsafePointer<Float>, rows: Int,
                      packedB b: UnsafePointer<Float>, columns: Int,
                      c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    var j = 0
    while j < columns {
        let width = min(sliverWidth, columns - j)
        let bSliver = b + (j / sliverWidth) * kc * sliverWidth
        var i = 0
        while i < rows {
            gemmTile(kc: kc, a: a + (i / 6) * kc * 6, b: bSliver, c: c + i * ldc + j, ldc: ldc,
                     rows: min(6, rows - i), columns: width, accumulate: accumulate)
            i += 6
        }
        j += sliverWidth
    }
}

@inline(__always)
private func gemmTile(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                      c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, accumulate: Bool) {
    var acc = accumulate ? Accumulators(from: c, ldc: ldc, rows: rows, columns: columns) : Accumulators()
    var ap = a, bp = b
    for _ in 0..<kc {
        acc.add(ap[0], ap[1], ap[2], ap[3], ap[4], ap[5], bp)
        ap += 6
        bp += sliverWidth
    }
    acc.write(to: c, ldc: ldc, rows: rows, columns: columns)
}

/// The same product, overwriting C, with A not packed: row i of A is kc contiguous floats at
/// a + i·lda, and each tile broadcasts from its 6 rows directly (as the direct convolution
/// does from its 6 pixels). For A that is produced on the fly, such as Winograd-transformed
/// inputs, this saves the strided packing pass.
public func gemmBlock(kc: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                      packedB b: UnsafePointer<Float>, columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    multiplyRows(kc: kc, a: a, lda: lda, rows: rows, columns: columns, c: c, ldc: ldc, accumulate: false, ldb: sliverWidth) {
        b + ($0 / sliverWidth) * kc * sliverWidth
    }
}

/// C (+)= A·B with neither packed: A's rows at a + i·lda, B's rows (kc of them) at b + p·ldb.
/// `columns` must be a multiple of `sliverWidth`: B's rows are read a whole sliver at a time.
/// For a small A (a dense layer's batch) packing B would cost more than it saves.
public func gemmBlock(kc: Int, a: UnsafePointer<Float>, lda: Int, rows: Int, b: UnsafePointer<Float>, ldb: Int,
                      columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    precondition(columns % sliverWidth == 0, "unpacked B needs whole slivers")
    multiplyRows(kc: kc, a: a, lda: lda, rows: rows, columns: columns, c: c, ldc: ldc, accumulate: accumulate, ldb: ldb) { b + $0 }
}

/// Tiles of 6 rows of A (read in place) × one sliver of B, whose rows are `ldb` apart starting at `sliver(j)`.
@inline(__always)
private func multiplyRows(kc: Int, a: UnsafePointer<Float>, lda: Int, rows: Int, columns: Int,
                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, ldb: Int,
                          sliver: (_ column: Int) -> UnsafePointer<Float>) {
    var j = 0
    while j < columns {
        let width = min(sliverWidth, columns - j)
        let bSliver = sliver(j)
        var i = 0
        while i < rows {
            let valid = min(6, rows - i)
            // Rows past the end read row i again; their results are not stored.
            let a0 = a + i * lda
            let a1 = valid > 1 ? a0 + lda : a0, a2 = valid > 2 ? a0 + 2 * lda : a0
            let a3 = valid > 3 ? a0 + 3 * lda : a0, a4 = valid > 4 ? a0 + 4 * lda : a0
            let a5 = valid > 5 ? a0 + 5 * lda : a0
            let out = c + i * ldc + j
            var acc = accumulate ? Accumulators(from: out, ldc: ldc, rows: valid, columns: width) : Accumulators()
            var bp = bSliver
            for p in 0..<kc {
                acc.add(a0[p], a1[p], a2[p], a3[p], a4[p], a5[p], bp)
                bp += ldb
            }
            acc.write(to: out, ldc: ldc, rows: valid, columns: width)
            i += 6
        }
        j += sliverWidth
    }
}
