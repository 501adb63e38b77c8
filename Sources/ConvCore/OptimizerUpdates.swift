/// The optimizers' element-wise updates, 16 parameters at a time, with PyTorch's formulas
/// (torch.optim.SGD and torch.optim.Adam) evaluated in the order written: every lane rounds as the
/// one-parameter formula would, so the vectors give the bits of a scalar loop. The caller splits
/// the buffer into runs of equal weight decay and hands each run over; a run's last vector is
/// partial (the lanes past it are zeros and are not stored).
///
///     // SGD, Nesterov momentum 0.9, weight decay 5e-4, on parameters i..<j
///     sgdUpdate(SGDUpdate(learningRate: 0.1, weightDecay: 5e-4, momentum: 0.9, nesterov: true),
///               parameters: p + i, gradients: g + i, momentumBuffer: buf + i, count: j - i)

/// One SGD step's constants.
public struct SGDUpdate: Sendable {
    public let learningRate: Float, weightDecay: Float, momentum: Float, nesterov: Bool
    public init(learningRate: Float, weightDecay: Float, momentum: Float, nesterov: Bool) {
        self.learningRate = learningRate; self.weightDecay = weightDecay; self.momentum = momentum; self.nesterov = nesterov
    }
}

/// d = g + decay·p; with momentum μ, buf = μ·buf + d and d = d + μ·buf (Nesterov) or buf; then
/// p −= lr·d. Without momentum `momentumBuffer` is not touched.
public func sgdUpdate(_ u: SGDUpdate, parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                      momentumBuffer buf: UnsafeMutablePointer<Float>, count: Int) {
    let lr = SIMD16(repeating: u.learningRate), decay = SIMD16(repeating: u.weightDecay), mu = SIMD16(repeating: u.momentum)
    // Three loops rather than tests per vector: the flags are the same for the whole buffer.
    switch (u.momentum != 0, u.nesterov) {
    case (false, _):
        forEachBlockOf16(count) { i, n in
            let w = loadVector(p + i, count: n)
            storeVector(p + i, w - lr * (loadVector(g + i, count: n) + decay * w), count: n)
        }
    case (true, false):
        forEachBlockOf16(count) { i, n in
            let w = loadVector(p + i, count: n)
            let b = mu * loadVector(buf + i, count: n) + (loadVector(g + i, count: n) + decay * w)
            storeVector(buf + i, b, count: n)
            storeVector(p + i, w - lr * b, count: n)
        }
    case (true, true):
        forEachBlockOf16(count) { i, n in
            let w = loadVector(p + i, count: n), d = loadVector(g + i, count: n) + decay * w
            let b = mu * loadVector(buf + i, count: n) + d
            storeVector(buf + i, b, count: n)
            storeVector(p + i, w - lr * (d + mu * b), count: n)
        }
    }
}

/// One Adam step's constants: the bias corrections are folded in as PyTorch folds them.
public struct AdamUpdate: Sendable {
    public let weightDecay: Float, beta1: Float, beta2: Float, epsilon: Float
    /// lr / (1 − β₁ᵗ).
    public let stepSize: Float
    /// √(1 − β₂ᵗ).
    public let correction2Root: Float
    public init(learningRate: Float, step: Int, weightDecay: Float, beta1: Float, beta2: Float, epsilon: Float) {
        self.weightDecay = weightDecay; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        stepSize = learningRate / (1 - powf(beta1, Float(step)))
        correction2Root = (1 - powf(beta2, Float(step))).squareRoot()
    }
}

/// d = g + decay·p; m = β₁·m + (1 − β₁)·d; v = β₂·v + (1 − β₂)·d·d;
/// p −= stepSize·m / (√v / correction2Root + ε).
public func adamUpdate(_ u: AdamUpdate, parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                       firstMoments m: UnsafeMutablePointer<Float>, secondMoments v: UnsafeMutablePointer<Float>, count: Int) {
    let decay = SIMD16(repeating: u.weightDecay), beta1 = SIMD16(repeating: u.beta1), beta2 = SIMD16(repeating: u.beta2)
    let oneMinusBeta1 = SIMD16(repeating: 1 - u.beta1), oneMinusBeta2 = SIMD16(repeating: 1 - u.beta2)
    let stepSize = SIMD16(repeating: u.stepSize), root = SIMD16(repeating: u.correction2Root), epsilon = SIMD16(repeating: u.epsilon)
    forEachBlockOf16(count) { i, n in
        let w = loadVector(p + i, count: n), d = loadVector(g + i, count: n) + decay * w
        let first = beta1 * loadVector(m + i, count: n) + oneMinusBeta1 * d
        let second = beta2 * loadVector(v + i, count: n) + oneMinusBeta2 * d * d
        storeVector(m + i, first, count: n)
        storeVector(v + i, second, count: n)
        storeVector(p + i, w - stepSize * first / (second.squareRoot() / root + epsilon), count: n)
    }
}

#if canImport(Glibc)
import Glibc
#endif
