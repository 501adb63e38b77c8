/// Average pooling on NHWC tensors: windowed (`PoolShape`, as in LeNet-5) and global (HxWxC →
/// 1x1xC, the head of a ResNet). One task per image (or group of small images), summing each
/// window in a fixed order, 16 channels at a time; results do not depend on the thread count.

/// y = mean of each size×size window (every window lies inside the image: no padding).
public func avgPoolForward(_ s: PoolShape, input x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                           pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, c = s.channels
    let scale = 1 / Float(s.size * s.size)
    pool.run(tasks: s.batch) { n, _ in
        let image = x + n * s.height * s.width * c
        var out = y + n * oh * ow * c
        for oy in 0..<oh {
            for ox in 0..<ow {
                let corner = image + ((oy * s.stride) * s.width + ox * s.stride) * c
                forEachBlockOf16(c) { c0, width in
                    var sum = SIMD16<Float>()
                    for ky in 0..<s.size {
                        for kx in 0..<s.size { sum += loadVector(corner + (ky * s.width + kx) * c + c0, count: width) }
                    }
                    storeVector(out + c0, sum * scale, count: width)
                }
                out += c
            }
        }
    }
}

/// dx = Σ over the windows containing each input of dy/size² (overwritten). Windows may overlap
/// (stride < size): each image's windows are added in output order by one task.
public func avgPoolBackward(_ s: PoolShape, outputGradient dy: UnsafePointer<Float>,
                            inputGradient dx: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let oh = s.outHeight, ow = s.outWidth, c = s.channels
    let scale = 1 / Float(s.size * s.size), imageSize = s.height * s.width * c
    pool.run(tasks: s.batch) { n, _ in
        let image = dx + n * imageSize
        image.update(repeating: 0, count: imageSize)
        var g = dy + n * oh * ow * c
        for oy in 0..<oh {
            for ox in 0..<ow {
                let corner = image + ((oy * s.stride) * s.width + ox * s.stride) * c
                forEachBlockOf16(c) { c0, width in
                    let share = loadVector(g + c0, count: width) * scale
                    for ky in 0..<s.size {
                        for kx in 0..<s.size {
                            let at = corner + (ky * s.width + kx) * c + c0
                            storeVector(at, loadVector(at, count: width) + share, count: width)
                        }
                    }
                }
                g += c
            }
        }
    }
}

/// HxWxC → 1x1xC: y[n][c] = Σ_p x[n][p][c] / pixels, summed in pixel order.
///
///     globalAvgPoolForward(batch: 64, pixels: 8 * 8, channels: 64, input: x, output: y, pool: pool)  // ResNet-20 head
public func globalAvgPoolForward(batch: Int, pixels: Int, channels: Int, input x: UnsafePointer<Float>,
                                 output y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let c = channels, divisor = Float(pixels)
    forEachImageGroup(batch: batch, floatsPerImage: pixels * c, pool: pool) { n in
        let image = x + n * pixels * c
        forEachBlockOf16(c) { c0, width in
            var sum = SIMD16<Float>()
            for p in 0..<pixels { sum += loadVector(image + p * c + c0, count: width) }
            storeVector(y + n * c + c0, sum / divisor, count: width)
        }
    }
}

/// dx[n][p][c] = dy[n][c] / pixels for every pixel p (overwritten).
public func globalAvgPoolBackward(batch: Int, pixels: Int, channels: Int, outputGradient dy: UnsafePointer<Float>,
                                  inputGradient dx: UnsafeMutablePointer<Float>, pool: WorkerPool) {
    let c = channels, divisor = Float(pixels)
    forEachImageGroup(batch: batch, floatsPerImage: pixels * c, pool: pool) { n in
        let image = dx + n * pixels * c
        forEachBlockOf16(c) { c0, width in
            let share = loadVector(dy + n * c + c0, count: width) / divisor
            for p in 0..<pixels { storeVector(image + p * c + c0, share, count: width) }
        }
    }
}
