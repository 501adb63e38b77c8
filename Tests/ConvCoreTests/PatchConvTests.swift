import ConvCore
import Testing

/// Convolutions with few input channels (PatchConv.swift): the first layer of every model.
@Suite struct PatchConvTests {
    /// 1, 2, 3 and 5 input channels; output channels below, between and above whole slivers;
    /// pixel counts that leave partial 6-pixel tiles and partial blocks; stride 2; 5x5 kernels;
    /// and tf-tutorial's first layer (several blocks per image group, several groups).
    static let shapes: [ConvShape] = [
        ConvShape(batch: 2, height: 7, width: 6, inChannels: 1, outChannels: 5, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 3, height: 9, width: 8, inChannels: 2, outChannels: 17, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: 2, height: 11, width: 10, inChannels: 3, outChannels: 33, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 2),
        ConvShape(batch: 2, height: 9, width: 9, inChannels: 5, outChannels: 16, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 1),
        ConvShape(batch: 3, height: 13, width: 12, inChannels: 3, outChannels: 6, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0),
        ConvShape(batch: 5, height: 32, width: 32, inChannels: 3, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0),
    ]

    let reference = LayerGradientTests()
    let layer = ResNetConvTests()

    @Test("layers with 1–5 input channels run on patch rows; wider ones and 1x1 kernels do not")
    func pathChoice() {
        #expect(PatchConvTests.shapes.allSatisfy { $0.usesPatchRows })
        let wide = ConvShape(batch: 1, height: 8, width: 8, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1)
        let pointwise = ConvShape(batch: 1, height: 8, width: 8, inChannels: 3, outChannels: 16, kernelHeight: 1, kernelWidth: 1)
        #expect(!wide.usesPatchRows && !pointwise.usesPatchRows)
    }

    @Test("patch rows match the double-precision reference in all three directions, bias included", arguments: shapes)
    func matchesReference(s: ConvShape) {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2)
        let bias = randomArray(s.outChannels, seed: 3), dy = randomArray(s.outputCount, seed: 4)
        let got = layer.run(s, x: x, w: w, bias: bias, dy: dy, withBiasGradient: true, ws: layer.workspace([s]))
        let want = reference.naiveConvBackward(s, x, w, dy)
        #expect(maxRelativeError(got.y, reference.naiveConv(s, x, w, bias)) < 1e-5, "forward")
        #expect(maxRelativeError(got.dx, want.dx) < 1e-5, "input gradient")
        #expect(maxRelativeError(got.dw, want.dw) < 1e-5, "weight gradient")
        #expect(maxRelativeError(got.db!, want.db) < 1e-5, "bias gradient")
    }

    @Test("patch rows are bitwise identical with 1 and 3 threads, with and without bias")
    func threadCountIndependence() {
        for s in [PatchConvTests.shapes[1], PatchConvTests.shapes[5]] {
            let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2)
            let bias = randomArray(s.outChannels, seed: 3), dy = randomArray(s.outputCount, seed: 4)
            let oneThread = layer.workspace([s], threads: 1), threeThreads = layer.workspace([s], threads: 3)
            for withBias in [true, false] {
                let one = layer.run(s, x: x, w: w, bias: withBias ? bias : nil, dy: dy, withBiasGradient: withBias, ws: oneThread)
                for _ in 0..<3 {   // repeated: the helpers may miss the tasks of one run
                    let three = layer.run(s, x: x, w: w, bias: withBias ? bias : nil, dy: dy, withBiasGradient: withBias, ws: threeThreads)
                    #expect((one.y + one.dx + one.dw + (one.db ?? [])).map(\.bitPattern)
                            == (three.y + three.dx + three.dw + (three.db ?? [])).map(\.bitPattern))
                }
            }
        }
    }

    @Test("the AVX2 and AVX-512 kernels give bitwise-identical patch-row convolutions (needs an AVX-512 CPU)",
          .enabled(if: ConvKernelSet.cpuSupportsAVX512), arguments: shapes)
    func kernelSetsAgree(s: ConvShape) {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2)
        let bias = randomArray(s.outChannels, seed: 3), dy = randomArray(s.outputCount, seed: 4)
        func run(_ kernels: ConvKernelSet) -> [UInt32] {
            let ws = ConvWorkspace(threads: 2, kernels: kernels)
            ws.reserve(for: s)
            let r = layer.run(s, x: x, w: w, bias: bias, dy: dy, withBiasGradient: true, ws: ws)
            return (r.y + r.dx + r.dw + r.db!).map(\.bitPattern)
        }
        #expect(run(.avx2) == run(.avx512))
    }
}
