import ConvCore

/// Deterministic pseudo-random values in [lo, hi).
func randomArray(_ count: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
    var rng = KeyedRandom(seed: seed, stream: .synthetic, 99)
    return (0..<count).map { _ in range.lowerBound + (range.upperBound - range.lowerBound) * rng.nextFloat() }
}

/// Elements whose bits differ (a count, so that a failure does not print every float); every
/// element when the lengths differ.
func differences(_ a: [Float], _ b: [Float]) -> Int {
    a.count == b.count ? zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count : max(a.count, b.count)
}

/// Σ y·r in double precision: a scalar loss whose gradient with respect to y is r.
func weightedSum(_ y: [Float], _ r: [Float]) -> Double {
    zip(y, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

/// Largest |a−b| relative to the root-mean-square of the reference `b`. Sums of many random
/// products can cancel to near zero, where an element-wise relative error measures only luck.
func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    let rms = (b.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(b.count, 1))).squareRoot()
    var worst: Float = 0
    for (x, y) in zip(a, b) {
        // A NaN (an element never written) must fail: max(worst, NaN) would keep `worst`.
        if (x - y).isNaN { return .infinity }
        worst = max(worst, abs(x - y))
    }
    return worst / Float(max(rms, 1e-6))
}

/// Central finite differences of `loss` at a sample of coordinates of `x`, compared with `analytic`.
/// Returns the worst relative error. The loss is evaluated in double precision.
func finiteDifferenceError(_ x: [Float], analytic: [Float], eps: Float = 1e-2, samples: Int = 24,
                           seed: UInt64 = 1, loss: ([Float]) -> Double) -> Double {
    var rng = KeyedRandom(seed: seed, stream: .synthetic, 7)
    var worst = 0.0
    let indices = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in rng.nextInt(below: x.count) }
    for i in indices {
        var plus = x, minus = x
        plus[i] += eps
        minus[i] -= eps
        let numeric = (loss(plus) - loss(minus)) / Double(2 * eps)
        let err = abs(numeric - Double(analytic[i])) / max(abs(numeric), abs(Double(analytic[i])), 1e-2)
        if err.isNaN { return .infinity }
        worst = max(worst, err)
    }
    return worst
}

/// Runs `body` with mutable pointers to copies of the arrays and returns the arrays afterwards.
func withPointers<R>(_ a: inout [Float], _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    a.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// Central differences of a double-precision `loss` at coordinates `indices` of `x` (all by
/// default). With eps = 1e-4 the truncation error is O(eps²·f''') ≈ 1e-8 and the rounding error
/// about 1e-16/eps = 1e-12, both far below the ~1e-6 error of a float kernel, so the comparison
/// can be tight (see `gradientError`).
func numericGradient(_ x: [Float], eps: Double = 1e-4, indices: [Int]? = nil, loss: ([Double]) -> Double) -> [Double] {
    let base = x.map(Double.init)
    return (indices ?? Array(x.indices)).map { i in
        var plus = base, minus = base
        plus[i] += eps
        minus[i] -= eps
        return (loss(plus) - loss(minus)) / (2 * eps)
    }
}

/// Largest |analytic − numeric| relative to the root-mean-square of `numeric` (gradients such as
/// batch norm's sum to zero per channel, so single elements can be near zero).
func gradientError(_ analytic: [Float], _ numeric: [Double]) -> Double {
    precondition(analytic.count == numeric.count)
    let rms = (numeric.reduce(0) { $0 + $1 * $1 } / Double(max(numeric.count, 1))).squareRoot()
    let worst = zip(analytic, numeric).reduce(0.0) { max($0, abs(Double($1.0) - $1.1)) }
    if zip(analytic, numeric).contains(where: { (Double($0.0) - $0.1).isNaN }) { return .infinity }
    return worst / max(rms, 1e-12)
}

/// Σ y·r with both in double precision.
func weightedSum(_ y: [Double], _ r: [Float]) -> Double {
    zip(y, r).reduce(0.0) { $0 + $1.0 * Double($1.1) }
}
