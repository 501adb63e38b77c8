import ConvCore
import Foundation
import Testing

/// Batch norm in training mode: the kernels against a double-precision reference and its
/// central differences, the two-rank path (sums of half-batches added, as an all-reduce would),
/// and thread-count independence.
@Suite struct BatchNormTests {
    let pool = WorkerPool(threads: 2)
    static let epsilon = 1e-5

    /// Channels 19 and 5 leave a tail after the 16-channel blocks; 32 is two whole blocks.
    static let shapes = [
        NormShape(batch: 3, pixels: 5, channels: 19),
        NormShape(batch: 4, pixels: 3, channels: 32),
        NormShape(batch: 2, pixels: 6, channels: 5),
    ]

    /// Inputs with a non-zero mean per channel, so the centring matters.
    func input(_ s: NormShape, seed: UInt64) -> [Float] {
        randomArray(s.count, seed: seed).enumerated().map { i, v in 2 * v + Float(i % s.channels) * 0.3 - 1 }
    }

    /// y = (x − mean)/√(var + ε)·γ + β with the batch's mean and (biased) variance, in double.
    func reference(_ s: NormShape, _ x: [Double], scale: [Double], shift: [Double]) -> [Double] {
        let c = s.channels, n = Double(s.batch * s.pixels)
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        for (i, v) in x.enumerated() { mean[i % c] += v / n }
        for (i, v) in x.enumerated() { variance[i % c] += (v - mean[i % c]) * (v - mean[i % c]) / n }
        return x.enumerated().map { i, v in
            (v - mean[i % c]) / (variance[i % c] + BatchNormTests.epsilon).squareRoot() * scale[i % c] + shift[i % c]
        }
    }

    /// mean and invStd from (possibly all-rank) sums, as the trainer computes them.
    func moments(_ sums: [Double], channels c: Int, count: Int) -> (mean: [Float], invStd: [Float]) {
        let n = Double(count)
        let mean = (0..<c).map { sums[$0] / n }
        let invStd = (0..<c).map { 1 / (sums[c + $0] / n - mean[$0] * mean[$0] + BatchNormTests.epsilon).squareRoot() }
        return (mean.map(Float.init), invStd.map(Float.init))
    }

    func statistics(_ s: NormShape, _ x: [Float], pool: WorkerPool) -> [Double] {
        var sums = [Double](repeating: .nan, count: 2 * s.channels)
        sums.withUnsafeMutableBufferPointer { batchNormStatistics(s, input: x, sums: $0.baseAddress!, pool: pool) }
        return sums
    }

    func backwardStatistics(_ s: NormShape, _ x: [Float], _ dy: [Float], mean: [Float], invStd: [Float], pool: WorkerPool) -> [Double] {
        var sums = [Double](repeating: .nan, count: 2 * s.channels)
        sums.withUnsafeMutableBufferPointer {
            batchNormBackwardStatistics(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, sums: $0.baseAddress!, pool: pool)
        }
        return sums
    }

    func backwardData(_ s: NormShape, _ x: [Float], _ dy: [Float], mean: [Float], invStd: [Float], scale: [Float],
                      sums: [Double], count: Int) -> [Float] {
        var dx = [Float](repeating: .nan, count: s.count)
        dx.withUnsafeMutableBufferPointer {
            batchNormBackwardData(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, scale: scale, sums: sums,
                                  count: count, inputGradient: $0.baseAddress!, pool: pool)
        }
        return dx
    }

    @Test("statistics and forward match the double-precision reference; y may alias x", arguments: shapes)
    func forward(s: NormShape) {
        let x = input(s, seed: 1), scale = randomArray(s.channels, seed: 2), shift = randomArray(s.channels, seed: 3)
        let sums = statistics(s, x, pool: pool)
        for c in 0..<s.channels {
            let values = stride(from: c, to: s.count, by: s.channels).map { Double(x[$0]) }
            #expect(abs(sums[c] - values.reduce(0, +)) < 1e-9)
            #expect(abs(sums[s.channels + c] - values.reduce(0) { $0 + $1 * $1 }) < 1e-9)
        }
        let (mean, invStd) = moments(sums, channels: s.channels, count: s.batch * s.pixels)
        var y = x   // in place
        y.withUnsafeMutableBufferPointer {
            batchNormForward(s, input: $0.baseAddress!, mean: mean, invStd: invStd, scale: scale, shift: shift, output: $0.baseAddress!, pool: pool)
        }
        let want = reference(s, x.map(Double.init), scale: scale.map(Double.init), shift: shift.map(Double.init))
        #expect(maxRelativeError(y, want.map(Float.init)) < 1e-5)
    }

    /// dx, dγ = Σdy·x̂ and dβ = Σdy against central differences of Σ y·r with the batch's own
    /// statistics (training mode). Every coordinate is checked; the kernels are float, the
    /// reference and its differences double, so 1e-4 of the gradient's RMS is tight (a wrong
    /// term is off by O(1)).
    @Test("training-mode gradients (input, scale, shift) match central differences", arguments: shapes)
    func gradients(s: NormShape) {
        let x = input(s, seed: 4), scale = randomArray(s.channels, seed: 5), shift = randomArray(s.channels, seed: 6)
        let r = randomArray(s.count, seed: 7)   // dLoss/dy for loss = Σ y·r
        let count = s.batch * s.pixels
        let (mean, invStd) = moments(statistics(s, x, pool: pool), channels: s.channels, count: count)
        let sums = backwardStatistics(s, x, r, mean: mean, invStd: invStd, pool: pool)
        var dy = r   // dx overwrites dy in place
        dy = backwardData(s, x, dy, mean: mean, invStd: invStd, scale: scale, sums: sums, count: count)
        let dScale = (0..<s.channels).map { Float(sums[s.channels + $0]) }, dShift = (0..<s.channels).map { Float(sums[$0]) }

        let x64 = x.map(Double.init), scale64 = scale.map(Double.init), shift64 = shift.map(Double.init)
        #expect(gradientError(dy, numericGradient(x) { weightedSum(reference(s, $0, scale: scale64, shift: shift64), r) }) < 1e-4, "dx")
        #expect(gradientError(dScale, numericGradient(scale) { weightedSum(reference(s, x64, scale: $0, shift: shift64), r) }) < 1e-4, "dscale")
        #expect(gradientError(dShift, numericGradient(shift) { weightedSum(reference(s, x64, scale: scale64, shift: $0), r) }) < 1e-4, "dshift")
    }

    @Test("dx may alias dy")
    func inPlaceBackward() {
        let s = BatchNormTests.shapes[0]
        let x = input(s, seed: 4), scale = randomArray(s.channels, seed: 5), r = randomArray(s.count, seed: 7)
        let count = s.batch * s.pixels
        let (mean, invStd) = moments(statistics(s, x, pool: pool), channels: s.channels, count: count)
        let sums = backwardStatistics(s, x, r, mean: mean, invStd: invStd, pool: pool)
        let separate = backwardData(s, x, r, mean: mean, invStd: invStd, scale: scale, sums: sums, count: count)
        var g = r
        g.withUnsafeMutableBufferPointer {
            batchNormBackwardData(s, input: x, outputGradient: $0.baseAddress!, mean: mean, invStd: invStd, scale: scale,
                                  sums: sums, count: count, inputGradient: $0.baseAddress!, pool: pool)
        }
        #expect(g.map(\.bitPattern) == separate.map(\.bitPattern))
    }

    /// A ReLU fused into the norm gives the bits of the norm followed by the ReLU's own
    /// kernels: forward, and backward with the ReLU's mask taken from the recomputed output.
    @Test("batch norm with a fused ReLU has the bits of batch norm, then ReLU", arguments: shapes)
    func fusedReLU(s: NormShape) {
        let x = input(s, seed: 8), scale = randomArray(s.channels, seed: 9), shift = randomArray(s.channels, seed: 10)
        let dy = randomArray(s.count, seed: 11), count = s.batch * s.pixels
        let (mean, invStd) = moments(statistics(s, x, pool: pool), channels: s.channels, count: count)
        var separate = [Float](repeating: .nan, count: s.count), fused = separate
        separate.withUnsafeMutableBufferPointer { y in
            batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: scale, shift: shift, output: y.baseAddress!, pool: pool)
            reluForward(y.baseAddress!, y.baseAddress!, count: s.count, pool: pool)
        }
        fused.withUnsafeMutableBufferPointer {
            batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: scale, shift: shift, output: $0.baseAddress!, relu: true, pool: pool)
        }
        #expect(fused.map(\.bitPattern) == separate.map(\.bitPattern))
        #expect(fused.contains(0) && fused.contains { $0 > 0 }, "the ReLU cuts some outputs and passes others")

        var masked = [Float](repeating: .nan, count: s.count)
        masked.withUnsafeMutableBufferPointer {
            reluBackward(output: separate, outputGradient: dy, inputGradient: $0.baseAddress!, count: s.count, pool: pool)
        }
        let separateSums = backwardStatistics(s, x, masked, mean: mean, invStd: invStd, pool: pool)
        let separateDx = backwardData(s, x, masked, mean: mean, invStd: invStd, scale: scale, sums: separateSums, count: count)
        var fusedSums = [Double](repeating: .nan, count: 2 * s.channels), fusedDx = [Float](repeating: .nan, count: s.count)
        scale.withUnsafeBufferPointer { scaleBuffer in
            shift.withUnsafeBufferPointer { shiftBuffer in
                let relu = FusedReLU(scale: scaleBuffer.baseAddress!, shift: shiftBuffer.baseAddress!)
                fusedSums.withUnsafeMutableBufferPointer {
                    batchNormBackwardStatistics(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, relu: relu,
                                                sums: $0.baseAddress!, pool: pool)
                }
                fusedDx.withUnsafeMutableBufferPointer {
                    batchNormBackwardData(s, input: x, outputGradient: dy, mean: mean, invStd: invStd, scale: scale, relu: relu,
                                          sums: fusedSums, count: count, inputGradient: $0.baseAddress!, pool: pool)
                }
            }
        }
        #expect(fusedSums.map(\.bitPattern) == separateSums.map(\.bitPattern))
        #expect(fusedDx.map(\.bitPattern) == separateDx.map(\.bitPattern))
    }

    /// Two "ranks" each hold half the batch: their sums, added as an all-reduce would, equal the
    /// whole batch's, and normalising and back-propagating each half with the added sums and the
    /// whole count gives the whole batch's output and input gradient.
    @Test("two ranks' summed statistics reproduce the whole-batch computation")
    func twoRanks() {
        let whole = NormShape(batch: 6, pixels: 7, channels: 21), half = NormShape(batch: 3, pixels: 7, channels: 21)
        let c = whole.channels, count = whole.batch * whole.pixels
        let x = input(whole, seed: 8), r = randomArray(whole.count, seed: 9)
        let scale = randomArray(c, seed: 10), shift = randomArray(c, seed: 11)
        let xs = [Array(x[..<half.count]), Array(x[half.count...])], rs = [Array(r[..<half.count]), Array(r[half.count...])]

        let wholeSums = statistics(whole, x, pool: pool)
        let rankSums = zip(statistics(half, xs[0], pool: pool), statistics(half, xs[1], pool: pool)).map { $0 + $1 }
        for i in 0..<(2 * c) { #expect(abs(rankSums[i] - wholeSums[i]) <= 1e-12 * max(1, abs(wholeSums[i]))) }

        let (mean, invStd) = moments(rankSums, channels: c, count: count)
        func forward(_ s: NormShape, _ x: [Float]) -> [Float] {
            var y = [Float](repeating: .nan, count: s.count)
            y.withUnsafeMutableBufferPointer {
                batchNormForward(s, input: x, mean: mean, invStd: invStd, scale: scale, shift: shift, output: $0.baseAddress!, pool: pool)
            }
            return y
        }
        #expect(forward(half, xs[0]) + forward(half, xs[1]) == forward(whole, x))

        let wholeGradientSums = backwardStatistics(whole, x, r, mean: mean, invStd: invStd, pool: pool)
        let rankGradientSums = zip(backwardStatistics(half, xs[0], rs[0], mean: mean, invStd: invStd, pool: pool),
                                   backwardStatistics(half, xs[1], rs[1], mean: mean, invStd: invStd, pool: pool)).map { $0 + $1 }
        for i in 0..<(2 * c) { #expect(abs(rankGradientSums[i] - wholeGradientSums[i]) <= 1e-12 * max(1, abs(wholeGradientSums[i]))) }

        let wholeDx = backwardData(whole, x, r, mean: mean, invStd: invStd, scale: scale, sums: wholeGradientSums, count: count)
        let rankDx = (0..<2).flatMap {
            backwardData(half, xs[$0], rs[$0], mean: mean, invStd: invStd, scale: scale, sums: rankGradientSums, count: count)
        }
        #expect(maxRelativeError(rankDx, wholeDx) < 1e-6)
        // And the whole-batch gradient is the true one.
        let scale64 = scale.map(Double.init), shift64 = shift.map(Double.init)
        #expect(gradientError(rankDx, numericGradient(x) { weightedSum(reference(whole, $0, scale: scale64, shift: shift64), r) }) < 1e-4)
    }

    @Test("statistics are bitwise identical with 1 and 3 threads")
    func threadCountIndependence() {
        let s = NormShape(batch: 9, pixels: 50, channels: 40)
        let x = input(s, seed: 12), dy = randomArray(s.count, seed: 13)
        let mean = randomArray(s.channels, seed: 14), invStd = randomArray(s.channels, seed: 15, in: 0.5...2)
        let one = WorkerPool(threads: 1), three = WorkerPool(threads: 3)
        let forward = statistics(s, x, pool: one).map(\.bitPattern)
        let backward = backwardStatistics(s, x, dy, mean: mean, invStd: invStd, pool: one).map(\.bitPattern)
        // Repeated: a pool's helpers may not get a task of every run (see the pooling test).
        for _ in 0..<10 {
            #expect(statistics(s, x, pool: three).map(\.bitPattern) == forward)
            #expect(backwardStatistics(s, x, dy, mean: mean, invStd: invStd, pool: three).map(\.bitPattern) == backward)
        }
    }
}
