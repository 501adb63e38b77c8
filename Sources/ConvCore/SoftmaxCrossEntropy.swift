#if canImport(Glibc)
import Glibc
#endif

/// Softmax cross-entropy over `batch` rows of `classes` logits.
///
/// Returns the summed (not averaged) loss and the number of rows whose arg-max equals the
/// label; writes `dLogits = (softmax − onehot) · gradientScale`. The caller picks the scale
/// (1/global batch in data-parallel training, so that summing ranks' gradients averages them).
public func softmaxCrossEntropy(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                batch: Int, classes: Int, gradientScale: Float,
                                logitGradient dLogits: UnsafeMutablePointer<Float>?) -> (lossSum: Double, correct: Int) {
    var lossSum = 0.0, correct = 0
    for n in 0..<batch {
        let z = logits + n * classes
        let label = Int(labels[n])
        var maxZ = z[0], argMax = 0
        for j in 1..<classes where z[j] > maxZ { maxZ = z[j]; argMax = j }
        if argMax == label { correct += 1 }
        var sum = 0.0
        for j in 0..<classes { sum += exp(Double(z[j] - maxZ)) }
        let logSum = log(sum)
        lossSum += logSum - Double(z[label] - maxZ)
        if let d = dLogits {
            let g = d + n * classes
            for j in 0..<classes {
                let p = exp(Double(z[j] - maxZ) - logSum)
                g[j] = Float(p - (j == label ? 1 : 0)) * gradientScale
            }
        }
    }
    return (lossSum, correct)
}
