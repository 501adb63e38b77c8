/// A batch norm (with its fused ReLU) followed by a max pool whose windows do not overlap, over
/// whole 16-channel vectors: VGG-11's conv → bn → relu → 2x2/2 pool. Done image by image through
/// a per-worker scratch of one image (or a few small ones), which stays in L2: forward, the norm
/// writes an image's output there and the pool reads it back, so the batch's whole normalised
/// output (16 MB at VGG-11's first layer) never goes through memory; backward, the pool routes an
/// image's gradient there and the norm's two passes read it. The same arithmetic on every value as the separate
/// layers (`batchNormForward`, `maxPoolForward`, `maxPoolBackward`, the norm's backward), so the
/// same bits.
///
///     let scratch = allocate(NormPooling.scratchCount(threads: pool.threads, pixels: s.pixels, channels: s.channels))
///     let pooling = NormPooling(shape: poolShape, argmax: argmax, scratch: scratch)
///     batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: γ, shift: β, relu: true,
///                      pooling: pooling, pooledOutput: y, pool: pool)
///     batchNormBackwardStatistics(s, input: x, pooledGradient: dy, pooling: pooling, mean: mean, invStd: invStd,
///                                 relu: relu, sums: g, pool: pool)
///     batchNormBackwardData(s, input: x, pooledGradient: dy, pooling: pooling, mean: mean, invStd: invStd, scale: γ,
///                           relu: relu, sums: g, count: N, inputGradient: dx, pool: pool)
public struct NormPooling {
    /// The pool's shape (any batch: the norm's shape gives it), its winners and the per-worker scratch.
    public let shape: PoolShape, argmax: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<Float>

    public init(shape: PoolShape, argmax: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<Float>) {
        precondition(Self.fits(shape), "a norm pools over disjoint windows of whole vectors only")
        self.shape = shape; self.argmax = argmax; self.scratch = scratch
    }

    /// Whether a pool of `shape` can be done by the norm before it.
    public static func fits(_ shape: PoolShape) -> Bool { shape.size == shape.stride && shape.channels % 16 == 0 }

    /// Floats of scratch for `threads` workers and images of `pixels` × `channels`: a task's
    /// images (`forEachImageGroup`'s tasks hold one image or at most `elementwiseChunk` floats).
    public static func scratchCount(threads: Int, pixels: Int, channels: Int) -> Int {
        threads * max(pixels * channels, elementwiseChunk)
    }

    var perImageOut: Int { shape.outHeight * shape.outWidth * shape.channels }

    @inline(__always) func check(_ s: NormShape) {
        precondition(shape.height * shape.width == s.pixels && shape.channels == s.channels, "pool \(shape) does not fit norm \(s)")
    }
}

/// `batchNormForward` (without a residual), then `maxPoolForward` of its output into `pooledOutput`
/// and `pooling.argmax`.
public func batchNormForward(_ s: NormShape, input x: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                             invStd: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, relu: Bool,
                             pooling: NormPooling, pooledOutput y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    pooling.check(s)
    let perImage = s.pixels * s.channels, perImageOut = pooling.perImageOut
    forEachTask(s, pooling, pool: pool) { images, normalized in
        normalize(channels: s.channels, positions: 0..<images.count * s.pixels, input: x + images.lowerBound * perImage, mean: mean,
                  invStd: invStd, scale: scale, shift: shift, residual: nil, output: normalized, relu: relu)
        for (i, n) in images.enumerated() {
            maxPoolImage(pooling.shape, image: normalized + i * perImage, output: y + n * perImageOut,
                         argmax: pooling.argmax + n * perImageOut, relu: false)
        }
    }
}

/// `batchNormBackwardStatistics` of the gradient that `maxPoolBackward` would route from `pooledGradient`.
public func batchNormBackwardStatistics(_ s: NormShape, input x: UnsafePointer<Float>, pooledGradient dy: UnsafePointer<Float>,
                                        pooling: NormPooling, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                                        relu: FusedReLU?, sums: UnsafeMutablePointer<Double>, pool: WorkerPool) {
    pooling.check(s)
    let c = s.channels, perImage = s.pixels * c
    let partials = pool.partialSums(s.partialSumCount)
    forEachTask(s, pooling, pool: pool) { images, routed in
        route(pooling, images: images, pooledGradient: dy, into: routed, perImage: perImage)
        for (i, n) in images.enumerated() {
            imageGradientSums(s, input: x + n * perImage, outputGradient: routed + i * perImage, mean: mean, invStd: invStd, relu: relu,
                              into: partials + n * 2 * c)
        }
    }
    addImageSums(partials, images: s.batch, width: 2 * c, groups: pool.sampleGroups, into: sums)
}

/// `batchNormBackwardData` of the gradient that `maxPoolBackward` would route from `pooledGradient`.
public func batchNormBackwardData(_ s: NormShape, input x: UnsafePointer<Float>, pooledGradient dy: UnsafePointer<Float>,
                                  pooling: NormPooling, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                                  scale: UnsafePointer<Float>, relu: FusedReLU?, sums: UnsafePointer<Double>, count: Int,
                                  inputGradient dx: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    precondition(count > 0, "batch norm needs a positive count")
    pooling.check(s)
    let perImage = s.pixels * s.channels
    forEachTask(s, pooling, pool: pool) { images, routed in
        route(pooling, images: images, pooledGradient: dy, into: routed, perImage: perImage)
        let first = images.lowerBound * perImage
        inputGradients(channels: s.channels, positions: 0..<images.count * s.pixels, input: x + first, outputGradient: routed,
                       mean: mean, invStd: invStd, scale: scale, relu: relu, sums: sums, count: count, inputGradient: dx + first)
    }
}

/// Calls `body(images, scratch)` for the batch in `forEachImageGroup`'s tasks (one image, or a
/// few small ones: VGG-11's last norm has 2x2 images), with the worker's scratch.
@inline(__always) private func forEachTask(_ s: NormShape, _ pooling: NormPooling, pool: WorkerPool,
                                           _ body: (_ images: Range<Int>, _ scratch: UnsafeMutablePointer<Float>) -> Void) {
    let perWorker = NormPooling.scratchCount(threads: 1, pixels: s.pixels, channels: s.channels)
    forEachImageGroup(batch: s.batch, floatsPerImage: s.pixels * s.channels, pool: pool) { images, worker in
        body(images, pooling.scratch + worker * perWorker)
    }
}

/// The gradient `maxPoolBackward` routes to `images`, one image after another at `routed`.
@inline(__always) private func route(_ pooling: NormPooling, images: Range<Int>, pooledGradient dy: UnsafePointer<Float>,
                                     into routed: UnsafeMutablePointer<Float>, perImage: Int) {
    for (i, n) in images.enumerated() {
        let at = n * pooling.perImageOut
        routeDisjointWindows(pooling.shape, outputGradient: dy + at, argmax: pooling.argmax + at, reluOutput: dy + at, relu: false,
                             into: routed + i * perImage)
    }
}
