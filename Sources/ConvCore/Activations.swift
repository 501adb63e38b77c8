#if canImport(Glibc)
import Glibc
#endif

/// Sigmoid and tanh, forward and backward, and the residual block's addition. Backward passes
/// read the activation's output (σ' = σ(1 − σ), tanh' = 1 − tanh²), so the forward may run in
/// place. The lesson's networks (LeNet-style) use these on small activations: scalar libm is
/// accurate and fast enough there.

/// y = 1 / (1 + e^−x), stable for large |x|. y may be x.
public func sigmoidForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        for i in start..<end {
            let v = x[i]
            // e^−|x| never overflows; the two branches are the same function.
            let e = expf(-abs(v))
            y[i] = v >= 0 ? 1 / (1 + e) : e / (1 + e)
        }
    }
}

/// dx = dy·y·(1 − y). dx may be dy.
public func sigmoidBackward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                            inputGradient dx: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            let s = loadVector(y + i)
            storeVector(dx + i, loadVector(dy + i) * s * (1 - s))
            i += 16
        }
        while i < end { dx[i] = dy[i] * y[i] * (1 - y[i]); i += 1 }
    }
}

/// y = tanh(x). y may be x.
public func tanhForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        for i in start..<end { y[i] = tanhf(x[i]) }
    }
}

/// dx = dy·(1 − y²). dx may be dy.
public func tanhBackward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                         inputGradient dx: UnsafeMutablePointer<Float>, count: Int, pool: WorkerPool) {
    forEachChunk(count, pool: pool) { start, end in
        var i = start
        while i + 16 <= end {
            let t = loadVector(y + i)
            storeVector(dx + i, loadVector(dy + i) * (1 - t * t))
            i += 16
        }
        while i < end { dx[i] = dy[i] * (1 - y[i] * y[i]); i += 1 }
    }
}

/// y = a + b (a residual block's output, and its input gradient). y may be a or b.
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
