import ConvKernels
import ConvKernelsAVX512
import Foundation

/// Winograd convolution for 3x3 stride-1 layers (see WinogradTransforms.swift for the algebra).
///
/// Per position ξ of the transformed α×α tile, the sum over input channels is a matrix product
/// [tiles × Cin]·[Cin × Cout], done by the GEMM's register tile (ConvKernels/GemmTiles.swift);
/// the weight gradient's sum over tiles is a sum of outer products, done by the weight-gradient
/// tile (ConvKernels/OuterProducts.swift). The transforms run 16 channels at a time.
///
/// Work is split by the shape alone: tasks of `tilesPerTask` consecutive tiles, and for the
/// weight gradient a fixed number of tile groups whose partial sums are added in order, so the
/// results do not depend on the number of threads.
public enum WinogradAlgorithm: String, Sendable {
    case f2x2 = "F(2x2,3x3)", f4x4 = "F(4x4,3x3)"

    var transforms: any WinogradTransforms.Type { self == .f2x2 ? WinogradF2.self : WinogradF4.self }

    /// Per-worker scratch floats: transformed inputs and products (or output gradients).
    func scratchCount(inChannels: Int, outChannels: Int) -> Int {
        transforms.positions * transforms.tilesPerTask * (inChannels + outChannels)
    }
    /// Floats of transformed weights: positions × K × N padded to whole slivers.
    func weightCount(k: Int, n: Int) -> Int { transforms.positions * k * ((n + 31) / 32 * 32) }
    /// Tile groups of the weight gradient: 8, fewer for small shapes.
    func gradientGroups(_ s: ConvShape) -> Int {
        min(8, max(1, s.batch * tilesHigh(s) * tilesWide(s) / transforms.tilesPerTask))
    }
    /// Floats of one group's partial sums: dU, then the bias gradient.
    func gradientSliceCount(_ s: ConvShape) -> Int { transforms.positions * s.inChannels * s.outChannels + s.outChannels }

    func tilesHigh(_ s: ConvShape) -> Int { (s.outHeight + transforms.m - 1) / transforms.m }
    func tilesWide(_ s: ConvShape) -> Int { (s.outWidth + transforms.m - 1) / transforms.m }
}

extension ConvShape {
    /// The Winograd algorithm this convolution runs, if any: 3x3, stride 1, and channel counts
    /// that are whole SIMD16 vectors. F(4x4) does 44 % fewer products than F(2x2) but carries
    /// more transform work per tile; it wins once the image has a few 4x4 tiles a side (measured
    /// with `ddptrain bench --kernels`). `DDPTRAIN_WINOGRAD=0` turns Winograd off, `=2` or `=4`
    /// forces one algorithm, for comparison.
    public var winograd: WinogradAlgorithm? {
        guard kernelHeight == 3 && kernelWidth == 3 && stride == 1 && padding <= 2
                && inChannels % 16 == 0 && outChannels % 16 == 0 else { return nil }
        switch winogradSetting {
        case "0": return nil
        case "2": return .f2x2
        case "4": return .f4x4
        default: return min(outHeight, outWidth, height, width) >= 8 ? .f4x4 : .f2x2
        }
    }
}

private let winogradSetting = ProcessInfo.processInfo.environment["DDPTRAIN_WINOGRAD"]

extension ConvWorkspace {
    /// Y = conv(X, W) + bias.
    func winogradForward(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                         weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>) {
        let cin = s.inChannels, cout = s.outChannels
        func run<W: WinogradTransforms>(_: W.Type) {
            transformWeights(W.self, kernels, k: cin, n: cout, into: packedWeights, pool: pool) { ky, kx, ci, co in
                w[((ky * 3 + kx) * cin + ci) * cout + co]
            }
            convolve(W.self, kernels, s, input: x, transformedWeights: packedWeights, bias: bias, output: y,
                     scratch: winogradScratch, pool: pool)
        }
        algorithm == .f2x2 ? run(WinogradF2.self) : run(WinogradF4.self)
    }

    /// dX = the convolution of dY, padded by 2 − padding, with the flipped, channel-transposed kernel.
    func winogradBackwardData(_ algorithm: WinogradAlgorithm, _ s: ConvShape, outputGradient dy: UnsafePointer<Float>,
                              weights w: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>) {
        let cin = s.inChannels, cout = s.outChannels
        let flipped = ConvShape(batch: s.batch, height: s.outHeight, width: s.outWidth, inChannels: cout, outChannels: cin,
                                kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 2 - s.padding)
        func run<W: WinogradTransforms>(_: W.Type) {
            transformWeights(W.self, kernels, k: cout, n: cin, into: packedWeights, pool: pool) { ky, kx, co, ci in
                w[(((2 - ky) * 3 + (2 - kx)) * cin + ci) * cout + co]
            }
            convolve(W.self, kernels, flipped, input: dy, transformedWeights: packedWeights, bias: nil, output: dx,
                     scratch: winogradScratch, pool: pool)
        }
        algorithm == .f2x2 ? run(WinogradF2.self) : run(WinogradF4.self)
    }

    /// dW and dBias (both overwritten).
    func winogradBackwardWeights(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                                 outputGradient dy: UnsafePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
                                 biasGradient db: UnsafeMutablePointer<Float>) {
        func run<W: WinogradTransforms>(_: W.Type) {
            weightGradient(W.self, kernels, s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db,
                           groups: algorithm.gradientGroups(s), partials: partials, scratch: winogradScratch, pool: pool)
        }
        algorithm == .f2x2 ? run(WinogradF2.self) : run(WinogradF4.self)
    }
}

/// The output tiles of a shape, numbered image by image, row by row.
private struct Tiles<W: WinogradTransforms> {
    let s: ConvShape
    let high: Int, wide: Int, count: Int
    init(_ s: ConvShape) {
        self.s = s
        (high, wide) = ((s.outHeight + W.m - 1) / W.m, (s.outWidth + W.m - 1) / W.m)
        count = s.batch * high * wide
    }

    /// The image and the top-left output pixel of `tile`.
    @inline(__always) func origin(_ tile: Int) -> (image: Int, y: Int, x: Int) {
        let image = tile / (high * wide), rest = tile % (high * wide)
        return (image, W.m * (rest / wide), W.m * (rest % wide))
    }

    /// V[ξ][t][ci] = (Bᵀ·d·B)[ξ] for the α×α input blocks d of tiles first..<first+count; V[ξ]
    /// starts at v + ξ·perPosition. `e` holds α² vectors of scratch.
    @inline(__always)
    func transformInputs(_ x: UnsafePointer<Float>, first: Int, count: Int, into v: UnsafeMutablePointer<Float>,
                         perPosition: Int, scratch e: UnsafeMutablePointer<SIMD16<Float>>) {
        let cin = s.inChannels, alpha = W.alpha
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
                for q in 0..<alpha { W.input({ d($0, q) }, { e[$0 * alpha + q] = $1 }) }
                for r in 0..<alpha {
                    W.input({ e[r * alpha + $0] }, { storeVector(out + (r * alpha + $0) * perPosition + c, $1) })
                }
            }
        }
    }
}

/// U[ξ] = G·g·Gᵀ for every (row k, column n) of a 3x3 kernel given by `tap(ky, kx, k, n)`,
/// packed as GEMM B slivers [ξ][sliver][k][sliverWidth], 16 columns at a time. One task per row k.
private func transformWeights<W: WinogradTransforms>(_: W.Type, _ kernels: ConvKernelSet, k: Int, n: Int,
                                                     into u: UnsafeMutablePointer<Float>, pool: WorkerPool,
                                                     _ tap: (_ ky: Int, _ kx: Int, _ k: Int, _ n: Int) -> Float) {
    let nr = kernels.sliverWidth, padded = (n + nr - 1) / nr * nr, alpha = W.alpha
    let perPosition = k * padded
    pool.run(tasks: k) { row, _ in
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 3 * alpha) { buffer in
            let h = buffer.baseAddress!
            for column in stride(from: 0, to: padded, by: 16) {
                let at = u + (column / nr) * k * nr + row * nr + column % nr
                guard column < n else {
                    for xi in 0..<W.positions { storeVector(at + xi * perPosition, SIMD16()) }
                    continue
                }
                @inline(__always) func g(_ ky: Int, _ kx: Int) -> SIMD16<Float> {
                    var v = SIMD16<Float>()
                    for l in 0..<16 { v[l] = tap(ky, kx, row, column + l) }
                    return v
                }
                for kx in 0..<3 { W.weight({ g($0, kx) }, { h[$0 * 3 + kx] = $1 }) }
                for i in 0..<alpha {
                    W.weight({ h[i * 3 + $0] }, { storeVector(at + (i * alpha + $0) * perPosition, $1) })
                }
            }
        }
    }
}

/// Y = conv(X, W) + bias (bias optional) with W transformed by `transformWeights`.
private func convolve<W: WinogradTransforms>(_: W.Type, _ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>,
                                             transformedWeights u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                             output y: UnsafeMutablePointer<Float>, scratch: [UnsafeMutablePointer<Float>],
                                             pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, tiles = Tiles<W>(s)
    let cin = s.inChannels, cout = s.outChannels, alpha = W.alpha, mSide = W.m
    let T = W.tilesPerTask, nr = kernels.sliverWidth
    let uPerPosition = cin * ((cout + nr - 1) / nr * nr)
    let vPerPosition = T * cin, mPerPosition = T * cout

    pool.run(tasks: (tiles.count + T - 1) / T) { task, worker in
        let v = scratch[worker], m = v + W.positions * vPerPosition
        let first = task * T, count = min(T, tiles.count - first)
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            let e = buffer.baseAddress!
            tiles.transformInputs(x, first: first, count: count, into: v, perPosition: vPerPosition, scratch: e)

            // M[ξ] = V[ξ]·U[ξ] for each position.
            for xi in 0..<W.positions {
                let a = UnsafePointer(v + xi * vPerPosition), b = u + xi * uPerPosition, c = m + xi * mPerPosition
                switch kernels {
                case .avx2:
                    ConvKernels.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
                case .avx512:
                    ConvKernelsAVX512.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
                }
            }

            // Y = Aᵀ·M·A (+ bias) for each tile, skipping pixels past the edge.
            for t in 0..<count {
                let (image, oy, ox) = tiles.origin(first + t)
                let rows = min(mSide, oh - oy), columns = min(mSide, ow - ox)
                let out = y + ((image * oh + oy) * ow + ox) * cout
                let src = UnsafePointer(m + t * cout)
                for c in stride(from: 0, to: cout, by: 16) {
                    let b = bias.map { loadVector($0 + c) } ?? SIMD16()
                    for q in 0..<alpha {
                        W.output({ loadVector(src + ($0 * alpha + q) * mPerPosition + c) }, { e[$0 * alpha + q] = $1 })
                    }
                    for i in 0..<rows {
                        W.output({ e[i * alpha + $0] }, { j, value in
                            if j < columns { storeVector(out + (i * ow + j) * cout + c, value + b) }
                        })
                    }
                }
            }
        }
    }
}

/// dW and dBias: dU[ξ][ci][co] = Σ_tiles V[ξ][t][ci]·D[ξ][t][co] with V = Bᵀ·d·B of the input
/// block and D = A·dY·Aᵀ of the output-gradient tile, then dW = Gᵀ·dU·G.
private func weightGradient<W: WinogradTransforms>(_: W.Type, _ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>,
                                                   outputGradient dy: UnsafePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
                                                   biasGradient db: UnsafeMutablePointer<Float>, groups: Int,
                                                   partials: UnsafeMutablePointer<Float>, scratch: [UnsafeMutablePointer<Float>],
                                                   pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, tiles = Tiles<W>(s)
    let cin = s.inChannels, cout = s.outChannels, alpha = W.alpha, mSide = W.m
    let T = W.tilesPerTask
    let products = W.positions * cin * cout, slice = products + cout
    let vPerPosition = T * cin, dPerPosition = T * cout

    pool.run(tasks: groups) { group, worker in
        let v = scratch[worker], d = v + W.positions * vPerPosition
        let sum = partials + group * slice
        sum.update(repeating: 0, count: slice)
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            let e = buffer.baseAddress!
            let end = (group + 1) * tiles.count / groups
            var first = group * tiles.count / groups
            while first < end {
                let count = min(T, end - first)
                tiles.transformInputs(x, first: first, count: count, into: v, perPosition: vPerPosition, scratch: e)
                // D[ξ][t][co] = (A·dY·Aᵀ)[ξ], dY the tile's m×m block (zero past the edge); and Σ dY.
                for t in 0..<count {
                    let (image, oy, ox) = tiles.origin(first + t)
                    let rows = min(mSide, oh - oy), columns = min(mSide, ow - ox)
                    let src = dy + ((image * oh + oy) * ow + ox) * cout
                    let out = d + t * cout
                    for c in stride(from: 0, to: cout, by: 16) {
                        @inline(__always) func g(_ i: Int, _ j: Int) -> SIMD16<Float> {
                            i < rows && j < columns ? loadVector(src + (i * ow + j) * cout + c) : SIMD16()
                        }
                        var total = SIMD16<Float>()
                        for i in 0..<rows { for j in 0..<columns { total += g(i, j) } }
                        storeVector(sum + products + c, loadVector(sum + products + c) + total)
                        for j in 0..<mSide { W.outputGradient({ g($0, j) }, { e[$0 * mSide + j] = $1 }) }
                        for i in 0..<alpha {
                            W.outputGradient({ e[i * mSide + $0] }, { storeVector(out + (i * alpha + $0) * dPerPosition + c, $1) })
                        }
                    }
                }
                for xi in 0..<W.positions {
                    let a = UnsafePointer(v + xi * vPerPosition), b = UnsafePointer(d + xi * dPerPosition), c = sum + xi * cin * cout
                    switch kernels {
                    case .avx2:
                        ConvKernels.accumulateTransposedProduct(count: count, a: a, lda: cin, rows: cin, b: b, ldb: cout,
                                                                columns: cout, c: c, ldc: cout)
                    case .avx512:
                        ConvKernelsAVX512.accumulateTransposedProduct(count: count, a: a, lda: cin, rows: cin, b: b, ldb: cout,
                                                                      columns: cout, c: c, ldc: cout)
                    }
                }
                first += count
            }
        }
    }
    // Σ over groups, into group 0's slice.
    forEachChunk(slice, pool: pool) { start, end in
        for g in 1..<max(groups, 1) { addInPlace(partials + start, partials + g * slice + start, count: end - start) }
    }
    db.update(from: partials + products, count: cout)
    // dW[ky][kx][ci][co] = (Gᵀ·dU·G)[ky][kx], 16 output channels at a time; one task per ci.
    pool.run(tasks: cin) { ci, _ in
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 3 * alpha) { buffer in
            let h = buffer.baseAddress!
            for c in stride(from: 0, to: cout, by: 16) {
                for k in 0..<alpha {
                    W.weightGradient({ loadVector(partials + (($0 * alpha + k) * cin + ci) * cout + c) }, { h[$0 * alpha + k] = $1 })
                }
                for ky in 0..<3 {
                    W.weightGradient({ h[ky * alpha + $0] }, { kx, value in
                        storeVector(dw + ((ky * 3 + kx) * cin + ci) * cout + c, value)
                    })
                }
            }
        }
    }
}
