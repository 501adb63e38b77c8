import ConvKernels
import ConvKernelsAVX512
import Foundation

/// Winograd convolution for 3x3 stride-1 layers: the algebra is in ConvKernels/WinogradTransforms.swift,
/// the per-task work in ConvKernels/WinogradTiles.swift; this file chooses the algorithm, sizes
/// the scratch, splits the work and adds the partial sums (the splits for layers that outgrow L2
/// are in WinogradSplits.swift).
///
/// Work is split by the shape alone: convolution tasks of `tilesPerTask` consecutive tiles or
/// of one position and 128 tiles (`WinogradConvolutionSplit`), and for the weight gradient tasks
/// per sample group (`SampleGroups`) or per block of channels (`WinogradGradientSplit`), whose
/// partial sums are added in the groups' tree order, so the results depend neither on the number
/// of threads nor on the number of ranks sharing the batch.
public enum WinogradAlgorithm: String, Sendable {
    case f2x2 = "F(2x2,3x3)", f4x4 = "F(4x4,3x3)"

    /// The side of an output tile.
    var m: Int { self == .f2x2 ? 2 : 4 }
    var positions: Int { ConvKernels.winogradPositions(m: m) }
    var tilesPerTask: Int { ConvKernels.winogradTilesPerTask(m: m) }

    /// Per-worker scratch floats: transformed inputs and products (or output gradients).
    func scratchCount(inChannels: Int, outChannels: Int) -> Int { positions * tilesPerTask * (inChannels + outChannels) }
    /// Floats of transformed weights: positions × K × N padded to whole slivers.
    func weightCount(k: Int, n: Int) -> Int { positions * k * ((n + 31) / 32 * 32) }
    func tiles(_ s: ConvShape) -> Int { s.batch * tilesPerImage(s) }
    /// Tiles of one image (tiles are numbered image by image).
    func tilesPerImage(_ s: ConvShape) -> Int { ((s.outHeight + m - 1) / m) * ((s.outWidth + m - 1) / m) }
    /// Floats of one group's partial sums: dU's planes, then the bias gradient.
    func gradientSliceCount(_ s: ConvShape) -> Int { gradientPlanesCount(rows: s.inChannels, columns: s.outChannels) + s.outChannels }
    /// Floats of dU's planes for `rows` input × `columns` output channels.
    func gradientPlanesCount(rows: Int, columns: Int) -> Int { positions * ConvKernels.winogradGradientPlaneStride(count: rows * columns) }
    /// Floats of one group's dW, then its bias gradient.
    func weightSliceCount(_ s: ConvShape) -> Int { s.weightCount + s.outChannels }
}

extension ConvShape {
    /// The Winograd algorithm of the forward pass and the input gradient, if any: `winograd`,
    /// unless the layer runs on pixel pairs, which come first. The forward's output transform
    /// takes the ReLU after the layer on the way out (`OutputEpilogue`).
    public var winogradDataPasses: WinogradAlgorithm? { usesPixelPairs ? nil : winograd }

    /// The Winograd algorithm this convolution runs, if any: 3x3, stride 1, and channel counts
    /// that are whole SIMD16 vectors. F(4x4) where its three passes do fewer products than
    /// F(2x2)'s (`products`): from 7 pixels a side, and at 3 and 4, where one 4x4 tile covers
    /// the image. Where the counts tie (5 and 6 pixels) F(2x2)'s cheaper transforms win.
    /// Measured with `ddptrain bench` on two-layer models (Zen4, 2 threads, forward and backward
    /// alike): F(4x4) took 7–37 % less time than F(2x2) at 4x4 pixels from 16 to 512 channels
    /// (VGG-11's conv5 and conv6), 14–34 % at 7x7, 20–30 % at 3x3 with 256 channels (the same
    /// with 64); at 6x6, F(2x2) took 10–30 % less.
    /// `DDPTRAIN_WINOGRAD=0` turns Winograd off, `=2` or `=4` forces one algorithm, for comparison.
    public var winograd: WinogradAlgorithm? {
        guard kernelHeight == 3 && kernelWidth == 3 && stride == 1 && padding <= 2
                && inChannels % 16 == 0 && outChannels % 16 == 0 else { return nil }
        switch winogradSetting {
        case "0": return nil
        case "2": return .f2x2
        case "4": return .f4x4
        default: return products(.f4x4) < products(.f2x2) ? .f4x4 : .f2x2
        }
    }

    /// Per-position products per image and channel pair of `algorithm`'s three passes: the
    /// forward pass and the weight gradient over the output's tiles, the input gradient over the input's.
    func products(_ algorithm: WinogradAlgorithm) -> Int {
        algorithm.positions * (2 * algorithm.tilesPerImage(self) + algorithm.tilesPerImage(inputGradientConvolution))
    }
}

private let winogradSetting = ProcessInfo.processInfo.environment["DDPTRAIN_WINOGRAD"]

/// The output transform's epilogue (`ConvKernels.OutputEpilogue`), for either kernel set.
struct OutputEpilogue {
    var bias: UnsafePointer<Float>? = nil, relu = false
    var avx2: ConvKernels.OutputEpilogue { .init(bias: bias, relu: relu) }
    var avx512: ConvKernelsAVX512.OutputEpilogue { .init(bias: bias, relu: relu) }
}

extension ConvWorkspace {
    /// Y = conv(X, W) (+ bias), then max(·, 0) with `relu`.
    func winogradForward(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                         weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, relu: Bool, output y: UnsafeMutablePointer<Float>) {
        transformForwardWeights(algorithm, s, w)
        convolve(algorithm, s, input: x, epilogue: OutputEpilogue(bias: bias, relu: relu), output: y)
    }

    /// The forward pass's U: W as [ky][kx][ci][co], rows input channels.
    func transformForwardWeights(_ algorithm: WinogradAlgorithm, _ s: ConvShape, _ w: UnsafePointer<Float>) {
        let cin = s.inChannels, cout = s.outChannels
        transformWeights(algorithm, k: cin, n: cout, (origin: w, yStride: 3 * cin * cout, xStride: cin * cout, kStride: cout, nStride: 1))
    }

    /// dX = the convolution of dY, padded by 2 − padding, with the flipped, channel-transposed kernel.
    func winogradBackwardData(_ algorithm: WinogradAlgorithm, _ s: ConvShape, outputGradient dy: UnsafePointer<Float>,
                              weights w: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>) {
        let cin = s.inChannels, cout = s.outChannels
        // Tap (ky, kx) of the flipped kernel is (2 − ky, 2 − kx); rows are output channels.
        let flipped = (origin: w + 8 * cin * cout, yStride: -3 * cin * cout, xStride: -cin * cout, kStride: 1, nStride: cout)
        transformWeights(algorithm, k: cout, n: cin, flipped)
        convolve(algorithm, s.inputGradientConvolution, input: dy, epilogue: OutputEpilogue(), output: dx)
    }

    /// dW and dBias (both overwritten; no bias work when `db` is nil), split by groups unless
    /// `gradientByBlocks` says otherwise (the same bits either way): each sample group sums its
    /// tiles' terms (dU) into its own slice of `partials` and transforms them back to its dW
    /// (after the slices, `weightSliceCount` floats a group); the groups' dW are then added in
    /// their tree order. Transforming before adding keeps the sum one over samples: a rank's dW
    /// is then exactly its subtree of the sum one rank computes alone, which summing dU first and
    /// transforming the total would not be (the transform does not commute with rounding). Under
    /// `bfloat16Products` the tiles' terms are summed in bf16 (`bfloat16WeightGradientTiles`).
    func winogradBackwardWeights(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                                 outputGradient dy: UnsafePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
                                 biasGradient db: UnsafeMutablePointer<Float>?) {
        if algorithm.gradientByBlocks(s, winogradGradientSplit, groupSize: pool.sampleGroups.size) {
            winogradBackwardWeightsByBlocks(algorithm, s, input: x, outputGradient: dy, weightGradient: dw, biasGradient: db)
            return
        }
        let sampleGroups = pool.sampleGroups, groups = sampleGroups.count(batch: s.batch)
        let slice = algorithm.gradientSliceCount(s), tilesPerImage = algorithm.tilesPerImage(s)
        let products = algorithm.gradientPlanesCount(rows: s.inChannels, columns: s.outChannels), withBias = db != nil
        let partials = self.partials, scratch = winogradScratch, perWorker = winogradPerWorker, m = algorithm.m
        let kernels = self.kernels.forColumns(s.outChannels)
        let weightSlice = algorithm.weightSliceCount(s), weightPartials = partials + groups * slice
        let cin = s.inChannels, cout = s.outChannels, weights = s.weightCount, bfloat16 = bfloat16Products(algorithm)
        pool.run(tasks: groups) { group, worker in
            let sum = partials + group * slice, out = weightPartials + group * weightSlice
            sum.update(repeating: 0, count: withBias ? slice : products)
            let images = sampleGroups.samples(group, batch: s.batch)
            let first = images.lowerBound * tilesPerImage, end = images.upperBound * tilesPerImage
            switch (kernels, bfloat16) {
            case (_, true):
                bfloat16WeightGradientTiles(algorithm, s, input: x, outputGradient: dy, tiles: first..<end, into: sum,
                                            biasGradient: withBias, worker: worker)
            case (.avx2, false):
                ConvKernels.winogradWeightGradientTiles(m: m, s.geometry, input: x, outputGradient: dy, first: first, end: end,
                                                        into: sum, biasGradient: withBias, scratch: scratch + worker * perWorker)
            case (.avx512, false):
                ConvKernelsAVX512.winogradWeightGradientTiles(m: m, s.geometry.avx512, input: x, outputGradient: dy, first: first, end: end,
                                                              into: sum, biasGradient: withBias, scratch: scratch + worker * perWorker)
            }
            switch kernels {
            case .avx2: ConvKernels.winogradWeightsFromGradient(m: m, count: cin * cout, transformedGradient: sum, into: out)
            case .avx512: ConvKernelsAVX512.winogradWeightsFromGradient(m: m, count: cin * cout, transformedGradient: sum, into: out)
            }
            if withBias { (out + weights).update(from: sum + products, count: cout) }
        }
        addSlicesInTree(weightPartials, slice: weightSlice, count: withBias ? weightSlice : weights, groups: groups, pool: pool)
        dw.update(from: weightPartials, count: weights)
        db?.update(from: weightPartials + weights, count: cout)
    }

    /// The 3x3 kernel whose tap (ky, kx) of row k, column n is at `origin + ky·yStride +
    /// kx·xStride + k·kStride + n·nStride`, transformed into `packedWeights`, one task per
    /// sliver of columns and run of `transformRows` rows.
    func transformWeights(_ algorithm: WinogradAlgorithm, k: Int, n: Int,
                                  _ g: (origin: UnsafePointer<Float>, yStride: Int, xStride: Int, kStride: Int, nStride: Int)) {
        let u = packedWeights, kernels = self.kernels.forColumns(n), m = algorithm.m
        let slivers = (n + kernels.sliverWidth - 1) / kernels.sliverWidth, runs = (k + transformRows - 1) / transformRows
        pool.run(tasks: slivers * runs) { task, _ in
            let sliver = task % slivers, first = task / slivers * transformRows, rows = first..<min(k, first + transformRows)
            switch kernels {
            case .avx2:
                let taps = ConvKernels.KernelTaps(origin: g.origin, yStride: g.yStride, xStride: g.xStride, kStride: g.kStride, nStride: g.nStride)
                ConvKernels.winogradTransformWeights(m: m, k: k, n: n, rows: rows, sliver: sliver, into: u, taps: taps)
            case .avx512:
                let taps = ConvKernelsAVX512.KernelTaps(origin: g.origin, yStride: g.yStride, xStride: g.xStride, kStride: g.kStride,
                                                        nStride: g.nStride)
                ConvKernelsAVX512.winogradTransformWeights(m: m, k: k, n: n, rows: rows, sliver: sliver, into: u, taps: taps)
            }
        }
    }

    /// Y = conv(X, U), finished by `epilogue`, with U in `packedWeights`, in tasks of `tilesPerTask` tiles.
    private func convolve(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                          epilogue: OutputEpilogue, output y: UnsafeMutablePointer<Float>) {
        if algorithm.convolvesByPositions(s, winogradConvolutionSplit) {
            convolveByPositions(algorithm, s, input: x, epilogue: epilogue, output: y)
            return
        }
        if bfloat16Products(algorithm) {
            bfloat16Convolve(algorithm, s, input: x, epilogue: epilogue, output: y)
            return
        }
        let tiles = algorithm.tiles(s), perTask = algorithm.tilesPerTask
        let u = UnsafePointer(packedWeights), scratch = winogradScratch, perWorker = winogradPerWorker, m = algorithm.m
        let kernels = self.kernels.forColumns(s.outChannels)
        pool.run(tasks: (tiles + perTask - 1) / perTask) { task, worker in
            let first = task * perTask, count = min(perTask, tiles - first)
            switch kernels {
            case .avx2:
                ConvKernels.winogradConvolveTiles(m: m, s.geometry, input: x, transformedWeights: u, epilogue: epilogue.avx2, output: y,
                                                  first: first, count: count, scratch: scratch + worker * perWorker)
            case .avx512:
                ConvKernelsAVX512.winogradConvolveTiles(m: m, s.geometry.avx512, input: x, transformedWeights: u, epilogue: epilogue.avx512,
                                                        output: y,
                                                        first: first, count: count, scratch: scratch + worker * perWorker)
            }
        }
    }
}
