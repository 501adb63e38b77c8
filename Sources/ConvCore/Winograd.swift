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

    /// Tile groups of the weight gradient: 8, fewer for small shapes.
    static func gradientGroups(_ s: ConvShape) -> Int {
        min(8, max(1, WinogradTiles(s).count / tilesPerTask))
    }
    /// Floats of one group's partial sums: dU, then the bias gradient.
    static func gradientSliceCount(_ s: ConvShape) -> Int { 16 * s.inChannels * s.outChannels + s.outChannels }

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

/// The 2x2 output tiles of a shape, numbered image by image, row by row.
struct WinogradTiles {
    let s: ConvShape
    let high: Int, wide: Int, count: Int
    init(_ s: ConvShape) {
        self.s = s
        (high, wide) = ((s.outHeight + 1) / 2, (s.outWidth + 1) / 2)
        count = s.batch * high * wide
    }

    /// The image and the top-left output pixel of `tile`.
    @inline(__always) func origin(_ tile: Int) -> (image: Int, y: Int, x: Int) {
        let image = tile / (high * wide), rest = tile % (high * wide)
        return (image, 2 * (rest / wide), 2 * (rest % wide))
    }

    /// V[ξ][t][ci] = (Bᵀ·d·B)[ξ] for the 4x4 input blocks d of tiles first..<first+count,
    /// 16 channels at a time; V[ξ] starts at v + ξ·perPosition.
    func transformInputs(_ x: UnsafePointer<Float>, first: Int, count: Int, into v: UnsafeMutablePointer<Float>, perPosition: Int) {
        let cin = s.inChannels
        for t in 0..<count {
            let (image, oy, ox) = origin(first + t)
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
                    storeVector(out + q * perPosition + c, d0 - d2)
                    storeVector(out + (4 + q) * perPosition + c, d1 + d2)
                    storeVector(out + (8 + q) * perPosition + c, d2 - d1)
                    storeVector(out + (12 + q) * perPosition + c, d1 - d3)
                }
                // … then rows, V = e·B.
                for r in 0..<4 {
                    let row = out + 4 * r * perPosition + c
                    let e0 = loadVector(row), e1 = loadVector(row + perPosition)
                    let e2 = loadVector(row + 2 * perPosition), e3 = loadVector(row + 3 * perPosition)
                    storeVector(row, e0 - e2)
                    storeVector(row + perPosition, e1 + e2)
                    storeVector(row + 2 * perPosition, e2 - e1)
                    storeVector(row + 3 * perPosition, e1 - e3)
                }
            }
        }
    }
}

/// Y = conv(X, W) + bias for a 3x3 stride-1 shape, with W transformed by `winogradTransformWeights`.
func winogradConvolution(_ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>,
                         transformedWeights u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         output y: UnsafeMutablePointer<Float>, scratch: [UnsafeMutablePointer<Float>], pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, tiles = WinogradTiles(s)
    let cin = s.inChannels, cout = s.outChannels
    let T = Winograd.tilesPerTask
    let nr = kernels.sliverWidth
    let uPerPosition = cin * ((cout + nr - 1) / nr * nr)
    let vPerPosition = T * cin, mPerPosition = T * cout

    pool.run(tasks: (tiles.count + T - 1) / T) { task, worker in
        let v = scratch[worker], m = v + 16 * vPerPosition
        let first = task * T, count = min(T, tiles.count - first)
        tiles.transformInputs(x, first: first, count: count, into: v, perPosition: vPerPosition)

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
            let (image, oy, ox) = tiles.origin(first + t)
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

/// dW and dBias of a 3x3 stride-1 convolution (both overwritten). By the same algebra as the
/// forward pass, dU[ξ][ci][co] = Σ_tiles V[ξ][t][ci] · D[ξ][t][co] with V = Bᵀ·d·B of the input
/// block and D = A·dy·Aᵀ of the 2x2 output-gradient block, and dW = Gᵀ·dU·G: 16 products per
/// (ci, co) and tile instead of 36.
///
/// Tiles are split into a fixed number of groups (by the shape alone); each group sums its
/// dU and bias gradient into its own slice of `partials`, the slices are added in group order,
/// and dU is transformed back, so the result does not depend on the number of threads.
func winogradWeightGradient(_ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>,
                            outputGradient dy: UnsafePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
                            biasGradient db: UnsafeMutablePointer<Float>, partials: UnsafeMutablePointer<Float>,
                            scratch: [UnsafeMutablePointer<Float>], pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, tiles = WinogradTiles(s)
    let cin = s.inChannels, cout = s.outChannels
    let T = Winograd.tilesPerTask
    let groups = Winograd.gradientGroups(s), slice = Winograd.gradientSliceCount(s)
    let products = 16 * cin * cout
    let vPerPosition = T * cin, dPerPosition = T * cout

    pool.run(tasks: groups) { group, worker in
        let v = scratch[worker], d = v + 16 * vPerPosition
        let sum = partials + group * slice
        sum.update(repeating: 0, count: slice)
        let end = (group + 1) * tiles.count / groups
        var first = group * tiles.count / groups
        while first < end {
            let count = min(T, end - first)
            tiles.transformInputs(x, first: first, count: count, into: v, perPosition: vPerPosition)
            // D[ξ][t][co] = (A·dy·Aᵀ)[ξ], dy the tile's 2x2 block (zero past the edge); and Σ dy.
            for t in 0..<count {
                let (image, oy, ox) = tiles.origin(first + t)
                let rows = min(2, oh - oy), columns = min(2, ow - ox)
                let src = dy + ((image * oh + oy) * ow + ox) * cout
                let out = d + t * cout
                for c in stride(from: 0, to: cout, by: 16) {
                    let g00 = loadVector(src + c)
                    let g01 = columns > 1 ? loadVector(src + cout + c) : SIMD16()
                    let g10 = rows > 1 ? loadVector(src + ow * cout + c) : SIMD16()
                    let g11 = rows > 1 && columns > 1 ? loadVector(src + (ow + 1) * cout + c) : SIMD16()
                    storeVector(sum + products + c, loadVector(sum + products + c) + ((g00 + g01) + (g10 + g11)))
                    // Row i of a = A·dy (4x2) is (a0, a1); D's row i = (a0, a1)·Aᵀ.
                    @inline(__always) func storeRow(_ i: Int, _ a0: SIMD16<Float>, _ a1: SIMD16<Float>) {
                        let row = out + 4 * i * dPerPosition + c
                        storeVector(row, a0)
                        storeVector(row + dPerPosition, a0 + a1)
                        storeVector(row + 2 * dPerPosition, a0 - a1)
                        storeVector(row + 3 * dPerPosition, -a1)
                    }
                    storeRow(0, g00, g01)
                    storeRow(1, g00 + g10, g01 + g11)
                    storeRow(2, g00 - g10, g01 - g11)
                    storeRow(3, -g10, -g11)
                }
            }
            for xi in 0..<16 {
                let a = UnsafePointer(v + xi * vPerPosition), b = UnsafePointer(d + xi * dPerPosition), c = sum + xi * cin * cout
                switch kernels {
                case .avx2:
                    ConvKernels.accumulateTransposedProduct(count: count, a: a, lda: cin, rows: cin, b: b, ldb: cout, columns: cout, c: c, ldc: cout)
                case .avx512:
                    ConvKernelsAVX512.accumulateTransposedProduct(count: count, a: a, lda: cin, rows: cin, b: b, ldb: cout, columns: cout, c: c, ldc: cout)
                }
            }
            first += count
        }
    }
    // Σ over groups, into group 0's slice.
    forEachChunk(slice, pool: pool) { start, end in
        for g in 1..<max(groups, 1) { addInPlace(partials + start, partials + g * slice + start, count: end - start) }
    }
    db.update(from: partials + products, count: cout)
    // dW[ky][kx][ci][co] = (Gᵀ·dU·G)[ky][kx], 16 output channels at a time; one task per ci.
    pool.run(tasks: cin) { ci, _ in
        for c in stride(from: 0, to: cout, by: 16) {
            @inline(__always) func du(_ i: Int, _ k: Int) -> SIMD16<Float> { loadVector(partials + ((i * 4 + k) * cin + ci) * cout + c) }
            for ky in 0..<3 {
                // h[ky][k] = Σ_i Gᵀ[ky][i]·dU[i][k], for k = 0…3.
                var h = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
                for k in 0..<4 {
                    let u0 = du(0, k), u1 = du(1, k), u2 = du(2, k), u3 = du(3, k)
                    let value: SIMD16<Float> = switch ky {
                    case 0: u0 + 0.5 * (u1 + u2)
                    case 1: 0.5 * (u1 - u2)
                    default: 0.5 * (u1 + u2) + u3
                    }
                    switch k { case 0: h.0 = value; case 1: h.1 = value; case 2: h.2 = value; default: h.3 = value }
                }
                let out = dw + (ky * 3 * cin + ci) * cout + c
                storeVector(out, h.0 + 0.5 * (h.1 + h.2))
                storeVector(out + cin * cout, 0.5 * (h.1 - h.2))
                storeVector(out + 2 * cin * cout, 0.5 * (h.1 + h.2) + h.3)
            }
        }
    }
}
