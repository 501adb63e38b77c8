import ConvCore
import Testing

@Suite struct GemmTests {
    func naiveGemm(m: Int, n: Int, k: Int, a: [Float], lda: Int, transA: Bool,
                   b: [Float], ldb: Int, transB: Bool, c: [Float], ldc: Int, accumulate: Bool) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                out[i * ldc + j] = Float(s) + (accumulate ? c[i * ldc + j] : 0)
            }
        }
        return out
    }

    /// Every kernel set this CPU can run.
    static let kernelSets: [ConvKernelSet] = ConvKernelSet.cpuSupportsAVX512 ? [.avx2, .avx512] : [.avx2]

    func run(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, accumulate: Bool, threads: Int,
             kernels: ConvKernelSet = .best) -> (got: [Float], want: [Float]) {
        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
        let a = randomArray((transA ? k : m) * lda, seed: 1)
        let b = randomArray((transB ? n : k) * ldb, seed: 2)
        var c = randomArray(m * ldc, seed: 3)
        let want = naiveGemm(m: m, n: n, k: k, a: a, lda: lda, transA: transA, b: b, ldb: ldb, transB: transB,
                             c: c, ldc: ldc, accumulate: accumulate)
        let pool = WorkerPool(threads: threads), scratch = GemmScratch(workers: threads, kernels: kernels)
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    gemm(m: m, n: n, k: k, a: GemmOperand(ap.baseAddress!, stride: lda, transposed: transA),
                         b: GemmOperand(bp.baseAddress!, stride: ldb, transposed: transB),
                         c: cp.baseAddress!, ldc: ldc, accumulate: accumulate, scratch: scratch, pool: pool)
                }
            }
        }
        return (c, want)
    }

    @Test("GEMM matches the naive product on odd shapes, every transpose, overwrite and accumulate, with every kernel set",
          arguments: [(1, 1, 1), (7, 17, 5), (6, 16, 256), (13, 33, 257), (100, 40, 600), (27, 32, 900), (5, 70, 3), (250, 97, 513),
                      (64, 96, 120), (97, 64, 64)])
    func matchesNaive(shape: (Int, Int, Int)) {
        for kernels in GemmTests.kernelSets {
            for transA in [false, true] {
                for transB in [false, true] {
                    for accumulate in [false, true] {
                        let (got, want) = run(m: shape.0, n: shape.1, k: shape.2, transA: transA, transB: transB,
                                              accumulate: accumulate, threads: 2, kernels: kernels)
                        let err = maxRelativeError(got, want)
                        #expect(err < 1e-4, "\(kernels) m,n,k=\(shape) transA=\(transA) transB=\(transB) acc=\(accumulate): \(err)")
                    }
                }
            }
        }
    }

    @Test("GEMM results are bitwise identical with 1, 2 and 3 threads, and with either kernel set")
    func threadCountIndependent() {
        var results: [[UInt32]] = []
        for kernels in GemmTests.kernelSets {
            for t in [1, 2, 3] {
                results.append(run(m: 123, n: 70, k: 700, transA: true, transB: false, accumulate: false, threads: t,
                                   kernels: kernels).got.map(\.bitPattern))
            }
        }
        #expect(results.allSatisfy { $0 == results[0] })
    }

    @Test("K = 0 clears C unless accumulating")
    func emptyK() {
        let (got, want) = run(m: 5, n: 5, k: 0, transA: false, transB: false, accumulate: false, threads: 1)
        #expect(got == want)
    }
}
