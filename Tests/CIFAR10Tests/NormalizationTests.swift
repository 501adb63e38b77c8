import CIFAR10
import Testing

@Suite struct NormalizationTests {
    @Test func matchesHandComputedStatistics() {
        // Two images. R: all 0, then all 255. G: all 51 in both (no variance).
        // B: every fourth pixel 255 and the rest 0, then all 102.
        var pixels = [UInt8](repeating: 0, count: 2 * 3072)
        for i in 0..<1024 {
            pixels[3072 + i] = 255
            pixels[1024 + i] = 51
            pixels[3072 + 1024 + i] = 51
            pixels[2048 + i] = i % 4 == 0 ? 255 : 0
            pixels[3072 + 2048 + i] = 102
        }
        let n = Normalization.measure(LabeledImages(pixels: pixels, labels: [0, 1]))
        // R: values 0 and 1, half each.
        #expect(abs(n.mean[0] - 0.5) < 1e-7 && abs(n.std[0] - 0.5) < 1e-7)
        // G: constant 0.2; a zero std is replaced by 1 so the channel normalises to 0, not NaN.
        #expect(abs(n.mean[1] - 0.2) < 1e-7 && n.std[1] == 1)
        // B: mean (0.25 * 1 + 0.4) / 2 = 0.325; E[x^2] = (0.25 + 0.16) / 2 = 0.205;
        // variance 0.205 - 0.325^2 = 0.099375.
        #expect(abs(n.mean[2] - 0.325) < 1e-7)
        #expect(abs(n.std[2] - Float(0.099375.squareRoot())) < 1e-7)
    }

    @Test func agreesWithTwoPassDoubleComputation() {
        let images = randomImages(count: 37, seed: 9)
        let n = Normalization.measure(images)
        for c in 0..<3 {
            var values: [Double] = []
            for i in 0..<images.count { for p in 0..<1024 { values.append(Double(images.pixels[i * 3072 + c * 1024 + p]) / 255) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
            #expect(abs(Double(n.mean[c]) - mean) < 1e-6)
            #expect(abs(Double(n.std[c]) - variance.squareRoot()) < 1e-6)
        }
    }

    @Test func emptySetIsNeutral() {
        let n = Normalization.measure(LabeledImages(pixels: [], labels: []))
        #expect(n == Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
    }
}
