import CBFloat16
import ConvKernelsAVX512

/// Winograd F(2x2) convolution with its per-position products in bfloat16 (`Precision.bfloat16`): the
/// transforms run in float32 as in Winograd.swift, their results are rounded to bfloat16 pairs
/// (CBFloat16), and the products accumulate in float32. The work is split as in float32 (the
/// convolution by tiles here, or by positions in WinogradSplits.swift; the weight gradient by
/// sample groups here, while its split by blocks stays float32), so results depend neither on
/// the number of threads nor on the number of ranks sharing the batch.
///
/// Pair layouts (a pair is two bfloat16 values in 32 bits; see bf16_kernels.h):
/// - transformed weights U: [ξ][K/2][N], a pair of rows per word, so the product broadcasts a
///   tile's pair of channels and multiplies it by 16 columns' pairs at once;
/// - a convolution's transformed inputs V: [ξ][t][Cin/2], each row's channels paired in place;
/// - the weight gradient's V and D: [ξ][t/2][C], two tiles' values per word, since its sums run over tiles.
extension ConvWorkspace {
    /// Whether a layer running `algorithm` multiplies in bf16: F(2x2) layers in `Precision.bfloat16`.
    /// F(4x4) layers stay float32. Its transforms amplify the operands' rounding: against
    /// float32, bf16 F(4x4) was off by 22–31 % of the outputs' rms in the worst element, bf16
    /// F(2x2) by 1.4–2.0 %, about what rounding a direct convolution's operands gives
    /// (BFloat16ProductTests). And running those layers as bf16 F(2x2) instead, with 1.78x
    /// F(4x4)'s products, was no faster than float32 F(4x4) (model M, see BENCHMARKS.md; at
    /// VGG-11's 4x4 layers bf16 F(2x2) was 1–1.5 ms faster forward and the same backward).
    func bfloat16Products(_ algorithm: WinogradAlgorithm) -> Bool { precision == .bfloat16 && algorithm == .f2x2 }

    /// Whether any pass of `s` multiplies in bf16, for reports: the forward pass and input
    /// gradient of F(2x2) layers (not those on pixel pairs), and their weight gradient where it is
    /// split by sample groups (the split by blocks stays float32).
    public func multipliesInBFloat16(_ s: ConvShape) -> Bool {
        guard let algorithm = s.winograd, bfloat16Products(algorithm) else { return false }
        return s.winogradDataPasses != nil || !algorithm.gradientByBlocks(s, winogradGradientSplit, groupSize: pool.sampleGroups.size)
    }

    /// Y = conv(X, U), finished by `epilogue`, with the transformed weights in `packedWeights`, in
    /// tasks of `tilesPerTask` tiles: the float32 path's `convolve` with the products in bfloat16.
    func bfloat16Convolve(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                          epilogue: OutputEpilogue, output y: UnsafeMutablePointer<Float>) {
        let cin = s.inChannels, cout = s.outChannels, m = algorithm.m, positions = algorithm.positions
        let tiles = algorithm.tiles(s), perTask = algorithm.tilesPerTask, inPairs = cin / 2
        let u = pairWeights(algorithm, k: cin, n: cout), uPerPosition = inPairs * cout
        let scratch = winogradScratch, perWorker = winogradPerWorker, pairScratch = bfloat16Scratch, pairsPerWorker = bfloat16PerWorker
        let vLayout = OperandLayout(row: cin, tiles: perTask, positions: positions)
        let mLayout = OperandLayout(row: cout, tiles: perTask, positions: positions)
        pool.run(tasks: (tiles + perTask - 1) / perTask) { task, worker in
            let first = task * perTask, count = min(perTask, tiles - first)
            let v = scratch + worker * perWorker, products = v + positions * vLayout.perPosition
            let vPairs = pairScratch + worker * pairsPerWorker
            ConvKernelsAVX512.winogradInputTiles(m: m, s.geometry.avx512, input: x, first: first, count: count, v: v, vLayout.avx512)
            for xi in 0..<positions {
                let a = vPairs + xi * perTask * inPairs
                ddp_bf16_round_rows(v + xi * vLayout.perPosition, cin, count, cin, a, inPairs)
                ddp_bf16_gemm(inPairs, a, inPairs, 1, count, u + xi * uPerPosition, cout, cout,
                              products + xi * mLayout.perPosition, cout, 0)
            }
            ConvKernelsAVX512.winogradOutputTiles(m: m, s.geometry.avx512, products: products, mLayout.avx512, first: first,
                                                  count: count, epilogue: epilogue.avx512, output: y)
        }
    }

    /// The transformed weights in `packedWeights` (float32 slivers, [ξ][sliver][K][sliverWidth],
    /// as `transformWeights` packed them for its kernel set) as bfloat16 pairs [ξ][K/2][N], one
    /// task per position.
    func pairWeights(_ algorithm: WinogradAlgorithm, k: Int, n: Int) -> UnsafeMutablePointer<UInt32> {
        let u = packedWeights, pairs = bfloat16Weights, width = kernels.forColumns(n).sliverWidth
        let perPosition = k * ((n + width - 1) / width * width)
        pool.run(tasks: algorithm.positions) { xi, _ in
            for sliver in 0..<(n + width - 1) / width {
                let column = sliver * width
                ddp_bf16_interleave_rows(u + xi * perPosition + sliver * k * width, width, k, min(width, n - column),
                                         pairs + xi * (k / 2) * n + column, n)
            }
        }
        return pairs
    }

    /// Adds to `sum` the weight-gradient terms of `tiles`, dU[ξ] += Σ_t V[ξ][t]ᵀ·D[ξ][t] in bfloat16,
    /// and after the positions' planes Σ dY when `biasGradient`: what
    /// `ConvKernels.winogradWeightGradientTiles` adds for one sample group in `winogradBackwardWeights`,
    /// in chunks of `tilesPerTask` tiles, two tiles a pair.
    func bfloat16WeightGradientTiles(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                                     outputGradient dy: UnsafePointer<Float>, tiles: Range<Int>, into sum: UnsafeMutablePointer<Float>,
                                     biasGradient: Bool, worker: Int) {
        let cin = s.inChannels, cout = s.outChannels, m = algorithm.m, positions = algorithm.positions
        let perTask = algorithm.tilesPerTask, tilePairs = (perTask + 1) / 2
        let plane = ConvKernelsAVX512.winogradGradientPlaneStride(count: cin * cout)
        let products = algorithm.gradientPlanesCount(rows: cin, columns: cout)
        let vLayout = OperandLayout(row: cin, tiles: perTask, positions: positions)
        let dLayout = OperandLayout(row: cout, tiles: perTask, positions: positions)
        let v = winogradScratch + worker * winogradPerWorker, d = v + positions * vLayout.perPosition
        let vPairs = bfloat16Scratch + worker * bfloat16PerWorker, dPairs = vPairs + positions * tilePairs * cin
        for first in stride(from: tiles.lowerBound, to: tiles.upperBound, by: perTask) {
            let count = min(perTask, tiles.upperBound - first)
            ConvKernelsAVX512.winogradGradientOperands(m: m, s.geometry.avx512, input: x, outputGradient: dy, first: first,
                                                       count: count, v: v, vLayout.avx512, d: d, dLayout.avx512,
                                                       biasSum: biasGradient ? sum + products : nil)
            for xi in 0..<positions {
                let a = vPairs + xi * tilePairs * cin, b = dPairs + xi * tilePairs * cout
                ddp_bf16_interleave_rows(v + xi * vLayout.perPosition, cin, count, cin, a, cin)
                ddp_bf16_interleave_rows(d + xi * dLayout.perPosition, cout, count, cout, b, cout)
                ddp_bf16_gemm((count + 1) / 2, a, 1, cin, cin, b, cout, cout, sum + xi * plane, cout, 1)
            }
        }
    }
}

extension WinogradAlgorithm {
    /// Pairs of one worker's bfloat16 scratch: a task's transformed inputs (convolution), or its
    /// transformed inputs and output gradients two tiles a word (weight gradient).
    func bfloat16ScratchCount(inChannels: Int, outChannels: Int) -> Int {
        positions * ((tilesPerTask + 1) / 2) * (inChannels + outChannels)
    }
    /// Pairs of transformed weights: positions × K/2 × N.
    func bfloat16WeightCount(k: Int, n: Int) -> Int { positions * ((k + 1) / 2) * n }
}
