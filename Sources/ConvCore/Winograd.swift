import ConvKernels
import ConvKernelsAVX512
import Foundation

/// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2015): each 2x2 block of
/// output pixels is computed from the 4x4 block of input pixels around it as
///
///     Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d Bᵀ) ] A
///
/// that is 16 element-wise products per input channel instead of 36 multiply-adds: 2.25× fewer
/// multiplies than the direct convolution. The sum over input channels is, for each of the 16
/// positions ξ of the 4x4 transformed tile, a matrix product [tiles × Cin]·[Cin × Cout], done by
/// the GEMM's register tile (ConvKernels/GemmTiles.swift). The transforms only add and halve,
/// so results stay within rounding of the direct convolution.
///
/// Work is split into tasks of `tilesPerTask` consecutive 2x2 tiles (by the shape alone); each
/// task transforms its tiles' inputs into per-worker scratch, multiplies, and transforms back.
enum Winograd {
    static let tilesPerTask = 24

    /// Per-worker scratch floats for a convolution: transformed inputs and products.
    static func scratchCount(inChannels: Int, outChannels: Int) -> Int {
        16 * tilesPerTask * (inChannels + outChannels)
    }

    /// Floats of transformed weights: 16 positions × K × N padded to whole slivers.
    static func weightCount(k: Int, n: Int) -> Int { 16 * k * ((n + 31) / 32 * 32) }
}

extension ConvShape {
    /// Whether this convolution's forward pass runs as Winograd F(2x2, 3x3): 3x3, stride 1, and
    /// channel counts that are whole SIMD16 vectors (the transforms work 16 channels at a time).
    /// `DDPTRAIN_WINOGRAD=0` turns it off, for comparison.
    public var usesWinograd: Bool {
        kernelHeight == 3 && kernelWidth == 3 && stride == 1 && padding <= 2
            && inChannels % 16 == 0 && outChannels % 16 == 0 && winogradEnabled
    }
}

private let winogradEnabled = ProcessInfo.processInfo.environment["DDPTRAIN_WINOGRAD"] != "0"

/// U[ξ] = G·g·Gᵀ for every (row k, column n) of a 3x3 kernel given by `tap(ky, kx, k, n)`,
/// packed as GEMM B slivers [ξ][sliver][k][sliverWidth]. One task per row k.
func winogradTransformWeights(_ kernels: ConvKernelSet, k: Int, n: Int, into u: UnsafeMutablePointer<Float>, pool: WorkerPool,
                              _ tap: (_ ky: Int, _ kx: Int, _ k: Int, _ n: Int) -> Float) {
    let nr = kernels.sliverWidth, padded = (n + nr - 1) / nr * nr
    let perPosition = k * padded
    pool.run(tasks: k) { row, _ in
        for column in 0..<padded {
            let at = u + (column / nr) * k * nr + row * nr + column % nr
            guard column < n else {
                for xi in 0..<16 { at[xi * perPosition] = 0 }
                continue
            }
            // h = G·g (4x3), then U = h·Gᵀ (4x4).
            var h = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())
            for kx in 0..<3 {
                let g0 = tap(0, kx, row, column), g1 = tap(1, kx, row, column), g2 = tap(2, kx, row, column)
                let c = SIMD4<Float>(g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
                switch kx { case 0: h.0 = c; case 1: h.1 = c; default: h.2 = c }
            }
            let u0 = h.0, u1 = 0.5 * (h.0 + h.1 + h.2), u2 = 0.5 * (h.0 - h.1 + h.2), u3 = h.2
            for i in 0..<4 {
                at[(i * 4 + 0) * perPosition] = u0[i]
                at[(i * 4 + 1) * perPosition] = u1[i]
                at[(i * 4 + 2) * perPosition] = u2[i]
                at[(i * 4 + 3) * perPosition] = u3[i]
            }
        }
    }
}

/// Y = conv(X, W) + bias for a 3x3 stride-1 shape, with W transformed by `winogradTransformWeights`.
func winogradConvolution(_ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>,
                         transformedWeights u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         output y: UnsafeMutablePointer<Float>, scratch: [UnsafeMutablePointer<Float>], pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, tilesHigh = (oh + 1) / 2, tilesWide = (ow + 1) / 2
    let tiles = s.batch * tilesHigh * tilesWide
    let cin = s.inChannels, cout = s.outChannels
    let T = Winograd.tilesPerTask
    let nr = kernels.sliverWidth
    let uPerPosition = cin * ((cout + nr - 1) / nr * nr)
    let vPerPosition = T * cin, mPerPosition = T * cout

    @inline(__always) func tileOrigin(_ tile: Int) -> (image: Int, y: Int, x: Int) {
        let image = tile / (tilesHigh * tilesWide), rest = tile % (tilesHigh * tilesWide)
        return (image, 2 * (rest / tilesWide), 2 * (rest % tilesWide))
    }

    pool.run(tasks: (tiles + T - 1) / T) { task, worker in
        let v = scratch[worker], m = v + 16 * vPerPosition
        let first = task * T, count = min(T, tiles - first)

        // V[ξ] = Bᵀ·d·B for each tile's 4x4 input block, 16 channels at a time: V[ξ][tile][ci].
        for t in 0..<count {
            let (image, oy, ox) = tileOrigin(first + t)
            let iy = oy - s.padding, ix = ox - s.padding
            let base = x + image * s.height * s.width * cin
            let out = v + t * cin
            for c in stride(from: 0, to: cin, by: 16) {
                @inline(__always) func d(_ r: Int, _ q: Int) -> SIMD16<Float> {
                    let yy = iy + r, xx = ix + q
                    if yy < 0 || yy >= s.height || xx < 0 || xx >= s.width { return SIMD16() }
                    return loadVector(base + (yy * s.width + xx) * cin + c)
                }
                // Columns first, e = Bᵀ·d (kept in V's slots for now) …
                for q in 0..<4 {
                    let d0 = d(0, q), d1 = d(1, q), d2 = d(2, q), d3 = d(3, q)
                    storeVector(out + q * vPerPosition + c, d0 - d2)
                    storeVector(out + (4 + q) * vPerPosition + c, d1 + d2)
                    storeVector(out + (8 + q) * vPerPosition + c, d2 - d1)
                    storeVector(out + (12 + q) * vPerPosition + c, d1 - d3)
                }
                // … then rows, V = e·B.
                for r in 0..<4 {
                    let row = out + 4 * r * vPerPosition + c
                    let e0 = loadVector(row), e1 = loadVector(row + vPerPosition)
                    let e2 = loadVector(row + 2 * vPerPosition), e3 = loadVector(row + 3 * vPerPosition)
                    storeVector(row, e0 - e2)
                    storeVector(row + vPerPosition, e1 + e2)
                    storeVector(row + 2 * vPerPosition, e2 - e1)
                    storeVector(row + 3 * vPerPosition, e1 - e3)
                }
            }
        }

        // M[ξ] = V[ξ]·U[ξ]: [tiles × Cin]·[Cin × Cout] for each of the 16 positions.
        for xi in 0..<16 {
            let a = UnsafePointer(v + xi * vPerPosition), b = u + xi * uPerPosition, c = m + xi * mPerPosition
            switch kernels {
            case .avx2:
                ConvKernels.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
            case .avx512:
                ConvKernelsAVX512.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
            }
        }

        // Y = Aᵀ·M·A (+ bias) for each tile's 2x2 output block, skipping pixels past the edge.
        for t in 0..<count {
            let (image, oy, ox) = tileOrigin(first + t)
            let rows = min(2, oh - oy), columns = min(2, ow - ox)
            let out = y + ((image * oh + oy) * ow + ox) * cout
            let src = UnsafePointer(m + t * cout)
            for c in stride(from: 0, to: cout, by: 16) {
                @inline(__always) func mv(_ r: Int, _ q: Int) -> SIMD16<Float> { loadVector(src + (r * 4 + q) * mPerPosition + c) }
                var f0 = (SIMD16<Float>(), SIMD16<Float>()), f1 = f0, f2 = f0, f3 = f0
                for q in 0..<4 {
                    let m0 = mv(0, q), m1 = mv(1, q), m2 = mv(2, q), m3 = mv(3, q)
                    let pair = (m0 + m1 + m2, m1 - m2 - m3)
                    switch q { case 0: f0 = pair; case 1: f1 = pair; case 2: f2 = pair; default: f3 = pair }
                }
                let b = bias.map { loadVector($0 + c) } ?? SIMD16()
                storeVector(out + c, f0.0 + f1.0 + f2.0 + b)
                if columns > 1 { storeVector(out + cout + c, f1.0 - f2.0 - f3.0 + b) }
                if rows > 1 {
                    storeVector(out + ow * cout + c, f0.1 + f1.1 + f2.1 + b)
                    if columns > 1 { storeVector(out + (ow + 1) * cout + c, f1.1 - f2.1 - f3.1 + b) }
                }
            }
        }
    }
}
