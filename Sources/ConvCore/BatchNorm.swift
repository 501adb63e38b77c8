/// Batch normalisation over NHWC tensors, split into phases so that a data-parallel trainer can
/// add the per-channel sums of every rank (an all-reduce of 2·channels doubles) between them and
/// normalise with statistics of the whole global batch, whatever the world size:
///
///     batchNormStatistics(s, input: x, sums: sums, pool: pool)           // Σx, Σx² of this rank
///     // all-reduce `sums`; N = count over all ranks; mean = Σx/N, var = Σx²/N − mean²,
///     // invStd = 1/√(var + 1e-5) (and the running statistics) are the caller's
///     batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: γ, shift: β, output: y, pool: pool)
///     // backward
///     batchNormBackwardStatistics(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, sums: g, pool: pool)
///     // all-reduce `g`: g[c] = dβ = Σdy, g[C + c] = dγ = Σdy·x̂
///     batchNormBackwardData(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, scale: γ,
///                           sums: g, count: N, inputGradient: dx, pool: pool)
///
/// Sums are in double precision (var = E[x²] − mean² cancels when |mean| ≫ std). Each image's
/// sums are formed in pixel order into its own slice of the pool's partial-sum scratch; the
/// slices are added in image order within each sample group and the groups in their tree order
/// (`SampleGroups`), so the result depends neither on the thread count nor on how many ranks
/// share the batch. Channels are contiguous per pixel, so every kernel works
/// 16 channels at a time (a narrower last block is padded in registers). A norm that also does
/// the max pool after it has the same phases in BatchNormPooling.swift.

/// The extent of a normalised tensor: `batch` images of `pixels` (height·width) positions with
/// `channels` values each, channels innermost.
public struct NormShape: Sendable, Equatable {
    public let batch: Int, pixels: Int, channels: Int
    public init(batch: Int, pixels: Int, channels: Int) {
        self.batch = batch; self.pixels = pixels; self.channels = channels
    }
    /// Elements of the tensor: batch·pixels·channels.
    public var count: Int { batch * pixels * channels }
    /// Doubles of per-image partial sums the statistics kernels use (`WorkerPool.reservePartialSums`).
    public var partialSumCount: Int { batch * 2 * channels }
}

/// sums[c] = Σ x and sums[channels + c] = Σ x² over all batch·pixels positions of channel c, in
/// double precision (overwritten), per-image sums added in the sample groups' order.
public func batchNormStatistics(_ s: NormShape, input x: UnsafePointer<Float>, sums: UnsafeMutablePointer<Double>,
                                pool: WorkerPool) {
    let c = s.channels, perImage = s.pixels * c
    let partials = pool.partialSums(s.partialSumCount)
    pool.run(tasks: s.batch) { n, _ in
        let image = x + n * perImage, out = partials + n * 2 * c
        forEachBlockOf16(c) { c0, width in
            var acc = DoubleSums()
            var p = image + c0
            for _ in 0..<s.pixels {
                let v = loadVector(p, count: width)
                acc.add(v, v)
                p += c
            }
            acc.store(first: out + c0, second: out + c + c0, count: width)
        }
    }
    addImageSums(partials, images: s.batch, width: 2 * c, groups: pool.sampleGroups, into: sums)
}

/// y = (x − mean[c])·invStd[c]·scale[c] + shift[c] (+ residual, the shortcut of a residual block
/// whose addition the norm does), then max(that, 0) with `relu`: a ReLU and an addition fused into
/// the norm are one pass over the activations instead of three, with the same bits. `y` may be `x`
/// (in place).
public func batchNormForward(_ s: NormShape, input x: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                             invStd: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                             residual: UnsafePointer<Float>? = nil, output y: UnsafeMutablePointer<Float>, relu: Bool = false,
                             pool: WorkerPool) {
    forEachPositionRange(s, pool: pool) { first, last in
        normalize(channels: s.channels, positions: first..<last, input: x, mean: mean, invStd: invStd, scale: scale, shift: shift,
                  residual: residual, output: y, relu: relu)
    }
}

/// `batchNormForward` at `positions` (indices of whole pixels from `x` and `y`).
@inline(__always) func normalize(channels c: Int, positions: Range<Int>, input x: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                                 invStd: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                                 residual: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>, relu: Bool) {
    forEachBlockOf16(c) { c0, width in
        let m = loadVector(mean + c0, count: width), b = loadVector(shift + c0, count: width)
        let k = loadVector(invStd + c0, count: width) * loadVector(scale + c0, count: width)
        for i in positions {
            let at = i * c + c0
            var v = b.addingProduct(loadVector(x + at, count: width) - m, k)
            if let residual { v += loadVector(residual + at, count: width) }
            storeVector(y + at, relu ? pointwiseMax(v, SIMD16(repeating: 0)) : v, count: width)
        }
    }
}

/// The ReLU fused into a batch norm's output (`batchNormForward(…, relu: true)`), for its
/// backward pass: the norm's scale and shift, with which the backward recomputes each output
/// from the input and passes dy only where it was positive, as the ReLU's own backward would.
public struct FusedReLU {
    public let scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
    public init(scale: UnsafePointer<Float>, shift: UnsafePointer<Float>) { (self.scale, self.shift) = (scale, shift) }

    /// The mask of channels c0..<c0+width, with the forward's per-channel constants.
    @inline(__always) func channels(_ c0: Int, width: Int, mean: SIMD16<Float>, invStd: SIMD16<Float>) -> Mask {
        Mask(mean: mean, k: invStd * loadVector(scale + c0, count: width), shift: loadVector(shift + c0, count: width))
    }

    struct Mask: GradientFilter {
        let mean: SIMD16<Float>, k: SIMD16<Float>, shift: SIMD16<Float>
        /// dy where (x − mean)·k + shift > 0, else 0: k = invStd·scale as in the forward pass, so
        /// the mask is the forward's bit for bit.
        @inline(__always) func apply(_ dy: SIMD16<Float>, x: SIMD16<Float>) -> SIMD16<Float> {
            dy.replacing(with: 0, where: shift.addingProduct(x - mean, k) .<= 0)
        }
    }
}

/// What reaches the norm's backward of the output gradient at one input: all of it, or what a
/// fused ReLU let through. A generic parameter rather than an optional so that the inner loops are
/// compiled once for each, with no test (or copy of an optional) per vector.
protocol GradientFilter {
    func apply(_ dy: SIMD16<Float>, x: SIMD16<Float>) -> SIMD16<Float>
}

private struct Unfiltered: GradientFilter {
    @inline(__always) func apply(_ dy: SIMD16<Float>, x: SIMD16<Float>) -> SIMD16<Float> { dy }
}

/// sums[c] = Σ dy and sums[channels + c] = Σ dy·x̂ with x̂ = (x − mean)·invStd, in double
/// precision (overwritten), per-image sums added in the sample groups' order. These are the shift and scale
/// gradients (dβ, dγ) and, all-reduced, the input of `batchNormBackwardData`.
public func batchNormBackwardStatistics(_ s: NormShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                        mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, relu: FusedReLU? = nil,
                                        sums: UnsafeMutablePointer<Double>, pool: WorkerPool) {
    let c = s.channels, perImage = s.pixels * c
    let partials = pool.partialSums(s.partialSumCount)
    pool.run(tasks: s.batch) { n, _ in
        imageGradientSums(s, input: x + n * perImage, outputGradient: dy + n * perImage, mean: mean, invStd: invStd, relu: relu,
                          into: partials + n * 2 * c)
    }
    addImageSums(partials, images: s.batch, width: 2 * c, groups: pool.sampleGroups, into: sums)
}

/// One image's Σ dy and Σ dy·x̂ (`batchNormBackwardStatistics`) at `out` and `out + channels`.
@inline(__always) func imageGradientSums(_ s: NormShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                         mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, relu: FusedReLU?,
                                         into out: UnsafeMutablePointer<Double>) {
    let c = s.channels
    forEachBlockOf16(c) { c0, width in
        let m = loadVector(mean + c0, count: width), r = loadVector(invStd + c0, count: width)
        let acc = if let relu {
            gradientSums(relu.channels(c0, width: width, mean: m, invStd: r), x: x, dy: dy, first: c0,
                         stride: c, count: s.pixels, width: width, mean: m, invStd: r)
        } else {
            gradientSums(Unfiltered(), x: x, dy: dy, first: c0, stride: c, count: s.pixels, width: width, mean: m, invStd: r)
        }
        acc.store(first: out + c0, second: out + c + c0, count: width)
    }
}

/// The training-mode input gradient, dx = scale·invStd·(dy − Σdy/count − x̂·Σ(dy·x̂)/count), with
/// `sums` from `batchNormBackwardStatistics` (all-reduced over ranks when the statistics were)
/// and `count` the positions per channel those sums cover: batch·pixels summed over every rank
/// whose statistics were included. `dx` may be `dy` (in place).
public func batchNormBackwardData(_ s: NormShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                  mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                                  relu: FusedReLU? = nil, sums: UnsafePointer<Double>, count: Int,
                                  inputGradient dx: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    precondition(count > 0, "batch norm needs a positive count")
    forEachPositionRange(s, pool: pool) { first, last in
        inputGradients(channels: s.channels, positions: first..<last, input: x, outputGradient: dy, mean: mean, invStd: invStd,
                       scale: scale, relu: relu, sums: sums, count: count, inputGradient: dx)
    }
}

/// `batchNormBackwardData` at `positions` (indices of whole pixels from `x`, `dy` and `dx`).
@inline(__always) func inputGradients(channels c: Int, positions: Range<Int>, input x: UnsafePointer<Float>,
                                      outputGradient dy: UnsafePointer<Float>, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                                      scale: UnsafePointer<Float>, relu: FusedReLU?, sums: UnsafePointer<Double>, count: Int,
                                      inputGradient dx: UnsafeMutablePointer<Float>) {
    forEachBlockOf16(c) { c0, width in
        var meanDy = SIMD16<Float>(), meanDyXhat = SIMD16<Float>()
        for l in 0..<width {
            meanDy[l] = Float(sums[c0 + l] / Double(count))
            meanDyXhat[l] = Float(sums[c + c0 + l] / Double(count))
        }
        let m = loadVector(mean + c0, count: width), r = loadVector(invStd + c0, count: width)
        let k = r * loadVector(scale + c0, count: width)
        if let relu {
            centredGradients(relu.channels(c0, width: width, mean: m, invStd: r), x: x, dy: dy, dx: dx, positions: positions,
                             stride: c, c0: c0, width: width, mean: m, invStd: r, k: k, meanDy: meanDy, meanDyXhat: meanDyXhat)
        } else {
            centredGradients(Unfiltered(), x: x, dy: dy, dx: dx, positions: positions, stride: c, c0: c0, width: width,
                             mean: m, invStd: r, k: k, meanDy: meanDy, meanDyXhat: meanDyXhat)
        }
    }
}

/// Σ filtered dy and Σ filtered dy·x̂ of one channel block over `count` positions `stride` apart from `first`.
@inline(__always) private func gradientSums<Filter: GradientFilter>(
    _ filter: Filter, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, first: Int, stride: Int, count: Int, width: Int,
    mean m: SIMD16<Float>, invStd r: SIMD16<Float>
) -> DoubleSums {
    var acc = DoubleSums()
    var at = first
    for _ in 0..<count {
        let xv = loadVector(x + at, count: width)
        acc.add(filter.apply(loadVector(dy + at, count: width), x: xv), (xv - m) * r)
        at += stride
    }
    return acc
}

/// dx = k·(filtered dy − mean dy − x̂·mean dy·x̂) for one channel block at `positions`.
@inline(__always) private func centredGradients<Filter: GradientFilter>(
    _ filter: Filter, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    positions: Range<Int>, stride: Int, c0: Int, width: Int, mean m: SIMD16<Float>, invStd r: SIMD16<Float>,
    k: SIMD16<Float>, meanDy: SIMD16<Float>, meanDyXhat: SIMD16<Float>
) {
    for i in positions {
        let at = i * stride + c0
        let xv = loadVector(x + at, count: width)
        let xhat = (xv - m) * r
        let centred = (filter.apply(loadVector(dy + at, count: width), x: xv) - meanDy).addingProduct(-xhat, meanDyXhat)
        storeVector(dx + at, k * centred, count: width)
    }
}

// MARK: Helpers

/// Σa and Σa·b for 16 channels in double precision (8 ymm registers of accumulators).
private struct DoubleSums {
    var a0 = SIMD8<Double>(), a1 = SIMD8<Double>(), ab0 = SIMD8<Double>(), ab1 = SIMD8<Double>()

    @inline(__always) mutating func add(_ a: SIMD16<Float>, _ b: SIMD16<Float>) {
        let lowA = SIMD8<Double>(a.lowHalf), highA = SIMD8<Double>(a.highHalf)
        a0 += lowA
        a1 += highA
        // The product of two floats is exact in double.
        ab0 = ab0.addingProduct(lowA, SIMD8<Double>(b.lowHalf))
        ab1 = ab1.addingProduct(highA, SIMD8<Double>(b.highHalf))
    }

    @inline(__always) func store(first: UnsafeMutablePointer<Double>, second: UnsafeMutablePointer<Double>, count: Int) {
        for l in 0..<count {
            first[l] = l < 8 ? a0[l] : a1[l - 8]
            second[l] = l < 8 ? ab0[l] : ab1[l - 8]
        }
    }
}

/// Splits the batch·pixels positions into fixed ranges of about `elementwiseChunk` elements.
@inline(__always) private func forEachPositionRange(_ s: NormShape, pool: WorkerPool, _ body: (_ first: Int, _ last: Int) -> Void) {
    let positions = s.batch * s.pixels, perTask = max(1, elementwiseChunk / max(s.channels, 1))
    pool.run(tasks: (positions + perTask - 1) / perTask) { t, _ in
        body(t * perTask, min(positions, (t + 1) * perTask))
    }
}

/// out[j] = Σ_n partials[n·width + j]: image order within each sample group, then the groups'
/// tree. The partials are overwritten.
func addImageSums(_ partials: UnsafeMutablePointer<Double>, images: Int, width: Int, groups: SampleGroups,
                  into out: UnsafeMutablePointer<Double>) {
    let count = groups.count(batch: images)
    for g in 0..<count {
        let samples = groups.samples(g, batch: images), first = partials + samples.lowerBound * width
        for n in samples.dropFirst() {
            let image = partials + n * width
            for j in 0..<width { first[j] += image[j] }
        }
    }
    addSlicesInTree(partials, slice: groups.size * width, count: width, groups: count)
    out.update(from: partials, count: width)
}
