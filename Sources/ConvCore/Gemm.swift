import ConvKernels
import ConvKernelsAVX512

/// Single-precision matrix multiply, C = op(A)·op(B) (+ C), Goto/BLIS style: op(B) is packed
/// once into column slivers as wide as the kernel set's tile (16 for AVX2, 32 for AVX-512),
/// each task packs its block of op(A) into 6-row slivers, and the register tile of
/// ConvKernels/GemmTiles.swift does the arithmetic.
///
/// Matrices are row-major. `op(A)` is M×K: element (i, p) is `a[i*lda + p]`, or
/// `a[p*lda + i]` when `transA`. `op(B)` is K×N: `b[p*ldb + j]`, or `b[j*ldb + p]` when `transB`.
///
/// The work is split into (row block × column block) tasks chosen from the shape alone;
/// each C element is produced by one task, summing over K in a fixed order, so the
/// result does not depend on the number of threads.

public struct GemmOperand {
    public let base: UnsafePointer<Float>
    public let stride: Int
    public let transposed: Bool
    public init(_ base: UnsafePointer<Float>, stride: Int, transposed: Bool = false) {
        self.base = base; self.stride = stride; self.transposed = transposed
    }
}

/// Packing buffers, allocated once and reused by every multiply: per worker an A block, and
/// one buffer for all of op(B), packed once per multiply and shared by every task.
public final class GemmScratch: @unchecked Sendable {
    static let kc = 256, mcMax = 72
    /// Which compiled micro-kernel multiplies (its sliver width is the packed B's).
    public let kernels: ConvKernelSet
    let packedA: [UnsafeMutablePointer<Float>]
    private let packedBBuffer = ScratchBuffer<Float>()
    var packedB: UnsafeMutablePointer<Float> { packedBBuffer.pointer }

    public init(workers: Int, kernels: ConvKernelSet = .best) {
        self.kernels = kernels
        packedA = (0..<workers).map { _ in allocateAligned(Float.self, capacity: GemmScratch.mcMax * GemmScratch.kc) }
    }

    /// Grows the shared buffer to hold a packed K×N op(B). Networks call it while they are built,
    /// so that no multiply inside a training step allocates.
    public func reserve(k: Int, n: Int) { packedBBuffer.reserve(k * roundUp(n, kernels.sliverWidth)) }

    deinit { packedA.forEach { $0.deallocate() } }
}

private let mr = 6

/// C[M×N] (ldc) = op(A)·op(B), or += when `accumulate`.
public func gemm(m: Int, n: Int, k: Int, a: GemmOperand, b: GemmOperand,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                 scratch: GemmScratch, pool: WorkerPool) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    let kernels = scratch.kernels
    if !a.transposed && !b.transposed && m <= 96 && n % kernels.sliverWidth == 0 {
        multiplyUnpacked(m: m, n: n, k: k, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate, kernels: kernels, pool: pool)
        return
    }
    if a.transposed && !b.transposed && k <= 128 {
        multiplyTransposedA(m: m, n: n, k: k, a: a, b: b, c: c, ldc: ldc, accumulate: accumulate, kernels: kernels, pool: pool)
        return
    }
    packB(k: k, n: n, b, scratch: scratch, pool: pool)
    gemmWithPackedB(m: m, n: n, k: k, a: a, c: c, ldc: ldc, accumulate: accumulate, scratch: scratch, pool: pool)
}

/// Packs op(B) (K×N) into `scratch`, for `gemmWithPackedB`: chunk p0..<p0+kc is at
/// packedB + p0·nPadded, sliver by sliver [sliver][p][nr]. Products that share a B pack it once.
func packB(k: Int, n: Int, _ b: GemmOperand, scratch: GemmScratch, pool: WorkerPool) {
    scratch.reserve(k: k, n: n)  // before taking the pointer: growing moves the buffer
    let nr = scratch.kernels.sliverWidth, nPadded = roundUp(n, nr), packedB = scratch.packedB
    pool.run(tasks: nPadded / nr) { sliver, _ in
        var p0 = 0
        while p0 < k {
            let kc = min(GemmScratch.kc, k - p0)
            packBSliver(b, p0: p0, kc: kc, j0: sliver * nr, columns: min(nr, n - sliver * nr), width: nr,
                        into: packedB + p0 * nPadded + sliver * kc * nr)
            p0 += kc
        }
    }
}

/// C[M×N] (ldc) = op(A)·B, or += when `accumulate`, with B as `packB` left it in `scratch`.
func gemmWithPackedB(m: Int, n: Int, k: Int, a: GemmOperand, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                     scratch: GemmScratch, pool: WorkerPool) {
    let kernels = scratch.kernels, nr = kernels.sliverWidth, kcMax = GemmScratch.kc
    let nPadded = roundUp(n, nr), slivers = nPadded / nr, packedB = scratch.packedB
    // Row blocks of at most mcMax rows (an even count where there are several, so two workers
    // share them evenly) × column blocks, at least 4 tasks where the shape allows.
    var rowBlocks = max(4, (m + GemmScratch.mcMax - 1) / GemmScratch.mcMax)
    rowBlocks = min(rowBlocks + rowBlocks % 2, (m + mr - 1) / mr)
    let mc = roundUp((m + rowBlocks - 1) / rowBlocks, mr)
    rowBlocks = (m + mc - 1) / mc
    let sliversPerBlock = (slivers + max(1, 4 / rowBlocks) - 1) / max(1, 4 / rowBlocks)
    let columnBlocks = (slivers + sliversPerBlock - 1) / sliversPerBlock
    pool.run(tasks: rowBlocks * columnBlocks) { task, worker in
        let i0 = (task / columnBlocks) * mc, rows = min(mc, m - i0)
        let s0 = (task % columnBlocks) * sliversPerBlock
        let j0 = s0 * nr, columns = min(n, (s0 + sliversPerBlock) * nr) - j0
        let packA = scratch.packedA[worker]
        var p0 = 0
        while p0 < k {
            let kc = min(kcMax, k - p0)
            packA6(a, i0: i0, rows: rows, p0: p0, kc: kc, into: packA)
            let bp = UnsafePointer(packedB + p0 * nPadded + s0 * kc * nr)
            let add = accumulate || p0 > 0
            switch kernels {
            case .avx2:
                ConvKernels.gemmBlock(kc: kc, packedA: packA, rows: rows, packedB: bp, columns: columns,
                                      c: c + i0 * ldc + j0, ldc: ldc, accumulate: add)
            case .avx512:
                ConvKernelsAVX512.gemmBlock(kc: kc, packedA: packA, rows: rows, packedB: bp, columns: columns,
                                            c: c + i0 * ldc + j0, ldc: ldc, accumulate: add)
            }
            p0 += kc
        }
    }
}

@inline(__always) private func roundUp(_ x: Int, _ q: Int) -> Int { (x + q - 1) / q * q }

/// A·B for a few rows of A (a dense layer's batch): the tiles read A and B in place, one task
/// per sliver of columns, so B is read once and never packed.
private func multiplyUnpacked(m: Int, n: Int, k: Int, a: GemmOperand, b: GemmOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
                              accumulate: Bool, kernels: ConvKernelSet, pool: WorkerPool) {
    let nr = kernels.sliverWidth
    pool.run(tasks: n / nr) { sliver, _ in
        let j = sliver * nr
        multiplyInPlace(kernels, k: k, a: a.base, lda: a.stride, rows: m, b: b.base + j, ldb: b.stride, columns: nr,
                        c: c + j, ldc: ldc, accumulate: accumulate)
    }
}

/// C (+)= A·B on one thread with A (`rows` rows) and B (`columns`, whole slivers) read in place,
/// `GemmScratch.kc` rows of B at a time, which stay in L1 while every row tile of A passes over
/// them (the accumulators are stored and reloaded between chunks, which leaves every sum's
/// order as it was).
func multiplyInPlace(_ kernels: ConvKernelSet, k: Int, a: UnsafePointer<Float>, lda: Int, rows: Int, b: UnsafePointer<Float>, ldb: Int,
                     columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    var p0 = 0
    while p0 < k {
        let kc = min(GemmScratch.kc, k - p0), add = accumulate || p0 > 0
        switch kernels {
        case .avx2:
            ConvKernels.gemmBlock(kc: kc, a: a + p0, lda: lda, rows: rows, b: b + p0 * ldb, ldb: ldb, columns: columns,
                                  c: c, ldc: ldc, accumulate: add)
        case .avx512:
            ConvKernelsAVX512.gemmBlock(kc: kc, a: a + p0, lda: lda, rows: rows, b: b + p0 * ldb, ldb: ldb, columns: columns,
                                        c: c, ldc: ldc, accumulate: add)
        }
        p0 += kc
    }
}

/// Aᵀ·B with a short inner dimension (a dense layer's weight gradient, summed over the batch):
/// a sum of k outer products, computed tile by tile with A and B read in place. One task per
/// block of 48 rows.
private func multiplyTransposedA(m: Int, n: Int, k: Int, a: GemmOperand, b: GemmOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
                                 accumulate: Bool, kernels: ConvKernelSet, pool: WorkerPool) {
    let rowsPerTask = 48
    pool.run(tasks: (m + rowsPerTask - 1) / rowsPerTask) { task, _ in
        let i = task * rowsPerTask, rows = min(rowsPerTask, m - i)
        switch kernels {
        case .avx2:
            ConvKernels.transposedProduct(count: k, a: a.base + i, lda: a.stride, rows: rows, b: b.base, ldb: b.stride, columns: n,
                                          c: c + i * ldc, ldc: ldc, accumulate: accumulate)
        case .avx512:
            ConvKernelsAVX512.transposedProduct(count: k, a: a.base + i, lda: a.stride, rows: rows, b: b.base, ldb: b.stride, columns: n,
                                                c: c + i * ldc, ldc: ldc, accumulate: accumulate)
        }
    }
}

/// Packs rows i0..<i0+rows, columns p0..<p0+kc of op(A) as 6-row slivers [p][6], zero-padded.
@inline(__always)
private func packA6(_ a: GemmOperand, i0: Int, rows: Int, p0: Int, kc: Int,
                   into dst: UnsafeMutablePointer<Float>) {
    var s = 0
    while s < rows {
        let r = min(mr, rows - s)
        let out = dst + s * kc
        if a.transposed {
            for p in 0..<kc {
                let src = a.base + (p0 + p) * a.stride + i0 + s
                let o = out + p * mr
                for q in 0..<r { o[q] = src[q] }
                for q in r..<mr { o[q] = 0 }
            }
        } else {
            for q in 0..<mr {
                if q < r {
                    let src = a.base + (i0 + s + q) * a.stride + p0
                    for p in 0..<kc { out[p * mr + q] = src[p] }
                } else {
                    for p in 0..<kc { out[p * mr + q] = 0 }
                }
            }
        }
        s += mr
    }
}

/// Packs rows p0..<p0+kc, columns j0..<j0+columns of op(B) as one sliver [p][width], zero-padded.
@inline(__always)
private func packBSliver(_ b: GemmOperand, p0: Int, kc: Int, j0: Int, columns: Int, width: Int,
                         into out: UnsafeMutablePointer<Float>) {
    if b.transposed {
        // Blocks of 8 columns × 8 rows go through registers, 8 contiguous floats in and out, instead
        // of one float at a time to a store `width` floats from the last.
        var q = 0
        while q + 8 <= columns {
            let src = b.base + (j0 + q) * b.stride + p0
            var p = 0
            while p + 8 <= kc {
                transpose8x8(src + p, stride: b.stride, into: out + p * width + q, stride: width)
                p += 8
            }
            while p < kc {
                for l in 0..<8 { out[p * width + q + l] = src[l * b.stride + p] }
                p += 1
            }
            q += 8
        }
        while q < width {
            if q < columns {
                let src = b.base + (j0 + q) * b.stride + p0
                for p in 0..<kc { out[p * width + q] = src[p] }
            } else {
                for p in 0..<kc { out[p * width + q] = 0 }
            }
            q += 1
        }
    } else {
        for p in 0..<kc {
            let o = out + p * width
            o.update(from: b.base + (p0 + p) * b.stride + j0, count: columns)
            if columns < width { (o + columns).update(repeating: 0, count: width - columns) }
        }
    }
}

/// out[c·outStride + r] = src[r·stride + c] for an 8×8 block.
@inline(__always) private func transpose8x8(_ src: UnsafePointer<Float>, stride: Int, into out: UnsafeMutablePointer<Float>, stride outStride: Int) {
    let r0 = load8(src), r1 = load8(src + stride), r2 = load8(src + 2 * stride), r3 = load8(src + 3 * stride)
    let r4 = load8(src + 4 * stride), r5 = load8(src + 5 * stride), r6 = load8(src + 6 * stride), r7 = load8(src + 7 * stride)
    for c in 0..<8 {
        UnsafeMutableRawPointer(out + c * outStride).storeBytes(
            of: SIMD8<Float>(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c], r6[c], r7[c]), as: SIMD8<Float>.self)
    }
}

@inline(__always) private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

extension ConvKernelSet {
    /// The GEMM's micro-kernel (dense layers, strided input gradients), for reports.
    public var gemmDescription: String {
        switch self {
        case .avx2: return "GEMM 6x16 AVX2+FMA tile"
        case .avx512: return "GEMM 6x32 AVX-512 tile"
        }
    }
}
