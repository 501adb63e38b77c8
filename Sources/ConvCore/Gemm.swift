/// Single-precision matrix multiply, C = op(A)·op(B) (+ C), Goto/BLIS style:
/// op(A) is packed into 6-row slivers, op(B) into 16-column slivers, and a 6x16
/// register tile (12 ymm accumulators) does the arithmetic.
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

/// Per-worker packing buffers, allocated once and reused by every multiply.
public final class GemmScratch: @unchecked Sendable {
    static let kc = 256, mcMax = 96, ncMax = 128
    let packedA: [UnsafeMutablePointer<Float>]
    let packedB: [UnsafeMutablePointer<Float>]

    public init(workers: Int) {
        packedA = (0..<workers).map { _ in .allocate(capacity: GemmScratch.mcMax * GemmScratch.kc) }
        packedB = (0..<workers).map { _ in .allocate(capacity: GemmScratch.ncMax * GemmScratch.kc) }
    }
    deinit {
        packedA.forEach { $0.deallocate() }
        packedB.forEach { $0.deallocate() }
    }
}

private let mr = 6, nr = 16

/// C[M×N] (ldc) = op(A)·op(B), or += when `accumulate`.
public func gemm(m: Int, n: Int, k: Int, a: GemmOperand, b: GemmOperand,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                 scratch: GemmScratch, pool: WorkerPool) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    // Blocks shrink for small matrices so that even a 27x32 product yields several tasks.
    let mc = min(GemmScratch.mcMax, max(mr, roundUp((m + 3) / 4, mr)))
    let nc = min(GemmScratch.ncMax, max(nr, roundUp((n + 1) / 2, nr)))
    let mBlocks = (m + mc - 1) / mc, nBlocks = (n + nc - 1) / nc
    pool.run(tasks: mBlocks * nBlocks) { task, worker in
        let i0 = (task / nBlocks) * mc, j0 = (task % nBlocks) * nc
        gemmBlock(i0: i0, rows: min(mc, m - i0), j0: j0, cols: min(nc, n - j0), k: k,
                  a: a, b: b, c: c, ldc: ldc, accumulate: accumulate,
                  packA: scratch.packedA[worker], packB: scratch.packedB[worker])
    }
}

@inline(__always) private func roundUp(_ x: Int, _ q: Int) -> Int { (x + q - 1) / q * q }

private func gemmBlock(i0: Int, rows: Int, j0: Int, cols: Int, k: Int,
                       a: GemmOperand, b: GemmOperand,
                       c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                       packA: UnsafeMutablePointer<Float>, packB: UnsafeMutablePointer<Float>) {
    let kcMax = GemmScratch.kc
    var p0 = 0
    while p0 < k {
        let kc = min(kcMax, k - p0)
        packB16(b, p0: p0, kc: kc, j0: j0, cols: cols, into: packB)
        packA6(a, i0: i0, rows: rows, p0: p0, kc: kc, into: packA)
        let add = accumulate || p0 > 0
        var ib = 0
        while ib < rows {
            let r = min(mr, rows - ib)
            var jb = 0
            while jb < cols {
                let w = min(nr, cols - jb)
                let ap = UnsafePointer(packA + ib * kc)
                let bp = UnsafePointer(packB + jb * kc)
                let cp = c + (i0 + ib) * ldc + (j0 + jb)
                if r == mr && w == nr {
                    kernel6x16(kc, ap, bp, cp, ldc, add)
                } else {
                    kernelEdge(kc, ap, bp, cp, ldc, add, r, w)
                }
                jb += nr
            }
            ib += mr
        }
        p0 += kc
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

/// Packs rows p0..<p0+kc, columns j0..<j0+cols of op(B) as 16-column slivers [p][16], zero-padded.
@inline(__always)
private func packB16(_ b: GemmOperand, p0: Int, kc: Int, j0: Int, cols: Int,
                     into dst: UnsafeMutablePointer<Float>) {
    var s = 0
    while s < cols {
        let w = min(nr, cols - s)
        let out = dst + s * kc
        if b.transposed {
            for q in 0..<nr {
                if q < w {
                    let src = b.base + (j0 + s + q) * b.stride + p0
                    for p in 0..<kc { out[p * nr + q] = src[p] }
                } else {
                    for p in 0..<kc { out[p * nr + q] = 0 }
                }
            }
        } else if w == nr {
            for p in 0..<kc {
                let src = b.base + (p0 + p) * b.stride + j0 + s
                storeVector(out + p * nr, loadVector(src))
            }
        } else {
            for p in 0..<kc {
                let src = b.base + (p0 + p) * b.stride + j0 + s
                let o = out + p * nr
                for q in 0..<w { o[q] = src[q] }
                for q in w..<nr { o[q] = 0 }
            }
        }
        s += nr
    }
}

@inline(__always) func loadVector(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
@inline(__always) func loadVector(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
@inline(__always) func storeVector(_ p: UnsafeMutablePointer<Float>, _ v: SIMD16<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// The 6x16 register tile: 6 rows × 2 ymm of accumulators, one broadcast per row per k.
@inline(__always)
private func kernel6x16(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool) {
    var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>()
    var c3 = SIMD16<Float>(), c4 = SIMD16<Float>(), c5 = SIMD16<Float>()
    var ap = a, bp = b
    for _ in 0..<kc {
        let bv = loadVector(bp)
        c0 = c0.addingProduct(SIMD16(repeating: ap[0]), bv)
        c1 = c1.addingProduct(SIMD16(repeating: ap[1]), bv)
        c2 = c2.addingProduct(SIMD16(repeating: ap[2]), bv)
        c3 = c3.addingProduct(SIMD16(repeating: ap[3]), bv)
        c4 = c4.addingProduct(SIMD16(repeating: ap[4]), bv)
        c5 = c5.addingProduct(SIMD16(repeating: ap[5]), bv)
        ap += mr; bp += nr
    }
    if accumulate {
        storeVector(c, loadVector(c) + c0)
        storeVector(c + ldc, loadVector(c + ldc) + c1)
        storeVector(c + 2 * ldc, loadVector(c + 2 * ldc) + c2)
        storeVector(c + 3 * ldc, loadVector(c + 3 * ldc) + c3)
        storeVector(c + 4 * ldc, loadVector(c + 4 * ldc) + c4)
        storeVector(c + 5 * ldc, loadVector(c + 5 * ldc) + c5)
    } else {
        storeVector(c, c0); storeVector(c + ldc, c1); storeVector(c + 2 * ldc, c2)
        storeVector(c + 3 * ldc, c3); storeVector(c + 4 * ldc, c4); storeVector(c + 5 * ldc, c5)
    }
}

/// A partial tile: the same arithmetic into a stack tile, then only the valid r×w part is stored.
@inline(never)
private func kernelEdge(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool,
                        _ r: Int, _ w: Int) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { tile in
        let t = tile.baseAddress!
        kernel6x16(kc, a, b, t, nr, false)
        for i in 0..<r {
            let dst = c + i * ldc, src = t + i * nr
            if accumulate {
                for j in 0..<w { dst[j] += src[j] }
            } else {
                for j in 0..<w { dst[j] = src[j] }
            }
        }
    }
}

/// The GEMM's micro-kernel (dense layers, strided input gradients), for reports.
public let gemmKernelDescription = "GEMM 6x16 AVX2+FMA tile"
