import ConvCore
import Testing

/// The ReLU after a convolution, done by its forward pass on the way out, must give the bits of
/// the separate pass, on every path: Winograd F(2x2) and F(4x4) split by tiles and by positions,
/// bf16 products where the CPU has them, and the paths that do it as a pass of their own.
@Suite struct ConvReLUTests {
    /// The Winograd shapes of WinogradSplitTests, a strided layer, and a first layer (patch rows).
    static let shapes = WinogradSplitTests.shapes + [
        ConvShape(batch: 3, height: 9, width: 9, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: 3, height: 8, width: 8, inChannels: 3, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 1),
    ]

    /// y of `s` with the ReLU after the convolution done by it (`fused`) or by reluForward after it.
    func passes(_ s: ConvShape, split: WinogradConvolutionSplit, precision: Precision = .float32, fused: Bool) -> [Float] {
        let ws = ConvWorkspace(threads: 2, precision: precision)
        ws.winogradConvolutionSplit = split
        ws.reserve(for: s)
        let x = randomArray(s.inputCount, seed: 21), w = randomArray(s.weightCount, seed: 22)
        let bias = randomArray(s.outChannels, seed: 23)
        var y = [Float](repeating: .nan, count: s.outputCount)
        y.withUnsafeMutableBufferPointer { out in
            let y = out.baseAddress!
            conv2DForward(s, input: x, weights: w, bias: bias, relu: fused, output: y, workspace: ws)
            if !fused { reluForward(y, y, count: s.outputCount, pool: ws.pool) }
        }
        return y
    }

    @Test("a ReLU done by a convolution's forward pass has the bits of the separate pass", arguments: shapes, [
        WinogradConvolutionSplit.tiles, .positions,
    ])
    func fusedEqualsSeparate(_ s: ConvShape, split: WinogradConvolutionSplit) {
        let separate = passes(s, split: split, fused: false), fused = passes(s, split: split, fused: true)
        #expect(separate.contains(0) && separate.contains { $0 > 0 } && !separate.contains { $0.isNaN })
        #expect(differences(fused, separate) == 0, "\(s)")
    }

    @Test("with bf16 products too", .enabled(if: Precision.bfloat16.unavailableReason == nil,
                                             "the bf16 kernels need avx512_bf16: \(Precision.bfloat16.unavailableReason ?? "")"),
          arguments: shapes.filter { $0.winograd == .f2x2 }, [WinogradConvolutionSplit.tiles, .positions])
    func bfloat16FusedEqualsSeparate(_ s: ConvShape, split: WinogradConvolutionSplit) {
        let separate = passes(s, split: split, precision: .bfloat16, fused: false)
        let fused = passes(s, split: split, precision: .bfloat16, fused: true)
        #expect(differences(fused, separate) == 0, "\(s)")
    }
}
