import ConvKernels
import ConvKernelsAVX512
import Foundation

/// Convolution without an im2col buffer: the register tiles read their pixels straight from the
/// NHWC image (see ConvKernels/ConvTiles.swift). This file splits the work into tasks and picks
/// the kernels for the CPU.

/// Which compiled kernels run: AVX-512 (6x32 tiles in zmm registers) where the CPU has it, else
/// AVX2+FMA (6x16 tiles in ymm pairs). One binary serves both; `DDPTRAIN_KERNELS=avx2` forces
/// the baseline. Both sum every output in the same order, so they give identical results.
public enum ConvKernelSet: String, Sendable {
    case avx2, avx512

    /// What this machine should run, decided once per process.
    public static let best: ConvKernelSet = detect()

    /// The CPU's feature flags, as /proc/cpuinfo names them.
    static let cpuFlags: Set<String> = {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard let flags = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(flags.split(separator: " ").map(String.init))
    }()

    public static var cpuSupportsAVX512: Bool {
        // x86-64-v4, what ConvKernelsAVX512 is compiled for.
        ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"].allSatisfy(cpuFlags.contains)
    }

    static func detect() -> ConvKernelSet {
        if ProcessInfo.processInfo.environment["DDPTRAIN_KERNELS"] == "avx2" { return .avx2 }
        return cpuSupportsAVX512 ? .avx512 : .avx2
    }

    public var description: String {
        switch self {
        case .avx2: return "AVX2+FMA, 6x16 register tiles (12 ymm accumulators)"
        case .avx512: return "AVX-512, 6x32 register tiles (12 zmm accumulators)"
        }
    }

    /// The kernels for a product of `columns` output columns: on AVX-512, a column count that is
    /// not whole 32-wide slivers (16, 48) runs on the AVX2 tiles. The zmm tiles would run half
    /// empty, and their edge tiles copy each row of B into padding: ResNet-20's 16-channel
    /// Winograd layers took 3.3x as long backward (9.4 against 2.8 ms) and its first layer's
    /// weight gradient 4.8x. Both kernel sets give the same bits, so this changes only the speed.
    func forColumns(_ columns: Int) -> ConvKernelSet {
        self == .avx512 && columns % ConvKernelsAVX512.sliverWidth != 0 ? .avx2 : self
    }

    /// Output channels per packed weight sliver.
    var sliverWidth: Int { self == .avx512 ? ConvKernelsAVX512.sliverWidth : ConvKernels.sliverWidth }
    /// Rows per full weight-gradient (outer-product) tile.
    var outerProductRows: Int { self == .avx512 ? ConvKernelsAVX512.outerProductTileRows : ConvKernels.outerProductTileRows }
}

extension ConvShape {
    var geometry: ConvKernels.ConvGeometry {
        .init(batch: batch, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
              kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: padding)
    }
}

/// `DDPTRAIN_NARROW_TILES=0` keeps products of at most 8 output channels on the wide tiles, for comparison.
private let narrowTilesEnabled = ProcessInfo.processInfo.environment["DDPTRAIN_NARROW_TILES"] != "0"

extension ConvKernelSet {
    /// Whether products with `columns` output channels run on the narrow tiles (NarrowTiles.swift),
    /// with weights packed `narrowWidth` floats per row.
    public func narrow(columns: Int) -> Bool { narrowTilesEnabled && columns <= ConvKernels.narrowWidth }

    /// Slivers of packed weights for `columns` output channels: one narrow row set, or whole slivers.
    func slivers(columns: Int) -> Int { narrow(columns: columns) ? 1 : (columns + sliverWidth - 1) / sliverWidth }

    /// Floats of a K×N matrix packed by `packConvWeights`.
    func packedCount(k: Int, n: Int) -> Int {
        k * (narrow(columns: n) ? ConvKernels.narrowWidth : slivers(columns: n) * sliverWidth)
    }
}

/// Packs a K×N weight matrix, given element-wise, for `kernels`: narrow rows for N ≤ 8, else slivers.
func packConvWeights(_ kernels: ConvKernelSet, k: Int, n: Int, into dst: UnsafeMutablePointer<Float>,
                     _ element: (_ row: Int, _ column: Int) -> Float) {
    if kernels.narrow(columns: n) {
        ConvKernels.packNarrowWeights(k: k, n: n, into: dst, element)
        return
    }
    switch kernels {
    case .avx2: ConvKernels.packWeightSlivers(k: k, n: n, into: dst, element)
    case .avx512: ConvKernelsAVX512.packWeightSlivers(k: k, n: n, into: dst, element)
    }
}

/// C = A·B for A's rows (kc floats each) at a + i·lda, read in place, and B packed by
/// `packConvWeights`: the GEMM tile, or the narrow tile for at most 8 columns.
func multiplyRows(_ kernels: ConvKernelSet, kc: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                  packedB b: UnsafePointer<Float>, columns: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    switch (kernels, kernels.narrow(columns: columns)) {
    case (.avx2, true):
        ConvKernels.gemmBlockNarrow(kc: kc, a: a, lda: lda, rows: rows, packedB: b, columns: columns, c: c, ldc: ldc)
    case (.avx512, true):
        ConvKernelsAVX512.gemmBlockNarrow(kc: kc, a: a, lda: lda, rows: rows, packedB: b, columns: columns, c: c, ldc: ldc)
    case (.avx2, false):
        ConvKernels.gemmBlock(kc: kc, a: a, lda: lda, rows: rows, packedB: b, columns: columns, c: c, ldc: ldc)
    case (.avx512, false):
        ConvKernelsAVX512.gemmBlock(kc: kc, a: a, lda: lda, rows: rows, packedB: b, columns: columns, c: c, ldc: ldc)
    }
}

/// Output pixels first..<last of `g`, one sliver of its output channels (all of them on the
/// narrow tile), with weights packed by `packConvWeights`.
func convolveRows(_ kernels: ConvKernelSet, _ g: ConvKernels.ConvGeometry, input x: UnsafePointer<Float>,
                  packedWeights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>,
                  zeros: UnsafePointer<Float>, first: Int, last: Int, sliver: Int) {
    // Nothing compiled for AVX-512 may run on a CPU without it, not even a geometry's init.
    switch (kernels, kernels.narrow(columns: g.outChannels)) {
    case (.avx2, true):
        ConvKernels.convolveRowsNarrow(g, input: x, packedWeights: w, bias: bias, output: y, zeros: zeros, first: first, last: last)
    case (.avx512, true):
        ConvKernelsAVX512.convolveRowsNarrow(g.avx512, input: x, packedWeights: w, bias: bias, output: y, zeros: zeros,
                                             first: first, last: last)
    case (.avx2, false):
        ConvKernels.convolveRows(g, input: x, packedWeights: w, bias: bias, output: y, zeros: zeros,
                                 first: first, last: last, sliver: sliver)
    case (.avx512, false):
        ConvKernelsAVX512.convolveRows(g.avx512, input: x, packedWeights: w, bias: bias, output: y, zeros: zeros,
                                       first: first, last: last, sliver: sliver)
    }
}

extension ConvKernels.ConvGeometry {
    /// The same geometry for the AVX-512 module.
    var avx512: ConvKernelsAVX512.ConvGeometry {
        .init(batch: batch, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
              kernelHeight: kernelHeight, kernelWidth: kernelWidth, paddingTop: paddingTop, paddingLeft: paddingLeft,
              outHeight: outHeight, outWidth: outWidth, stride: stride)
    }
}

extension ConvShape {
    /// Whether the direct path first copies the input into zero-padded images: for narrow
    /// outputs, whose 12-pixel tiles span whole rows of a small image and would otherwise take
    /// the per-tap path at nearly every pixel (the flipped convolution of a 10x10 output padded
    /// by 4, say). The padding's taps are the same zeros either way, so the sums are the same bits.
    func directPadsInput(_ kernels: ConvKernelSet) -> Bool { padding > 0 && kernels.narrow(columns: outChannels) }

    /// The convolution of one zero-padded image.
    var paddedImage: ConvShape {
        ConvShape(batch: 1, height: height + 2 * padding, width: width + 2 * padding, inChannels: inChannels,
                  outChannels: outChannels, kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: 0)
    }
}

extension ConvWorkspace {
    /// Y = conv(X, W) + bias for NHWC X and weights packed by `packConvWeights`. Tasks are blocks
    /// of 96 output pixels × one weight sliver, or images where the input is padded first.
    func convolveDirect(_ s: ConvShape, input x: UnsafePointer<Float>, packedWeights w: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>) {
        let kernels = self.kernels, zeros = UnsafePointer(self.zeros)
        if s.directPadsInput(kernels) {
            // One task per image, padded into the worker's scratch.
            let padded = s.paddedImage, perWorker = padded.inputCount, scratch = columns
            let perImage = s.height * s.width * s.inChannels, outputs = s.outHeight * s.outWidth
            precondition(columnCapacity >= pool.threads * perWorker, "conv workspace too small for \(s)")
            pool.run(tasks: s.batch) { n, worker in
                let image = scratch + worker * perWorker
                pad(s, image: x + n * perImage, into: image)
                convolveRows(kernels, padded.geometry, input: image, packedWeights: w, bias: bias, output: y + n * outputs * s.outChannels,
                             zeros: zeros, first: 0, last: outputs, sliver: 0)
            }
            return
        }
        let slivers = kernels.slivers(columns: s.outChannels)
        let rowsPerTask = 96
        let blocks = (s.outputPixels + rowsPerTask - 1) / rowsPerTask
        pool.run(tasks: blocks * slivers) { task, _ in
            let first = (task / slivers) * rowsPerTask, last = min(s.outputPixels, first + rowsPerTask)
            convolveRows(kernels, s.geometry, input: x, packedWeights: w, bias: bias, output: y, zeros: zeros,
                         first: first, last: last, sliver: task % slivers)
        }
    }
}

/// Copies one image into the middle of a zeroed image `s.padding` larger on every side.
private func pad(_ s: ConvShape, image x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    let p = s.padding, cin = s.inChannels, width = s.width + 2 * p, run = s.width * cin
    out.update(repeating: 0, count: (s.height + 2 * p) * width * cin)
    for iy in 0..<s.height {
        (out + ((iy + p) * width + p) * cin).update(from: x + iy * run, count: run)
    }
}

/// Y = conv(X, W) + bias for a 1x1 kernel without padding (a ResNet projection shortcut, any
/// stride): each output row is a small matrix product whose A rows are that row's input pixels,
/// `stride`·Cin floats apart, so the GEMM tile reads them in place. With K = Cin as short as 16
/// this skips the direct tile's per-pixel tap bookkeeping, which costs as much as the arithmetic.
/// Tasks are runs of whole output rows (about 96 pixels), fixed by the shape.
func convolvePointwise(_ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>, packedWeights w: UnsafePointer<Float>,
                       bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, cin = s.inChannels, cout = s.outChannels
    let rows = s.batch * oh, rowsPerTask = max(1, 96 / max(ow, 1))
    pool.run(tasks: (rows + rowsPerTask - 1) / rowsPerTask) { task, _ in
        for row in (task * rowsPerTask)..<min(rows, (task + 1) * rowsPerTask) {
            let n = row / oh, oy = row % oh
            let a = x + (n * s.height + oy * s.stride) * s.width * cin, c = y + row * ow * cout
            multiplyRows(kernels, kc: cin, a: a, lda: s.stride * cin, rows: ow, packedB: w, columns: cout, c: c, ldc: cout)
            if let bias { for p in 0..<ow { addInPlace(c + p * cout, bias, count: cout) } }
        }
    }
}

/// dW[tap][ci][co] = Σ_pixels X[pixel shifted by tap, ci] · dY[pixel, co], without im2col, and
/// dBias[co] = Σ_pixels dY[pixel, co] while the group's dY is in cache (skipped when `db` is nil).
func convolutionWeightGradientDirect(_ kernels: ConvKernelSet, _ s: ConvShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                     weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>?,
                                     workspace ws: ConvWorkspace) {
    let count = s.weightCount, cout = s.outChannels
    let pixelsPerImage = s.outHeight * s.outWidth
    ws.sumOverImageGroups(s, weightGradient: dw, biasGradient: db) { images, _, out in
        switch kernels {
        case .avx2:
            ConvKernels.weightGradientGroup(s.geometry, input: x, outputGradient: dy, images: images, into: out)
        case .avx512:
            ConvKernelsAVX512.weightGradientGroup(s.geometry.avx512, input: x, outputGradient: dy, images: images, into: out)
        }
        if db != nil {
            sumRows(dy + images.lowerBound * pixelsPerImage * cout, rows: images.count * pixelsPerImage, columns: cout, into: out + count)
        }
    }
}

extension ConvWorkspace {
    /// The one way a convolution's weight and bias gradients are summed over images: each task
    /// takes one sample group (`pool.sampleGroups`) and `group(images, worker, slice)` writes that
    /// group's sums into its own slice of `partials` (the weights, then the bias unless `db` is
    /// nil); the slices are then added in the groups' tree order, so the result depends neither
    /// on the thread count nor on how many ranks share the batch.
    func sumOverImageGroups(_ s: ConvShape, weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>?,
                            _ group: (_ images: Range<Int>, _ worker: Int, _ slice: UnsafeMutablePointer<Float>) -> Void) {
        let sampleGroups = pool.sampleGroups, groups = sampleGroups.count(batch: s.batch)
        let count = s.weightCount, slice = partialSliceCount(s), partials = self.partials
        pool.run(tasks: groups) { index, worker in
            group(sampleGroups.samples(index, batch: s.batch), worker, partials + index * slice)
        }
        // Without a bias gradient only the weight part of each slice is summed.
        addSlicesInTree(partials, slice: slice, count: db == nil ? count : slice, groups: groups, pool: pool)
        dw.update(from: partials, count: count)
        db?.update(from: partials + count, count: s.outChannels)
    }
}

/// Floats of one sample group's partial sums: the weight gradient, then the bias gradient.
func partialSliceCount(_ s: ConvShape) -> Int { s.weightCount + s.outChannels }
