/// Element-wise kernels and small reductions shared by the layers.

/// Elements per task for element-wise work (fixed, so results never depend on thread count): large enough to outweigh a fork-join (~20 µs).
public let elementwiseChunk = 1 << 15

@inline(__always)
public func forEachChunk(_ count: Int, pool: WorkerPool, _ body: (_ start: Int, _ end: Int) -> Void) {
    let tasks = (count + elementwiseChunk - 1) / elementwiseChunk
    pool.run(tasks: tasks) { t, _ in
        body(t * elementwiseChunk, min(count, (t + 1) * elementwiseChunk))
    }
}

/// Calls `body(images, worker)` for the batch in tasks of consecutive images worth about
/// `elementwiseChunk` floats, or of one image where an image is larger: a global pool's 8x8
/// images and VGG-11's last batch norm's 2x2 are too small to pay for a task each.
@inline(__always)
func forEachImageGroup(batch: Int, floatsPerImage: Int, pool: WorkerPool, _ body: (_ images: Range<Int>, _ worker: Int) -> Void) {
    let perTask = max(1, elementwiseChunk / max(floatsPerImage, 1))
    pool.run(tasks: (batch + perTask - 1) / perTask) { t, worker in
        body((t * perTask)..<min(batch, (t + 1) * perTask), worker)
    }
}

/// The same, image by image.
@inline(__always)
func forEachImageGroup(batch: Int, floatsPerImage: Int, pool: WorkerPool, _ body: (_ image: Int) -> Void) {
    forEachImageGroup(batch: batch, floatsPerImage: floatsPerImage, pool: pool) { images, _ in
        for n in images { body(n) }
    }
}

/// y = max(x, 0).
public func reluForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            storeVector(y + i, pointwiseMax(loadVector(x + i), SIMD16(repeating: 0)))
            i += 16
        }
        while i < end { y[i] = max(x[i], 0); i += 1 }
    }
}

/// dx = dy where the ReLU's output was positive, else 0.
public func reluBackward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                         inputGradient dx: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        let zero = SIMD16<Float>(repeating: 0)
        while i + 16 <= end {
            storeVector(dx + i, loadVector(dy + i).replacing(with: zero, where: loadVector(y + i) .<= zero))
            i += 16
        }
        while i < end { dx[i] = y[i] > 0 ? dy[i] : 0; i += 1 }
    }
}

/// y = x ⊙ mask (dropout with a precomputed, already scaled keep-mask); also its backward.
public func multiplyElementwise(_ x: UnsafePointer<Float>, _ mask: UnsafePointer<Float>,
                                _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            storeVector(y + i, loadVector(x + i) * loadVector(mask + i))
            i += 16
        }
        while i < end { y[i] = x[i] * mask[i]; i += 1 }
    }
}

/// Fills a rows×count matrix with copies of one row (bias initialisation before a GEMM accumulates).
public func broadcastRows(_ row: UnsafePointer<Float>, count: Int, rows: Int,
                          into y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let rowsPerTask = max(1, elementwiseChunk / max(count, 1))
    pool.run(tasks: (rows + rowsPerTask - 1) / rowsPerTask) { t, _ in
        for r in (t * rowsPerTask)..<min(rows, (t + 1) * rowsPerTask) {
            (y + r * count).update(from: row, count: count)
        }
    }
}

/// out[j] = Σᵢ m[i][j], summed in row order.
public func sumRows(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    out.update(repeating: 0, count: columns)
    for r in 0..<rows { addInPlace(out, m + r * columns, count: columns) }
}

/// dst += src: 16 floats at a time, then 8, then one by one (a patch's kernel row of a few
/// channels is 9 or 30 floats).
@inline(__always)
public func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    var i = 0
    while i + 16 <= count {
        storeVector(dst + i, loadVector(dst + i) + loadVector(src + i))
        i += 16
    }
    if i + 8 <= count {
        let sum = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD8<Float>.self) + UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: sum, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] += src[i]; i += 1 }
}

@inline(__always) func loadVector(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
@inline(__always) func loadVector(_ p: UnsafeMutablePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}
@inline(__always) func storeVector(_ p: UnsafeMutablePointer<Float>, _ v: SIMD16<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// Calls `body(first, width)` for blocks of 16 of `count` elements, the last one narrower: a
/// pixel's channels 16 at a time, or an optimizer's run of parameters.
@inline(__always) func forEachBlockOf16(_ count: Int, _ body: (_ first: Int, _ width: Int) -> Void) {
    var first = 0
    while first < count {
        body(first, min(16, count - first))
        first += 16
    }
}

/// The first `count` (≤ 16) floats at `p`, zeros in the other lanes: a channel block's tail
/// without reading past it.
@inline(__always) func loadVector(_ p: UnsafePointer<Float>, count: Int) -> SIMD16<Float> {
    if count == 16 { return loadVector(p) }
    var v = SIMD16<Float>()
    for l in 0..<count { v[l] = p[l] }
    return v
}
@inline(__always) func loadVector(_ p: UnsafeMutablePointer<Float>, count: Int) -> SIMD16<Float> {
    loadVector(UnsafePointer(p), count: count)
}
/// Stores the first `count` (≤ 16) lanes of `v`.
@inline(__always) func storeVector(_ p: UnsafeMutablePointer<Float>, _ v: SIMD16<Float>, count: Int) {
    if count == 16 { return storeVector(p, v) }
    for l in 0..<count { p[l] = v[l] }
}
