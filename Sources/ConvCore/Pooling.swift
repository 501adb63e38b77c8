/// Max pooling on NHWC tensors (average pooling: AveragePool.swift).

/// A pooling window `size`×`size` moved by `stride` over NHWC images, no padding (max and
/// average pooling).
public struct PoolShape: Sendable, Equatable {
    public let batch: Int, height: Int, width: Int, channels: Int, size: Int, stride: Int
    public init(batch: Int, height: Int, width: Int, channels: Int, size: Int, stride: Int) {
        self.batch = batch; self.height = height; self.width = width
        self.channels = channels; self.size = size; self.stride = stride
    }
    public var outHeight: Int { (height - size) / stride + 1 }
    public var outWidth: Int { (width - size) / stride + 1 }
    public var inputCount: Int { batch * height * width * channels }
    public var outputCount: Int { batch * outHeight * outWidth * channels }
}

/// y = window maximum; `argmax` records which input element (offset within its image) won,
/// so the backward pass routes gradient without recomparing. Ties go to the first element.
///
/// With `relu`, y = max(window maximum, 0): a ReLU before the pool done on its 4× fewer
/// outputs (the maximum of rectified values is the rectified maximum), with its gradient mask
/// applied by `maxPoolBackward(…, reluOutput: y)`; the same numbers as ReLU then pool.
public func maxPoolForward(_ s: PoolShape, input x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                           argmax: UnsafeMutablePointer<Int32>, relu: Bool = false, pool: WorkerPool) {
    let perImage = s.height * s.width * s.channels, perImageOut = s.outHeight * s.outWidth * s.channels
    pool.run(tasks: s.batch) { n, _ in
        maxPoolImage(s, image: x + n * perImage, output: y + n * perImageOut, argmax: argmax + n * perImageOut, relu: relu)
    }
}

/// One image of `maxPoolForward`; `argmax` gets offsets within the image.
@inline(__always) func maxPoolImage(_ s: PoolShape, image: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>,
                                    argmax: UnsafeMutablePointer<Int32>, relu: Bool) {
    let oh = s.outHeight, ow = s.outWidth, c = s.channels
    let imageSize = s.height * s.width * c
    var out = y, arg = argmax
    for oy in 0..<oh {
        for ox in 0..<ow {
            let corner = ((oy * s.stride) * s.width + ox * s.stride) * c
            var ch = 0
            // 16 channels at a time: channels are contiguous in NHWC.
            while ch + 16 <= c {
                var best = loadVector(image + corner + ch)
                var bestAt = SIMD16<Int32>(repeating: Int32(corner + ch)) &+ laneIndices16
                for ky in 0..<s.size {
                    for kx in 0..<s.size where ky != 0 || kx != 0 {
                        let at = corner + (ky * s.width + kx) * c + ch
                        let v = loadVector(image + at)
                        let better = v .> best
                        best.replace(with: v, where: better)
                        bestAt.replace(with: SIMD16<Int32>(repeating: Int32(at)) &+ laneIndices16, where: better)
                    }
                }
                storeVector(out + ch, relu ? pointwiseMax(best, SIMD16(repeating: 0)) : best)
                UnsafeMutableRawPointer(arg + ch).storeBytes(of: bestAt, as: SIMD16<Int32>.self)
                ch += 16
            }
            // The rest (LeNet-5's 6 channels) 8 lanes at once: the lanes past the pixel's
            // channels read the next input pixels and write the next output pixels, which
            // are written after this one. The image's last few output pixels, whose 8 lanes
            // would reach past the image (into the next image's, another task's), stay scalar.
            if c - ch > 8 {
                windowMaximum(s, image: image, corner: corner, channel: ch, output: out, argmax: arg, relu: relu)
                ch += 8
            }
            let outputLeft = ((oh - oy) * ow - ox) * c - ch, lastRead = corner + ((s.size - 1) * s.width + s.size - 1) * c + ch
            if c - ch > 1 && outputLeft >= 8 && lastRead + 8 <= imageSize {
                windowMaximum(s, image: image, corner: corner, channel: ch, output: out, argmax: arg, relu: relu)
                ch = c
            }
            while ch < c {
                var best = image[corner + ch], bestAt = corner + ch
                for ky in 0..<s.size {
                    for kx in 0..<s.size {
                        let at = corner + (ky * s.width + kx) * c + ch
                        if image[at] > best { best = image[at]; bestAt = at }
                    }
                }
                out[ch] = relu ? max(best, 0) : best
                arg[ch] = Int32(bestAt)
                ch += 1
            }
            out += c; arg += c
        }
    }
}

private let laneIndices16 = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
private let laneIndices = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)

/// The window maxima of the 8 channels from `ch` on, and where each was, at `output + ch` and
/// `argmax + ch`. (A version generic over the vector width, to serve the 16-lane loop too, ran 20
/// times slower: the comparisons and selects of a generic SIMD are per-lane loops; 8 lanes
/// twice in its place ran a third slower than 16.)
@inline(__always)
private func windowMaximum(_ s: PoolShape, image: UnsafePointer<Float>, corner: Int, channel ch: Int,
                           output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>, relu: Bool) {
    var best = UnsafeRawPointer(image + corner + ch).loadUnaligned(as: SIMD8<Float>.self)
    var bestAt = SIMD8<Int32>(repeating: Int32(corner + ch)) &+ laneIndices
    for ky in 0..<s.size {
        for kx in 0..<s.size where ky != 0 || kx != 0 {
            let at = corner + (ky * s.width + kx) * s.channels + ch
            let v = UnsafeRawPointer(image + at).loadUnaligned(as: SIMD8<Float>.self)
            let better = v .> best
            best.replace(with: v, where: better)
            bestAt.replace(with: SIMD8<Int32>(repeating: Int32(at)) &+ laneIndices, where: better)
        }
    }
    UnsafeMutableRawPointer(output + ch).storeBytes(of: relu ? pointwiseMax(best, SIMD8(repeating: 0)) : best, as: SIMD8<Float>.self)
    UnsafeMutableRawPointer(argmax + ch).storeBytes(of: bestAt, as: SIMD8<Int32>.self)
}

/// dx[argmax] += dy; every other input gradient is zero. With `reluOutput` (the output of a
/// pool that applied the ReLU before it, `relu: true`) only where that output is positive:
/// the ReLU's backward pass, on the way.
public func maxPoolBackward(_ s: PoolShape, outputGradient dy: UnsafePointer<Float>,
                            argmax: UnsafePointer<Int32>, inputGradient dx: UnsafeMutablePointer<Float>,
                            reluOutput: UnsafePointer<Float>? = nil, pool: WorkerPool) {
    let perImageOut = s.outHeight * s.outWidth * s.channels
    let imageSize = s.height * s.width * s.channels
    pool.run(tasks: s.batch) { n, _ in
        let image = dx + n * imageSize
        let g = dy + n * perImageOut, arg = argmax + n * perImageOut
        if s.size == s.stride && s.channels % 16 == 0 {
            if let reluOutput {
                routeDisjointWindows(s, outputGradient: g, argmax: arg, reluOutput: reluOutput + n * perImageOut, relu: true, into: image)
            } else {
                routeDisjointWindows(s, outputGradient: g, argmax: arg, reluOutput: g, relu: false, into: image)
            }
            return
        }
        image.update(repeating: 0, count: imageSize)
        if let reluOutput {
            let y = reluOutput + n * perImageOut
            for i in 0..<perImageOut { image[Int(arg[i])] += y[i] > 0 ? g[i] : 0 }
        } else {
            for i in 0..<perImageOut { image[Int(arg[i])] += g[i] }
        }
    }
}

/// One image of `maxPoolBackward` for windows that do not overlap (size = stride, 2x2/2) over
/// whole 16-channel vectors: every input gradient written once, in order, as its window's
/// winner's dy + 0 (0 + dy as the scatter adds it, so a -0 becomes +0 there too) or zero,
/// instead of clearing the image and scattering onto it. Inputs that no window covers (the last
/// row or column of an odd size) get zero. (With LeNet-5's 6 channels, lane by lane, this took
/// 6 times as long as the scatter, which touches a quarter of the inputs.)
@inline(__always)
func routeDisjointWindows(_ s: PoolShape, outputGradient g: UnsafePointer<Float>, argmax arg: UnsafePointer<Int32>,
                                  reluOutput y: UnsafePointer<Float>, relu: Bool, into image: UnsafeMutablePointer<Float>) {
    let w = s.width, c = s.channels, oh = s.outHeight, ow = s.outWidth, zero = SIMD16<Float>(repeating: 0)
    for iy in 0..<s.height {
        let row = image + iy * w * c, oy = iy / s.size
        guard oy < oh else { row.update(repeating: 0, count: w * c); continue }
        for ix in 0..<w {
            let out = row + ix * c, ox = ix / s.size
            guard ox < ow else { out.update(repeating: 0, count: c); continue }
            let o = (oy * ow + ox) * c, at = Int32((iy * w + ix) * c)
            for ch in stride(from: 0, to: c, by: 16) {
                let here = SIMD16<Int32>(repeating: at + Int32(ch)) &+ laneIndices16
                var wins = UnsafeRawPointer(arg + o + ch).loadUnaligned(as: SIMD16<Int32>.self) .== here
                if relu { wins = wins .& (loadVector(y + o + ch) .> zero) }
                storeVector(out + ch, zero.replacing(with: loadVector(g + o + ch) + zero, where: wins))
            }
        }
    }
}
