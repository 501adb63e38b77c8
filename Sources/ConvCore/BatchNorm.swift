/// Batch normalisation over NHWC activations, split into phases so that the caller can sum
/// the per-channel statistics across ranks in between (ConvCore knows nothing of MPI):
///
///     batchNormStatistics(s, input: x, sums: sums, pool: pool)          // Σx, Σx² of this rank
///     /* sum `sums` over ranks; mean = Σx/N, invStd = 1/√(Σx²/N − mean² + ε) */
///     batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: γ, shift: β, output: y, pool: pool)
///     // backward:
///     batchNormBackwardStatistics(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, sums: sums, pool: pool)
///     /* dβ = sums[c], dγ = sums[C + c]; sum `sums` over ranks */
///     batchNormBackwardData(s, ..., sums: sums, count: N, inputGradient: dx, pool: pool)
///
/// Sums are per-channel, over images in order and pixels in order, in tasks of 16 channels: the
/// result does not depend on the thread count.
public struct NormShape: Sendable, Equatable {
    public let batch: Int, pixels: Int, channels: Int
    public init(batch: Int, pixels: Int, channels: Int) {
        self.batch = batch; self.pixels = pixels; self.channels = channels
    }
    public var count: Int { batch * pixels * channels }
}

/// sums[c] = Σ x and sums[channels + c] = Σ x² over every position of channel c.
public func batchNormStatistics(_ s: NormShape, input x: UnsafePointer<Float>, sums: UnsafeMutablePointer<Double>, pool: WorkerPool) {
    sumPerChannel(s, sums: sums, pool: pool) { at, _ in
        let v = loadVector(x + at)
        return (v, v * v)
    } scalar: { at, _ in
        (x[at], x[at] * x[at])
    }
}

/// y = (x − mean)·invStd·scale + shift, per channel. y may be x.
public func batchNormForward(_ s: NormShape, input x: UnsafePointer<Float>, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                             scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                             pool: WorkerPool) {
    let c = s.channels
    forEachRowChunk(s, pool: pool) { rows in
        var ch = 0
        while ch + 16 <= c {
            let a = loadVector(invStd + ch) * loadVector(scale + ch)
            let b = loadVector(shift + ch) - loadVector(mean + ch) * a
            for r in rows { storeVector(y + r * c + ch, loadVector(x + r * c + ch) * a + b) }
            ch += 16
        }
        while ch < c {
            let a = invStd[ch] * scale[ch], b = shift[ch] - mean[ch] * a
            for r in rows { y[r * c + ch] = x[r * c + ch] * a + b }
            ch += 1
        }
    }
}

/// sums[c] = Σ dy and sums[channels + c] = Σ dy·x̂, with x̂ = (x − mean)·invStd: the shift's and
/// the scale's gradients, and what the input gradient needs.
public func batchNormBackwardStatistics(_ s: NormShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                        mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                                        sums: UnsafeMutablePointer<Double>, pool: WorkerPool) {
    sumPerChannel(s, sums: sums, pool: pool) { at, ch in
        let g = loadVector(dy + at)
        return (g, g * (loadVector(x + at) - loadVector(mean + ch)) * loadVector(invStd + ch))
    } scalar: { at, ch in
        (dy[at], dy[at] * (x[at] - mean[ch]) * invStd[ch])
    }
}

/// Training mode's input gradient: dx = scale·invStd·(dy − Σdy/count − x̂·Σ(dy·x̂)/count), with
/// `sums` from `batchNormBackwardStatistics` (summed over every rank whose batch shared the
/// statistics) and `count` the positions per channel they cover. dx may be dy.
public func batchNormBackwardData(_ s: NormShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                  mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, scale: UnsafePointer<Float>,
                                  sums: UnsafePointer<Double>, count: Int, inputGradient dx: UnsafeMutablePointer<Float>,
                                  pool: WorkerPool) {
    let c = s.channels, n = Double(count)
    @inline(__always) func coefficients(_ ch: Int) -> (k: Float, meanDy: Float, meanDyXHat: Float) {
        (scale[ch] * invStd[ch], Float(sums[ch] / n), Float(sums[c + ch] / n))
    }
    forEachRowChunk(s, pool: pool) { rows in
        var ch = 0
        while ch + 16 <= c {
            var k = SIMD16<Float>(), m1 = SIMD16<Float>(), m2 = SIMD16<Float>()
            for j in 0..<16 { (k[j], m1[j], m2[j]) = coefficients(ch + j) }
            let mu = loadVector(mean + ch), inv = loadVector(invStd + ch)
            for r in rows {
                let at = r * c + ch
                let xHat = (loadVector(x + at) - mu) * inv
                storeVector(dx + at, k * (loadVector(dy + at) - m1 - xHat * m2))
            }
            ch += 16
        }
        while ch < c {
            let (k, m1, m2) = coefficients(ch)
            for r in rows {
                let at = r * c + ch
                dx[at] = k * (dy[at] - m1 - (x[at] - mean[ch]) * invStd[ch] * m2)
            }
            ch += 1
        }
    }
}

/// Two per-channel sums of `terms(at, channel)` over every position: a task per block of 16 channels,
/// each summing one image's pixels in Float and the images in Double, in order.
@inline(__always)
private func sumPerChannel(_ s: NormShape, sums: UnsafeMutablePointer<Double>, pool: WorkerPool,
                           _ terms: (Int, Int) -> (SIMD16<Float>, SIMD16<Float>), scalar: (Int, Int) -> (Float, Float)) {
    let c = s.channels, blocks = (c + 15) / 16
    pool.run(tasks: blocks) { block, _ in
        let first = block * 16
        if first + 16 <= c {
            var total0 = SIMD16<Double>(), total1 = SIMD16<Double>()
            for image in 0..<s.batch {
                var sum0 = SIMD16<Float>(), sum1 = SIMD16<Float>()
                var at = image * s.pixels * c + first
                for _ in 0..<s.pixels {
                    let (a, b) = terms(at, first)
                    sum0 += a
                    sum1 += b
                    at += c
                }
                for j in 0..<16 { total0[j] += Double(sum0[j]); total1[j] += Double(sum1[j]) }
            }
            for j in 0..<16 { sums[first + j] = total0[j]; sums[c + first + j] = total1[j] }
        } else {
            for ch in first..<c {
                var total0 = 0.0, total1 = 0.0
                for image in 0..<s.batch {
                    var sum0: Float = 0, sum1: Float = 0
                    var at = image * s.pixels * c + ch
                    for _ in 0..<s.pixels {
                        let (a, b) = scalar(at, ch)
                        sum0 += a
                        sum1 += b
                        at += c
                    }
                    total0 += Double(sum0)
                    total1 += Double(sum1)
                }
                sums[ch] = total0
                sums[c + ch] = total1
            }
        }
    }
}

/// Tasks over fixed ranges of rows (one row = one pixel's channels).
@inline(__always)
private func forEachRowChunk(_ s: NormShape, pool: WorkerPool, _ body: (Range<Int>) -> Void) {
    let rows = s.batch * s.pixels, perTask = max(1, elementwiseChunk / max(s.channels, 1))
    pool.run(tasks: (rows + perTask - 1) / perTask) { t, _ in
        body((t * perTask)..<min(rows, (t + 1) * perTask))
    }
}
