#if canImport(Glibc)
import Glibc
#endif

/// Softmax cross-entropy over `batch` rows of `classes` logits, against targets smoothed by
/// `labelSmoothing` ε: q = (1 − ε)·onehot + ε/classes (ε = 0: the plain one-hot loss).
///
/// Returns the summed (not averaged) loss, in row order, and the number of rows whose arg-max
/// equals the label; writes `dLogits = (softmax − q) · gradientScale`. The caller picks the scale
/// (1/global batch in data-parallel training, so that summing ranks' gradients averages them).
/// `rowLosses`, if given, receives each row's loss, for sums taken in another order.
public func softmaxCrossEntropy(logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                batch: Int, classes: Int, labelSmoothing: Float = 0, gradientScale: Float,
                                logitGradient dLogits: UnsafeMutablePointer<Float>?,
                                rowLosses: UnsafeMutablePointer<Double>? = nil) -> (lossSum: Double, correct: Int) {
    var lossSum = 0.0, correct = 0
    let spread = Double(labelSmoothing) / Double(classes), onTarget = 1 - Double(labelSmoothing)
    for n in 0..<batch {
        let z = logits + n * classes
        let label = Int(labels[n])
        var maxZ = z[0], argMax = 0
        for j in 1..<classes where z[j] > maxZ { maxZ = z[j]; argMax = j }
        if argMax == label { correct += 1 }
        var sum = 0.0, sumShifted = 0.0
        for j in 0..<classes {
            sum += exp(Double(z[j] - maxZ))
            sumShifted += Double(z[j] - maxZ)
        }
        let logSum = log(sum)
        // −Σ q_j log p_j with log p_j = (z_j − max) − logSum.
        let loss = logSum - onTarget * Double(z[label] - maxZ) - spread * sumShifted
        lossSum += loss
        rowLosses?[n] = loss
        if let d = dLogits {
            let g = d + n * classes
            for j in 0..<classes {
                let p = exp(Double(z[j] - maxZ) - logSum)
                g[j] = Float(p - (j == label ? onTarget : 0) - spread) * gradientScale
            }
        }
    }
    return (lossSum, correct)
}
