/// Average pooling over `PoolShape` windows (no padding), and global average pooling: the
/// mean of each channel over the whole image, as a ResNet's head uses. One task per image;
/// channels are contiguous in NHWC, so every window sum is a run of vector adds.

/// y = the mean of each window.
public func avgPoolForward(_ s: PoolShape, input x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, c = s.channels
    let imageSize = s.height * s.width * c, weight = 1 / Float(s.size * s.size)
    pool.run(tasks: s.batch) { n, _ in
        let image = x + n * imageSize
        var out = y + n * oh * ow * c
        for oy in 0..<oh {
            for ox in 0..<ow {
                out.update(repeating: 0, count: c)
                for ky in 0..<s.size {
                    for kx in 0..<s.size {
                        addInPlace(out, image + ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c, count: c)
                    }
                }
                scaleInPlace(out, by: weight, count: c)
                out += c
            }
        }
    }
}

/// dx = each window's dy / (size²) spread over the window (overlapping windows add up); overwrites dx.
public func avgPoolBackward(_ s: PoolShape, outputGradient dy: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>,
                            pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, c = s.channels
    let imageSize = s.height * s.width * c, weight = 1 / Float(s.size * s.size)
    pool.run(tasks: s.batch) { n, _ in
        let image = dx + n * imageSize
        image.update(repeating: 0, count: imageSize)
        var g = dy + n * oh * ow * c
        for oy in 0..<oh {
            for ox in 0..<ow {
                for ky in 0..<s.size {
                    for kx in 0..<s.size {
                        addScaledInPlace(image + ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c, g, weight, count: c)
                    }
                }
                g += c
            }
        }
    }
}

/// y[n][c] = mean over the `pixels` of image n, channel c.
public func globalAvgPoolForward(batch: Int, pixels: Int, channels c: Int, input x: UnsafePointer<Float>,
                                 output y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    pool.run(tasks: batch) { n, _ in
        let out = y + n * c
        out.update(repeating: 0, count: c)
        for p in 0..<pixels { addInPlace(out, x + (n * pixels + p) * c, count: c) }
        scaleInPlace(out, by: 1 / Float(pixels), count: c)
    }
}

/// dx[n][p][c] = dy[n][c] / pixels.
public func globalAvgPoolBackward(batch: Int, pixels: Int, channels c: Int, outputGradient dy: UnsafePointer<Float>,
                                  inputGradient dx: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    pool.run(tasks: batch) { n, _ in
        let g = dy + n * c
        for p in 0..<pixels {
            let row = dx + (n * pixels + p) * c
            row.update(repeating: 0, count: c)
            addScaledInPlace(row, g, 1 / Float(pixels), count: c)
        }
    }
}

/// dst *= factor.
@inline(__always)
func scaleInPlace(_ dst: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
    var i = 0
    while i + 16 <= count { storeVector(dst + i, loadVector(dst + i) * factor); i += 16 }
    while i < count { dst[i] *= factor; i += 1 }
}

/// dst += src·factor.
@inline(__always)
func addScaledInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ factor: Float, count: Int) {
    var i = 0
    while i + 16 <= count { storeVector(dst + i, loadVector(dst + i) + loadVector(src + i) * factor); i += 16 }
    while i < count { dst[i] += src[i] * factor; i += 1 }
}
