/// Sigmoid and tanh (LeNet-5's and the lesson's classic activations) and residual addition,
/// element-wise in fixed chunks (`forEachChunk`) with SIMD16 vectors. The backward passes take
/// the forward *output*, as ReLU's does: σ' = σ(1 − σ) and tanh' = 1 − tanh², so the input need
/// not be kept.
///
/// Both are computed from e = exp(−|x|) ∈ (0, 1], which cannot overflow: large |x| saturates to
/// 0, 1 or ±1 without inf or NaN (sigmoid(x) for x < −87.3 is 0, as e^x is below the smallest
/// normal float there).

/// y = 1 / (1 + e^−x). `y` may be `x`.
public func sigmoidForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    mapVectors(x, y, count: count, pool: pool, sigmoid)
}

/// dx = dy·y·(1 − y), y the sigmoid's output. `dx` may be `dy`.
public func sigmoidBackward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                            inputGradient dx: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    scaleByDerivative(output: y, dy, dx, count: count, pool: pool) { s in s * (1 - s) }
}

/// y = tanh(x). `y` may be `x`.
public func tanhForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    mapVectors(x, y, count: count, pool: pool, hyperbolicTangent)
}

/// dx = dy·(1 − y²), y the tanh's output. `dx` may be `dy`.
public func tanhBackward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                         inputGradient dx: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    scaleByDerivative(output: y, dy, dx, count: count, pool: pool) { t in 1 - t * t }
}

/// y = f(x), 16 lanes at a time (the tail through a partial vector).
@inline(__always)
private func mapVectors(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool,
                        _ f: (SIMD16<Float>) -> SIMD16<Float>) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            storeVector(y + i, f(loadVector(x + i)))
            i += 16
        }
        if i < end { storeVector(y + i, f(loadVector(x + i, count: end - i)), count: end - i) }
    }
}

/// dx = dy·f′, with the derivative f′ computed from the activation's output y.
@inline(__always)
private func scaleByDerivative(output y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                               count: Int, pool: WorkerPool, _ derivative: (SIMD16<Float>) -> SIMD16<Float>) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i < end {
            let n = min(16, end - i)
            storeVector(dx + i, loadVector(dy + i, count: n) * derivative(loadVector(y + i, count: n)), count: n)
            i += 16
        }
    }
}

/// y = a + b, a residual connection's join. `y` may be `a` or `b`. Its backward is the identity
/// on both inputs: the caller passes dy on to both branches (or adds it into the shortcut's).
public func addElementwise(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                           count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            storeVector(y + i, loadVector(a + i) + loadVector(b + i))
            i += 16
        }
        while i < end { y[i] = a[i] + b[i]; i += 1 }
    }
}

// MARK: Vector functions

/// σ(x) from e = e^−|x|: 1/(1 + e) for x ≥ 0, e/(1 + e) for x < 0 (both without overflow).
@inline(__always) func sigmoid(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let e = exponential(-magnitude(x))
    let s = 1 / (1 + e)
    return s.replacing(with: e * s, where: x .< 0)
}

/// tanh(x): an odd polynomial for |x| < 0.625, where (1 − e)/(1 + e) would cancel, and
/// ±(1 − e)/(1 + e) with e = e^−2|x| elsewhere (Cephes' tanhf; about 2 ulp).
@inline(__always) func hyperbolicTangent(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let a = magnitude(x)
    let e = exponential(-2 * a)
    var large = (1 - e) / (1 + e)
    large.replace(with: -large, where: x .< 0)
    let z = x * x
    var p = SIMD16<Float>(repeating: 2.06390887954e-2).addingProduct(SIMD16(repeating: -5.70498872745e-3), z)
    p = SIMD16<Float>(repeating: -5.37397155531e-2).addingProduct(p, z)
    p = SIMD16<Float>(repeating: 1.33314422036e-1).addingProduct(p, z)
    p = SIMD16<Float>(repeating: -3.33332819422e-1).addingProduct(p, z)
    let small = x.addingProduct(p * z, x)
    return large.replacing(with: small, where: a .< 0.625)
}

/// |x| lane by lane (the sign bit cleared).
@inline(__always) func magnitude(_ x: SIMD16<Float>) -> SIMD16<Float> {
    unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) & 0x7fff_ffff, to: SIMD16<Float>.self)
}

/// e^x for SIMD16 lanes, Cephes' expf: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by a degree-6
/// polynomial (about 1 ulp), 2^n built in the exponent bits. Arguments are clamped to
/// [−87.3, 88.3], where 2^n stays a normal float, so the result is never inf or NaN; below
/// −87.3 (where e^x is denormal) it is 0.
@inline(__always) func exponential(_ argument: SIMD16<Float>) -> SIMD16<Float> {
    // (Selects rather than `clamped`, which compiles to a call per vector.)
    let low = SIMD16<Float>(repeating: -87.3), high = SIMD16<Float>(repeating: 88.3)
    let x = argument.replacing(with: low, where: argument .< low).replacing(with: high, where: argument .> high)
    // Adding 1.5·2²³ rounds x·log₂e to the nearest integer n and leaves n in the low mantissa bits.
    let shifter = SIMD16<Float>(repeating: 12_582_912)
    let t = x * 1.44269504088896341 + shifter
    let n = t - shifter
    let r = x.addingProduct(n, SIMD16(repeating: -0.693359375)).addingProduct(n, SIMD16(repeating: 2.12194440e-4))
    var p = SIMD16<Float>(repeating: 1.3981999507e-3).addingProduct(SIMD16(repeating: 1.9875691500e-4), r)
    p = SIMD16<Float>(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = SIMD16<Float>(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = SIMD16<Float>(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = SIMD16<Float>(repeating: 5.0000001201e-1).addingProduct(p, r)
    let er = (r + 1).addingProduct(p, r * r)
    let exponentBits = (unsafeBitCast(t, to: SIMD16<Int32>.self) &- unsafeBitCast(shifter, to: SIMD16<Int32>.self) &+ 127) &<< 23
    return (er * unsafeBitCast(exponentBits, to: SIMD16<Float>.self)).replacing(with: 0, where: argument .< low)
}
