import ConvCore
import Testing

/// The checks every convolution path gets (patch rows, pixel pairs): its three directions against
/// the double-precision reference, bitwise thread-count independence, and bitwise agreement of the
/// two kernel sets. Inputs are fixed random arrays; the bias is random (or absent, where said).
extension ResNetConvTests {
    private func operands(_ s: ConvShape) -> (x: [Float], w: [Float], bias: [Float], dy: [Float]) {
        (randomArray(s.inputCount, seed: 1), randomArray(s.weightCount, seed: 2), randomArray(s.outChannels, seed: 3),
         randomArray(s.outputCount, seed: 4))
    }

    /// Forward, input, weight and bias gradient within 1e-5 of the reference.
    func expectMatchesReference(_ s: ConvShape) {
        let (x, w, bias, dy) = operands(s)
        let got = run(s, x: x, w: w, bias: bias, dy: dy, withBiasGradient: true, ws: workspace([s]))
        let want = reference.naiveConvBackward(s, x, w, dy)
        #expect(maxRelativeError(got.y, reference.naiveConv(s, x, w, bias)) < 1e-5, "forward")
        #expect(maxRelativeError(got.dx, want.dx) < 1e-5, "input gradient")
        #expect(maxRelativeError(got.dw, want.dw) < 1e-5, "weight gradient")
        #expect(maxRelativeError(got.db!, want.db) < 1e-5, "bias gradient")
    }

    /// The same bits from 1 and 3 threads, with and without bias.
    func expectThreadCountIndependent(_ s: ConvShape) {
        let (x, w, bias, dy) = operands(s)
        let oneThread = workspace([s], threads: 1), threeThreads = workspace([s], threads: 3)
        for withBias in [true, false] {
            let one = run(s, x: x, w: w, bias: withBias ? bias : nil, dy: dy, withBiasGradient: withBias, ws: oneThread)
            for _ in 0..<3 {   // repeated: the helpers may miss the tasks of one run
                let three = run(s, x: x, w: w, bias: withBias ? bias : nil, dy: dy, withBiasGradient: withBias, ws: threeThreads)
                #expect((one.y + one.dx + one.dw + (one.db ?? [])).map(\.bitPattern)
                        == (three.y + three.dx + three.dw + (three.db ?? [])).map(\.bitPattern))
            }
        }
    }

    /// The same bits from the AVX2 and the AVX-512 kernels (only on a CPU with both).
    func expectKernelSetsAgree(_ s: ConvShape) {
        let (x, w, bias, dy) = operands(s)
        func run(_ kernels: ConvKernelSet) -> [UInt32] {
            let ws = ConvWorkspace(threads: 2, kernels: kernels)
            ws.reserve(for: s)
            let r = self.run(s, x: x, w: w, bias: bias, dy: dy, withBiasGradient: true, ws: ws)
            return (r.y + r.dx + r.dw + r.db!).map(\.bitPattern)
        }
        #expect(run(.avx2) == run(.avx512))
    }
}
