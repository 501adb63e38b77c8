import ConvCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct LabelSmoothingTests {
    @Test("smoothed cross-entropy: loss −Σ q·log softmax and gradient softmax − q, q = (1 − ε)·onehot + ε/K")
    func smoothedLoss() {
        let classes = 5, batch = 3, epsilon: Float = 0.1
        let z: [Float] = [0.3, -1.2, 2.0, 0.1, 0.0, 5.0, 4.9, -3.0, 0.2, 1.1, -0.4, 0.0, 0.9, 0.9, -2.0]
        let labels: [Int32] = [2, 1, 4]
        var gradient = [Float](repeating: 0, count: batch * classes)
        let got = gradient.withUnsafeMutableBufferPointer {
            softmaxCrossEntropy(logits: z, labels: labels, batch: batch, classes: classes, labelSmoothing: epsilon,
                                gradientScale: 0.5, logitGradient: $0.baseAddress!)
        }
        var want = 0.0
        for n in 0..<batch {
            let row = (0..<classes).map { Double(z[n * classes + $0]) }
            let logSum = log(row.map { exp($0) }.reduce(0, +))
            for j in 0..<classes {
                let q = (j == Int(labels[n]) ? 1 - Double(epsilon) : 0) + Double(epsilon) / Double(classes)
                want -= q * (row[j] - logSum)
                let p = exp(row[j] - logSum)
                #expect(abs(Double(gradient[n * classes + j]) - 0.5 * (p - q)) < 1e-6, "gradient \(n),\(j)")
            }
        }
        // The logits are Float: their differences carry ~1e-7 relative rounding.
        #expect(abs(got.lossSum - want) < 1e-6, "\(got.lossSum) vs \(want)")
        #expect(got.correct == 1)  // only the first row's arg-max is its label
    }
}
