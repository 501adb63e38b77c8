/// The per-task work of Winograd convolution (ConvCore/Winograd.swift splits the tasks and
/// adds the partial sums), compiled into both kernel modules like ConvTiles.swift so that the
/// transforms run on 512-bit vectors where the CPU has them. `m` is the side of the output
/// tile: 2 for F(2x2,3x3), 4 for F(4x4,3x3).

/// Tiles per convolution task and positions of a transformed tile, for scratch sizes.
public func winogradTilesPerTask(m: Int) -> Int { m == 2 ? WinogradF2.tilesPerTask : WinogradF4.tilesPerTask }
public func winogradPositions(m: Int) -> Int { (m + 2) * (m + 2) }

/// Floats between the positions' planes of a weight gradient's dU, planes of `count` floats
/// (Cin × Cout, or a block's rows × columns): a cache line more than the plane. Planes are
/// often whole multiples of 4 KB, and the back transform reads all α² of them at once, which
/// put 36 streams in the same L1 sets (15 % of the weight gradient went to it).
public func winogradGradientPlaneStride(count: Int) -> Int { count + 16 }

/// Floats of one position's transformed weights (K × N, N padded to whole slivers of this kernel set).
public func winogradWeightsPerPosition(k: Int, n: Int) -> Int { k * ((n + sliverWidth - 1) / sliverWidth * sliverWidth) }

/// Where a tile's transformed channels go: channel c of tile t at position ξ is at
/// `ξ·perPosition + t·row + (c / blockWidth)·blockStride + c % blockWidth`. Without blocks a
/// tile's channels are one row; in blocks (the weight gradient's operands) each block of
/// `blockWidth` channels is a matrix of its own, whose rows a weight-gradient block then reads
/// one after another instead of one cache line in every long row.
///
///     OperandLayout(perPosition: tiles * cin, row: cin)                                   // V[ξ][t][ci]
///     OperandLayout(perPosition: tiles * 48, row: 48, blockWidth: 48, blockStride: 16 * tiles * 48)  // V[block][ξ][t][48]
public struct OperandLayout {
    public let perPosition: Int, row: Int, blockWidth: Int, blockStride: Int

    public init(perPosition: Int, row: Int, blockWidth: Int = .max, blockStride: Int = 0) {
        self.perPosition = perPosition; self.row = row; self.blockWidth = blockWidth; self.blockStride = blockStride
    }

    /// Calls `body(offset, c)` for every 16 channels c of `channels`, `offset` from the row's start.
    @inline(__always) func forEachVector(channels: Int, _ body: (_ offset: Int, _ c: Int) -> Void) {
        var block = 0, base = 0
        while block < channels {
            let end = block + min(blockWidth, channels - block)
            for c in stride(from: block, to: end, by: 16) { body(base + c - block, c) }
            block = end
            base += blockStride
        }
    }
}

/// A 3x3 kernel read in place: tap (ky, kx) of row k, column n at
/// `origin + ky·yStride + kx·xStride + k·kStride + n·nStride`. Strides rather than a closure:
/// across the module boundary a closure is a call per float, which cost more than the transform.
///
///     KernelTaps(origin: w, yStride: 3 * cin * cout, xStride: cin * cout, kStride: cout, nStride: 1)  // [ky][kx][ci][co]
public struct KernelTaps {
    public let origin: UnsafePointer<Float>, yStride: Int, xStride: Int, kStride: Int, nStride: Int

    public init(origin: UnsafePointer<Float>, yStride: Int, xStride: Int, kStride: Int, nStride: Int) {
        self.origin = origin; self.yStride = yStride; self.xStride = xStride; self.kStride = kStride; self.nStride = nStride
    }

    /// Tap (ky, kx) of row k, columns n..<n+16.
    @inline(__always) func vector(_ ky: Int, _ kx: Int, _ k: Int, _ n: Int) -> SIMD16<Float> {
        let p = origin + ky * yStride + kx * xStride + k * kStride + n * nStride
        if nStride == 1 { return load(p) }
        var v = SIMD16<Float>()
        for l in 0..<16 { v[l] = p[l * nStride] }
        return v
    }
}

/// Rows `rows` of the transformed weights U[ξ] = G·g·Gᵀ in the columns of sliver `sliver`, for
/// the 3x3 kernel `taps` (n a multiple of 16), packed as GEMM B slivers [ξ][sliver][k][sliverWidth].
/// A task's writes to each position are then one contiguous run, and a transposed kernel's
/// gathers (a float per row of the kernel) hit the same cache lines row after row.
public func winogradTransformWeights(m: Int, k: Int, n: Int, rows: Range<Int>, sliver: Int, into u: UnsafeMutablePointer<Float>,
                                     taps: KernelTaps) {
    func run<W: WinogradTransforms>(_: W.Type) {
        let alpha = W.alpha, perPosition = winogradWeightsPerPosition(k: k, n: n), base = u + sliver * k * sliverWidth
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 3 * alpha) { buffer in
            let h = buffer.baseAddress!
            for row in rows {
                for column in stride(from: sliver * sliverWidth, to: (sliver + 1) * sliverWidth, by: 16) {
                    let at = base + row * sliverWidth + column % sliverWidth
                    guard column < n else {
                        for xi in 0..<W.positions { store(at + xi * perPosition, SIMD16()) }
                        continue
                    }
                    for kx in 0..<3 { W.weight({ taps.vector($0, kx, row, column) }, { h[$0 * 3 + kx] = $1 }) }
                    for i in 0..<alpha {
                        W.weight({ h[i * 3 + $0] }, { store(at + (i * alpha + $0) * perPosition, $1) })
                    }
                }
            }
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// What a Winograd output transform does to each value on its way out: add the bias, then take
/// the ReLU that follows the convolution, as the separate passes would (the same bits).
///
///     OutputEpilogue(bias: b)                 // a convolution
///     OutputEpilogue(bias: b, relu: true)     // a convolution, then a ReLU
public struct OutputEpilogue {
    public let bias: UnsafePointer<Float>?, relu: Bool

    public init(bias: UnsafePointer<Float>? = nil, relu: Bool = false) {
        self.bias = bias; self.relu = relu
    }
}

/// Y = conv(X, W), finished by `epilogue`, for tiles first..<first+count, with W transformed by
/// `winogradTransformWeights`. `scratch` holds positions × tilesPerTask × (Cin + Cout) floats.
/// `phaseEnded` is called after the input transform (0), the products (1) and the output
/// transform (2), for `bench --kernels` to time them.
public func winogradConvolveTiles(m: Int, _ g: ConvGeometry, input x: UnsafePointer<Float>, transformedWeights u: UnsafePointer<Float>,
                                  epilogue: OutputEpilogue, output y: UnsafeMutablePointer<Float>,
                                  first: Int, count: Int, scratch: UnsafeMutablePointer<Float>,
                                  phaseEnded: (_ phase: Int) -> Void = { _ in }) {
    func run<W: WinogradTransforms>(_: W.Type) {
        let tiles = Tiles<W>(g), cin = g.inChannels, cout = g.outChannels
        let uPerPosition = winogradWeightsPerPosition(k: cin, n: cout)
        let vPerPosition = W.tilesPerTask * cin, mPerPosition = W.tilesPerTask * cout
        let v = scratch, product = scratch + W.positions * vPerPosition
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            let e = buffer.baseAddress!
            tiles.transformInputs(x, first: first, count: count, into: v, OperandLayout(perPosition: vPerPosition, row: cin), scratch: e)
            phaseEnded(0)
            // M[ξ] = V[ξ]·U[ξ] for each position.
            for xi in 0..<W.positions {
                gemmBlock(kc: cin, a: v + xi * vPerPosition, lda: cin, rows: count, packedB: u + xi * uPerPosition,
                          columns: cout, c: product + xi * mPerPosition, ldc: cout)
            }
            phaseEnded(1)
            tiles.transformOutputs(product, OperandLayout(perPosition: mPerPosition, row: cout), first: first, count: count, epilogue: epilogue,
                                   into: y, scratch: e)
            phaseEnded(2)
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// V[ξ][t][ci] = (Bᵀ·d·B)[ξ] for tiles first..<first+count into rows 0..<count of `v`, laid
/// out as `layout` says: `winogradConvolveTiles`' first step, for a whole batch at once.
public func winogradInputTiles(m: Int, _ g: ConvGeometry, input x: UnsafePointer<Float>, first: Int, count: Int,
                               v: UnsafeMutablePointer<Float>, _ layout: OperandLayout) {
    func run<W: WinogradTransforms>(_: W.Type) {
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            Tiles<W>(g).transformInputs(x, first: first, count: count, into: v, layout, scratch: buffer.baseAddress!)
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// Y = Aᵀ·M·A, finished by `epilogue`, for tiles first..<first+count from rows 0..<count of the products `product`,
/// laid out as `layout` says: `winogradConvolveTiles`' last step, for a whole batch at once.
public func winogradOutputTiles(m: Int, _ g: ConvGeometry, products product: UnsafePointer<Float>, _ layout: OperandLayout,
                                first: Int, count: Int, epilogue: OutputEpilogue, output y: UnsafeMutablePointer<Float>) {
    func run<W: WinogradTransforms>(_: W.Type) {
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            Tiles<W>(g).transformOutputs(product, layout, first: first, count: count, epilogue: epilogue, into: y,
                                         scratch: buffer.baseAddress!)
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// Adds to `sum` the weight-gradient terms of tiles first..<end: dU[ξ][ci][co] += V[ξ][t][ci]·D[ξ][t][co]
/// (V = Bᵀ·d·B of the input block, D = A·dY·Aᵀ of the output-gradient tile; planes
/// `winogradGradientPlaneStride` apart), then, after the positions' planes, the bias gradient
/// Σ dY when `biasGradient` (a convolution without bias skips it).
public func winogradWeightGradientTiles(m: Int, _ g: ConvGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                        first start: Int, end: Int, into sum: UnsafeMutablePointer<Float>, biasGradient: Bool,
                                        scratch: UnsafeMutablePointer<Float>) {
    func run<W: WinogradTransforms>(_: W.Type) {
        let tiles = Tiles<W>(g), cin = g.inChannels, cout = g.outChannels, T = W.tilesPerTask
        let plane = winogradGradientPlaneStride(count: cin * cout), products = W.positions * plane
        let vPerPosition = T * cin, dPerPosition = T * cout
        let v = scratch, d = scratch + W.positions * vPerPosition
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            let e = buffer.baseAddress!
            var first = start
            while first < end {
                let count = min(T, end - first)
                tiles.transformInputs(x, first: first, count: count, into: v, OperandLayout(perPosition: vPerPosition, row: cin), scratch: e)
                tiles.transformOutputGradients(dy, first: first, count: count, into: d, OperandLayout(perPosition: dPerPosition, row: cout),
                                               biasSum: biasGradient ? sum + products : nil, scratch: e)
                for xi in 0..<W.positions {
                    transposedProduct(count: count, a: v + xi * vPerPosition, lda: cin, rows: cin,
                                      b: d + xi * dPerPosition, ldb: cout, columns: cout,
                                      c: sum + xi * plane, ldc: cout, accumulate: true)
                }
                first += count
            }
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// The operands of the weight gradient for tiles first..<first+count, written to rows
/// 0..<count of `v` and `d` as `vLayout` and `dLayout` say, and Σ dY added to `biasSum` unless
/// it is nil: the first half of `winogradWeightGradientTiles`, for a whole batch at once.
public func winogradGradientOperands(m: Int, _ g: ConvGeometry, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                     first: Int, count: Int, v: UnsafeMutablePointer<Float>, _ vLayout: OperandLayout,
                                     d: UnsafeMutablePointer<Float>, _ dLayout: OperandLayout, biasSum: UnsafeMutablePointer<Float>?) {
    func run<W: WinogradTransforms>(_: W.Type) {
        let tiles = Tiles<W>(g)
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: W.positions) { buffer in
            tiles.transformInputs(x, first: first, count: count, into: v, vLayout, scratch: buffer.baseAddress!)
            tiles.transformOutputGradients(dy, first: first, count: count, into: d, dLayout, biasSum: biasSum, scratch: buffer.baseAddress!)
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// One block of one sample group's dW: Σ over its `count` tiles of V[ξ][t]ᵀ·D[ξ][t], `rows` input
/// channels × `columns` output channels from `v` and `d` on (a block of what
/// `winogradGradientOperands` wrote), then transformed back into `dw` as [ky][kx][rows][columns]. `du` holds
/// positions × rows × columns floats. The products and transforms are those of
/// `winogradWeightGradientTiles` and `winogradWeightsFromGradient`, so the block has the bits of
/// the same entries of the whole group's dW.
public func winogradWeightGradientBlock(m: Int, count: Int, v: UnsafePointer<Float>, vPerPosition: Int, vRow: Int,
                                        d: UnsafePointer<Float>, dPerPosition: Int, dRow: Int, rows: Int, columns: Int,
                                        du: UnsafeMutablePointer<Float>, into dw: UnsafeMutablePointer<Float>) {
    let plane = winogradGradientPlaneStride(count: rows * columns)
    for xi in 0..<winogradPositions(m: m) {
        transposedProduct(count: count, a: v + xi * vPerPosition, lda: vRow, rows: rows, b: d + xi * dPerPosition, ldb: dRow,
                          columns: columns, c: du + xi * plane, ldc: columns, accumulate: false)
    }
    winogradWeightsFromGradient(m: m, count: rows * columns, transformedGradient: du, into: dw)
}

/// dW[ky][kx] = (Gᵀ·dU·G)[ky][kx] for every entry of a plane of `count` floats (Cin × Cout, or
/// a block's rows × columns; a multiple of 16): dU as [ξ][plane] with planes
/// `winogradGradientPlaneStride` apart, dW as [ky][kx][plane].
public func winogradWeightsFromGradient(m: Int, count: Int, transformedGradient du: UnsafePointer<Float>,
                                        into dw: UnsafeMutablePointer<Float>) {
    func run<W: WinogradTransforms>(_: W.Type) {
        let alpha = W.alpha, plane = winogradGradientPlaneStride(count: count)
        withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 3 * alpha) { buffer in
            let h = buffer.baseAddress!
            for e in stride(from: 0, to: count, by: 16) {
                for k in 0..<alpha {
                    W.weightGradient({ load(du + ($0 * alpha + k) * plane + e) }, { h[$0 * alpha + k] = $1 })
                }
                for ky in 0..<3 {
                    W.weightGradient({ h[ky * alpha + $0] }, { kx, value in store(dw + (ky * 3 + kx) * count + e, value) })
                }
            }
        }
    }
    m == 2 ? run(WinogradF2.self) : run(WinogradF4.self)
}

/// The output tiles of a shape, numbered image by image, row by row.
private struct Tiles<W: WinogradTransforms> {
    let g: ConvGeometry
    let high: Int, wide: Int
    init(_ g: ConvGeometry) {
        self.g = g
        (high, wide) = ((g.outHeight + W.m - 1) / W.m, (g.outWidth + W.m - 1) / W.m)
    }

    /// The image and the top-left output pixel of `tile`.
    @inline(__always) func origin(_ tile: Int) -> (image: Int, y: Int, x: Int) {
        let image = tile / (high * wide), rest = tile % (high * wide)
        return (image, W.m * (rest / wide), W.m * (rest % wide))
    }

    /// V[ξ][t][ci] = (Bᵀ·d·B)[ξ] for the α×α input blocks d of tiles first..<first+count, into
    /// `v` as `layout` says. `e` holds α² vectors of scratch.
    @inline(__always)
    func transformInputs(_ x: UnsafePointer<Float>, first: Int, count: Int, into v: UnsafeMutablePointer<Float>,
                         _ layout: OperandLayout, scratch e: UnsafeMutablePointer<SIMD16<Float>>) {
        let cin = g.inChannels, alpha = W.alpha, perPosition = layout.perPosition
        for t in 0..<count {
            let (image, oy, ox) = origin(first + t)
            let iy = oy - g.padding, ix = ox - g.padding
            let base = x + image * g.height * g.width * cin
            let row = v + t * layout.row
            layout.forEachVector(channels: cin) { offset, c in
                let out = row + offset
                @inline(__always) func d(_ r: Int, _ q: Int) -> SIMD16<Float> {
                    let yy = iy + r, xx = ix + q
                    if yy < 0 || yy >= g.height || xx < 0 || xx >= g.width { return SIMD16() }
                    return load(base + (yy * g.width + xx) * cin + c)
                }
                for q in 0..<alpha { W.input({ d($0, q) }, { e[$0 * alpha + q] = $1 }) }
                for r in 0..<alpha {
                    W.input({ e[r * alpha + $0] }, { store(out + (r * alpha + $0) * perPosition, $1) })
                }
            }
        }
    }

    /// Y = Aᵀ·M·A, finished by `epilogue`, for tiles first..<first+count, M read from `product`
    /// as `layout` says, skipping pixels past the edge.
    @inline(__always)
    func transformOutputs(_ product: UnsafePointer<Float>, _ layout: OperandLayout, first: Int, count: Int,
                          epilogue: OutputEpilogue, into y: UnsafeMutablePointer<Float>, scratch e: UnsafeMutablePointer<SIMD16<Float>>) {
        let oh = g.outHeight, ow = g.outWidth, cout = g.outChannels, alpha = W.alpha, perPosition = layout.perPosition
        let relu = epilogue.relu, zero = SIMD16<Float>()
        for t in 0..<count {
            let (image, oy, ox) = origin(first + t)
            let rows = min(W.m, oh - oy), columns = min(W.m, ow - ox)
            let out = y + ((image * oh + oy) * ow + ox) * cout
            let row = product + t * layout.row
            layout.forEachVector(channels: cout) { offset, c in
                let src = row + offset
                for q in 0..<alpha {
                    W.output({ load(src + ($0 * alpha + q) * perPosition) }, { e[$0 * alpha + q] = $1 })
                }
                let b = epilogue.bias.map { load($0 + c) }
                for i in 0..<rows {
                    W.output({ e[i * alpha + $0] }, { j, value in
                        guard j < columns else { return }
                        let at = (i * ow + j) * cout + c
                        var v = value
                        if let b { v += b }
                        // max(v, 0) as the separate pass takes it (0 for NaN), by a select:
                        // the standard library's pointwiseMax was a call per vector here, lane by lane.
                        if relu { v = zero.replacing(with: v, where: v .> zero) }
                        store(out + at, v)
                    })
                }
            }
        }
    }

    /// D[ξ][t][co] = (A·dY·Aᵀ)[ξ] for the m×m output-gradient blocks of tiles first..<first+count
    /// (zero past the image's edge), into `d` as `layout` says; and each tile's Σ dY added to
    /// `biasSum`, tile by tile, unless it is nil.
    @inline(__always)
    func transformOutputGradients(_ dy: UnsafePointer<Float>, first: Int, count: Int, into d: UnsafeMutablePointer<Float>,
                                  _ layout: OperandLayout, biasSum: UnsafeMutablePointer<Float>?,
                                  scratch e: UnsafeMutablePointer<SIMD16<Float>>) {
        let oh = g.outHeight, ow = g.outWidth, cout = g.outChannels, alpha = W.alpha, perPosition = layout.perPosition
        for t in 0..<count {
            let (image, oy, ox) = origin(first + t)
            let rows = min(W.m, oh - oy), columns = min(W.m, ow - ox)
            let src = dy + ((image * oh + oy) * ow + ox) * cout
            let row = d + t * layout.row
            layout.forEachVector(channels: cout) { offset, c in
                let out = row + offset
                @inline(__always) func gradient(_ i: Int, _ j: Int) -> SIMD16<Float> {
                    i < rows && j < columns ? load(src + (i * ow + j) * cout + c) : SIMD16()
                }
                if let biasSum {
                    var total = SIMD16<Float>()
                    for i in 0..<rows { for j in 0..<columns { total += gradient(i, j) } }
                    store(biasSum + c, load(biasSum + c) + total)
                }
                for j in 0..<W.m { W.outputGradient({ gradient($0, j) }, { e[$0 * W.m + j] = $1 }) }
                for i in 0..<alpha {
                    W.outputGradient({ e[i * W.m + $0] }, { store(out + (i * alpha + $0) * perPosition, $1) })
                }
            }
        }
    }
}
