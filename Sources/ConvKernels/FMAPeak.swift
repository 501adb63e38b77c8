import Dispatch

/// Measured single-core FMA throughput in GFLOP/s with this module's vector width: 12
/// independent SIMD16 accumulators keep both FMA pipes busy. `bench` compares layer GFLOP/s
/// with it (the nominal clock in /proc/cpuinfo is not the one cores boost to).
public func measureFMAPeakGflops(iterations: Int = 20_000_000) -> Double {
    var acc = (0..<12).map { SIMD16<Float>(repeating: Float($0) * 1e-3) }
    // Each chain is c ← c + c·m with its own c, so no two chains can be merged by the optimiser.
    let m = SIMD16<Float>(repeating: 1e-7)
    let start = DispatchTime.now().uptimeNanoseconds
    acc.withUnsafeMutableBufferPointer { r in
        var c0 = r[0], c1 = r[1], c2 = r[2], c3 = r[3], c4 = r[4], c5 = r[5]
        var c6 = r[6], c7 = r[7], c8 = r[8], c9 = r[9], c10 = r[10], c11 = r[11]
        for _ in 0..<(iterations / 12) {
            c0 = c0.addingProduct(c0, m); c1 = c1.addingProduct(c1, m); c2 = c2.addingProduct(c2, m)
            c3 = c3.addingProduct(c3, m); c4 = c4.addingProduct(c4, m); c5 = c5.addingProduct(c5, m)
            c6 = c6.addingProduct(c6, m); c7 = c7.addingProduct(c7, m); c8 = c8.addingProduct(c8, m)
            c9 = c9.addingProduct(c9, m); c10 = c10.addingProduct(c10, m); c11 = c11.addingProduct(c11, m)
        }
        r[0] = c0; r[1] = c1; r[2] = c2; r[3] = c3; r[4] = c4; r[5] = c5
        r[6] = c6; r[7] = c7; r[8] = c8; r[9] = c9; r[10] = c10; r[11] = c11
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let sink = acc.reduce(SIMD16<Float>(), +).sum()
    return sink.isNaN ? 0 : Double(iterations / 12 * 12) * 16 * 2 / seconds / 1e9
}
