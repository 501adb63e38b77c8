import ConvCore
import Foundation
import Testing

/// Average and global average pooling, sigmoid, tanh and residual addition: forward against a
/// double-precision reference, backward against central differences of that reference (see
/// `numericGradient` for why the tolerances can be tight), pools bitwise across thread counts.
@Suite struct PoolingActivationTests {
    let pool = WorkerPool(threads: 2)

    // MARK: Average pooling

    func referenceAvgPool(_ s: PoolShape, _ x: [Double]) -> [Double] {
        var y = [Double](repeating: 0, count: s.outputCount)
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for c in 0..<s.channels {
            var sum = 0.0
            for ky in 0..<s.size { for kx in 0..<s.size {
                sum += x[((n * s.height + oy * s.stride + ky) * s.width + ox * s.stride + kx) * s.channels + c]
            } }
            y[((n * s.outHeight + oy) * s.outWidth + ox) * s.channels + c] = sum / Double(s.size * s.size)
        } } } }
        return y
    }

    func avgPool(_ s: PoolShape, _ x: [Float], pool: WorkerPool) -> [Float] {
        var y = [Float](repeating: .nan, count: s.outputCount)
        y.withUnsafeMutableBufferPointer { avgPoolForward(s, input: x, output: $0.baseAddress!, pool: pool) }
        return y
    }

    func avgPoolGradient(_ s: PoolShape, _ dy: [Float], pool: WorkerPool) -> [Float] {
        var dx = [Float](repeating: .nan, count: s.inputCount)
        dx.withUnsafeMutableBufferPointer { avgPoolBackward(s, outputGradient: dy, inputGradient: $0.baseAddress!, pool: pool) }
        return dx
    }

    /// (size, stride): non-overlapping, overlapping (stride < size) and with gaps (stride > size);
    /// 19 channels leave a tail after a 16-channel block.
    @Test("average pooling forward matches the reference and backward matches central differences",
          arguments: [(2, 2), (3, 2), (3, 1), (2, 3)])
    func averagePooling(window: (Int, Int)) {
        let s = PoolShape(batch: 2, height: 7, width: 8, channels: 19, size: window.0, stride: window.1)
        let x = randomArray(s.inputCount, seed: 1), r = randomArray(s.outputCount, seed: 2)
        #expect(maxRelativeError(avgPool(s, x, pool: pool), referenceAvgPool(s, x.map(Double.init)).map(Float.init)) < 1e-6)
        let dx = avgPoolGradient(s, r, pool: pool)
        #expect(gradientError(dx, numericGradient(x) { weightedSum(referenceAvgPool(s, $0), r) }) < 1e-5)
    }

    func referenceGlobalAvgPool(batch: Int, pixels: Int, channels: Int, _ x: [Double]) -> [Double] {
        (0..<(batch * channels)).map { i in
            let n = i / channels, c = i % channels
            return (0..<pixels).reduce(0.0) { $0 + x[(n * pixels + $1) * channels + c] } / Double(pixels)
        }
    }

    func globalAvgPool(batch: Int, pixels: Int, channels: Int, _ x: [Float], pool: WorkerPool) -> [Float] {
        var y = [Float](repeating: .nan, count: batch * channels)
        y.withUnsafeMutableBufferPointer {
            globalAvgPoolForward(batch: batch, pixels: pixels, channels: channels, input: x, output: $0.baseAddress!, pool: pool)
        }
        return y
    }

    func globalAvgPoolGradient(batch: Int, pixels: Int, channels: Int, _ dy: [Float], pool: WorkerPool) -> [Float] {
        var dx = [Float](repeating: .nan, count: batch * pixels * channels)
        dx.withUnsafeMutableBufferPointer {
            globalAvgPoolBackward(batch: batch, pixels: pixels, channels: channels, outputGradient: dy, inputGradient: $0.baseAddress!, pool: pool)
        }
        return dx
    }

    @Test("global average pooling forward matches the reference and backward matches central differences",
          arguments: [(3, 10, 35), (2, 64, 16)])
    func globalAveragePooling(shape: (Int, Int, Int)) {
        let (batch, pixels, channels) = shape
        let x = randomArray(batch * pixels * channels, seed: 3), r = randomArray(batch * channels, seed: 4)
        let want = referenceGlobalAvgPool(batch: batch, pixels: pixels, channels: channels, x.map(Double.init))
        #expect(maxRelativeError(globalAvgPool(batch: batch, pixels: pixels, channels: channels, x, pool: pool), want.map(Float.init)) < 1e-6)
        let dx = globalAvgPoolGradient(batch: batch, pixels: pixels, channels: channels, r, pool: pool)
        #expect(gradientError(dx, numericGradient(x) {
            weightedSum(referenceGlobalAvgPool(batch: batch, pixels: pixels, channels: channels, $0), r)
        }) < 1e-5)
    }

    /// The helpers of a pool may not get to run a task of a small job (they are asleep, or the
    /// machine is busy), so the 3-thread run is repeated: a result that depended on which worker
    /// ran which task would show in one of the repeats.
    @Test("average and global average pooling are bitwise identical with 1 and 3 threads")
    func poolsThreadCountIndependence() {
        let one = WorkerPool(threads: 1), three = WorkerPool(threads: 3)
        let s = PoolShape(batch: 16, height: 16, width: 16, channels: 24, size: 3, stride: 2)
        let x = randomArray(s.inputCount, seed: 5), dy = randomArray(s.outputCount, seed: 6)
        // Several tasks of several images each for the global pool.
        let (batch, pixels, channels) = (64, 64, 64)
        let gx = randomArray(batch * pixels * channels, seed: 7), gdy = randomArray(batch * channels, seed: 8)
        func results(_ pool: WorkerPool) -> [[UInt32]] {
            [avgPool(s, x, pool: pool), avgPoolGradient(s, dy, pool: pool),
             globalAvgPool(batch: batch, pixels: pixels, channels: channels, gx, pool: pool),
             globalAvgPoolGradient(batch: batch, pixels: pixels, channels: channels, gdy, pool: pool)].map { $0.map(\.bitPattern) }
        }
        let want = results(one)
        for _ in 0..<10 { #expect(results(three) == want) }
    }

    // MARK: ReLU done by the max pool

    @Test("a max pool that does the ReLU before it equals ReLU then pool bit for bit, forward and backward, and both the scatter of dy",
          arguments: [(6, 2, 2), (16, 2, 2), (32, 2, 2), (3, 3, 2), (24, 3, 2), (40, 2, 2)])
    func reluInMaxPool(shape: (channels: Int, size: Int, stride: Int)) {
        let s = PoolShape(batch: 3, height: 9, width: 11, channels: shape.channels, size: shape.size, stride: shape.stride)
        // Values around zero, some exactly zero, so that whole windows are negative or tied.
        let x = randomArray(s.inputCount, seed: 11).map { $0 < -0.8 ? 0 : $0 - 0.3 }
        let dy = randomArray(s.outputCount, seed: 12)
        var rectified = [Float](repeating: 0, count: s.inputCount)
        var (y0, y1) = ([Float](repeating: 0, count: s.outputCount), [Float](repeating: 0, count: s.outputCount))
        var (a0, a1) = ([Int32](repeating: 0, count: s.outputCount), [Int32](repeating: 0, count: s.outputCount))
        var (dx0, dx1) = ([Float](repeating: 0, count: s.inputCount), [Float](repeating: 0, count: s.inputCount))
        reluForward(x, &rectified, count: s.inputCount, pool: pool)
        maxPoolForward(s, input: rectified, output: &y0, argmax: &a0, pool: pool)
        maxPoolBackward(s, outputGradient: dy, argmax: a0, inputGradient: &dx0, pool: pool)
        reluBackward(output: rectified, outputGradient: dx0, inputGradient: &dx0, count: s.inputCount, pool: pool)
        maxPoolForward(s, input: x, output: &y1, argmax: &a1, relu: true, pool: pool)
        maxPoolBackward(s, outputGradient: dy, argmax: a1, inputGradient: &dx1, reluOutput: y1, pool: pool)
        // The gradient as a scatter onto zeros, then the ReLU's mask: what both must equal.
        var reference = [Float](repeating: 0, count: s.inputCount)
        let perImage = s.outHeight * s.outWidth * s.channels, imageSize = s.height * s.width * s.channels
        for i in 0..<s.outputCount { reference[i / perImage * imageSize + Int(a0[i])] += dy[i] }
        reference = zip(reference, rectified).map { $1 > 0 ? $0 : 0 }
        #expect(y1.map(\.bitPattern) == y0.map(\.bitPattern))
        #expect(dx0.map(\.bitPattern) == reference.map(\.bitPattern))
        #expect(dx1.map(\.bitPattern) == dx0.map(\.bitPattern))
        #expect(y1.contains(0) && y1.contains { $0 > 0 }, "the case needs both rectified and positive windows")
    }

    // MARK: Activations

    typealias Kernel = @Sendable (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, WorkerPool) -> Void
    typealias BackwardKernel = @Sendable (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, WorkerPool) -> Void

    static let activations: [(name: String, forward: Kernel, backward: BackwardKernel, reference: @Sendable (Double) -> Double)] = [
        ("sigmoid", { sigmoidForward($0, $1, count: $2, pool: $3) },
         { sigmoidBackward(output: $0, outputGradient: $1, inputGradient: $2, count: $3, pool: $4) }, { 1 / (1 + exp(-$0)) }),
        ("tanh", { tanhForward($0, $1, count: $2, pool: $3) },
         { tanhBackward(output: $0, outputGradient: $1, inputGradient: $2, count: $3, pool: $4) }, { tanh($0) }),
    ]

    func apply(_ kernel: Kernel, _ x: [Float]) -> [Float] {
        var y = [Float](repeating: .nan, count: x.count)
        y.withUnsafeMutableBufferPointer { kernel(x, $0.baseAddress!, x.count, pool) }
        return y
    }

    /// Forward within a few float ulps of the double-precision function, across the small-|x|
    /// polynomial, the exponential branch and saturation; finite and in range at ±100 and
    /// beyond; the last partial vector (1003 elements) and in-place use included.
    @Test("sigmoid and tanh forward: accurate, in place, and finite for large |x|", arguments: [0, 1])
    func activationForward(which: Int) {
        let a = PoolingActivationTests.activations[which]
        var x = randomArray(1003, seed: 9, in: -12...12)
        x += [0, -0.0, 1e-7, -1e-7, 0.3, -0.62, 0.63, 20, -20, 60, -60, 88, -88, 100, -100, 1e4, -1e4, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        var y = x
        y.withUnsafeMutableBufferPointer { a.forward($0.baseAddress!, $0.baseAddress!, x.count, pool) }
        #expect(y == apply(a.forward, x), "\(a.name) in place")
        for (xi, yi) in zip(x, y) {
            let want = a.reference(Double(xi))
            #expect(yi.isFinite && abs(Double(yi)) <= 1, "\(a.name)(\(xi)) = \(yi)")
            // Relative error where the value is a normal float; below that, absolute.
            #expect(abs(Double(yi) - want) <= max(1e-6 * abs(want), 1.2e-38), "\(a.name)(\(xi)) = \(yi), want \(want)")
        }
    }

    @Test("sigmoid and tanh backward match central differences; dx may alias dy", arguments: [0, 1])
    func activationBackward(which: Int) {
        let a = PoolingActivationTests.activations[which]
        let x = randomArray(1003, seed: 10, in: -5...5), r = randomArray(1003, seed: 11)
        let y = apply(a.forward, x)
        var dx = r   // in place
        dx.withUnsafeMutableBufferPointer { a.backward(y, $0.baseAddress!, $0.baseAddress!, x.count, pool) }
        #expect(gradientError(dx, numericGradient(x) { weightedSum($0.map(a.reference), r) }) < 1e-5, "\(a.name)")
    }

    @Test("residual addition: y = a + b, in place on either input, gradient dy to both")
    func residualAddition() {
        let a = randomArray(1003, seed: 12), b = randomArray(1003, seed: 13), r = randomArray(1003, seed: 14)
        var y = [Float](repeating: .nan, count: a.count)
        y.withUnsafeMutableBufferPointer { addElementwise(a, b, $0.baseAddress!, count: a.count, pool: pool) }
        #expect(y == zip(a, b).map { $0 + $1 })
        var inA = a, inB = b
        inA.withUnsafeMutableBufferPointer { addElementwise($0.baseAddress!, b, $0.baseAddress!, count: a.count, pool: pool) }
        inB.withUnsafeMutableBufferPointer { addElementwise(a, $0.baseAddress!, $0.baseAddress!, count: a.count, pool: pool) }
        #expect(inA == y && inB == y)
        // d(Σ y·r)/da = d(Σ y·r)/db = r: the backward of the join passes dy on unchanged.
        func kernelLoss(_ a: [Double], _ b: [Double]) -> Double {
            var y = [Float](repeating: .nan, count: a.count)
            y.withUnsafeMutableBufferPointer { addElementwise(a.map(Float.init), b.map(Float.init), $0.baseAddress!, count: a.count, pool: pool) }
            return weightedSum(y, r)
        }
        let b64 = b.map(Double.init), a64 = a.map(Double.init)
        // The kernel's float rounding of a + b (≤ 6e-8) over 2·eps bounds the difference error at ~3e-6.
        #expect(gradientError(r, numericGradient(a, eps: 1e-2) { kernelLoss($0, b64) }) < 1e-4)
        #expect(gradientError(r, numericGradient(b, eps: 1e-2) { kernelLoss(a64, $0) }) < 1e-4)
    }
}
