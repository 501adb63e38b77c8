import ConvCore
import Foundation
import Testing

/// The vector updates against the one-parameter formulas of torch.optim.SGD and torch.optim.Adam,
/// bit for bit, over counts that end in every kind of partial vector, for several steps (so the
/// momentum and the moments are not zero).
struct OptimizerUpdateTests {
    static let counts = [1, 15, 16, 17, 37, 100]

    @Test("SGD's vector update gives the bits of the scalar formula: plain, momentum, Nesterov, with and without decay",
          arguments: [(Float(0), false), (0.9, false), (0.9, true)], [Float(0), 5e-4])
    func sgd(flags: (momentum: Float, nesterov: Bool), decay: Float) {
        let (momentum, nesterov) = flags
        for count in Self.counts {
            var p = randomArray(count, seed: 1), buf = [Float](repeating: 0, count: count)
            var expectedP = p, expectedBuf = buf
            for step in 0..<3 {
                let g = randomArray(count, seed: 10 + UInt64(step)), lr: Float = 0.1 / Float(step + 1)
                for i in 0..<count {
                    var d = g[i] + decay * expectedP[i]
                    if momentum != 0 {
                        expectedBuf[i] = momentum * expectedBuf[i] + d
                        d = nesterov ? d + momentum * expectedBuf[i] : expectedBuf[i]
                    }
                    expectedP[i] -= lr * d
                }
                p.withUnsafeMutableBufferPointer { pp in
                    buf.withUnsafeMutableBufferPointer { bb in
                        sgdUpdate(SGDUpdate(learningRate: lr, weightDecay: decay, momentum: momentum, nesterov: nesterov),
                                  parameters: pp.baseAddress!, gradients: g, momentumBuffer: bb.baseAddress!, count: count)
                    }
                }
            }
            #expect(differences(p, expectedP) == 0, "parameters, \(count)")
            #expect(differences(buf, expectedBuf) == 0, "momentum, \(count)")
        }
    }

    @Test("Adam's vector update gives the bits of the scalar formula, bias corrections included", arguments: [Float(0), 1e-2])
    func adam(decay: Float) {
        let beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
        for count in Self.counts {
            var p = randomArray(count, seed: 2), m = [Float](repeating: 0, count: count), v = m
            var expectedP = p, expectedM = m, expectedV = v
            for step in 1...3 {
                let g = randomArray(count, seed: 20 + UInt64(step), in: -0.01...0.01), lr: Float = 1e-3
                let stepSize = lr / (1 - powf(beta1, Float(step))), root = (1 - powf(beta2, Float(step))).squareRoot()
                for i in 0..<count {
                    let d = g[i] + decay * expectedP[i]
                    expectedM[i] = beta1 * expectedM[i] + (1 - beta1) * d
                    expectedV[i] = beta2 * expectedV[i] + (1 - beta2) * d * d
                    expectedP[i] -= stepSize * expectedM[i] / (expectedV[i].squareRoot() / root + epsilon)
                }
                let update = AdamUpdate(learningRate: lr, step: step, weightDecay: decay, beta1: beta1, beta2: beta2, epsilon: epsilon)
                p.withUnsafeMutableBufferPointer { pp in
                    m.withUnsafeMutableBufferPointer { mm in
                        v.withUnsafeMutableBufferPointer { vv in
                            adamUpdate(update, parameters: pp.baseAddress!, gradients: g, firstMoments: mm.baseAddress!,
                                       secondMoments: vv.baseAddress!, count: count)
                        }
                    }
                }
            }
            #expect(differences(p, expectedP) == 0, "parameters, \(count)")
            #expect(differences(m, expectedM) == 0 && differences(v, expectedV) == 0, "moments, \(count)")
        }
    }
}
