import ConvCore
import Foundation
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

    let layer = ResNetConvTests()

    @Test("layers with 1–5 input channels run on patch rows; wider ones and 1x1 kernels do not")
    func pathChoice() {
        #expect(PatchConvTests.shapes.allSatisfy { $0.usesPatchRows })
        let wide = ConvShape(batch: 1, height: 8, width: 8, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1)
        let pointwise = ConvShape(batch: 1, height: 8, width: 8, inChannels: 3, outChannels: 16, kernelHeight: 1, kernelWidth: 1)
        #expect(!wide.usesPatchRows && !pointwise.usesPatchRows)
    }

    @Test("patch rows match the double-precision reference in all three directions, bias included", arguments: shapes)
    func matchesReference(s: ConvShape) { layer.expectMatchesReference(s) }

    @Test("patch rows are bitwise identical with 1 and 3 threads, with and without bias", arguments: [shapes[1], shapes[4], shapes[5]])
    func threadCountIndependence(s: ConvShape) { layer.expectThreadCountIndependent(s) }

    @Test("the AVX2 and AVX-512 kernels give bitwise-identical patch-row convolutions (needs an AVX-512 CPU)",
          .enabled(if: ConvKernelSet.cpuSupportsAVX512), arguments: shapes)
    func kernelSetsAgree(s: ConvShape) { layer.expectKernelSetsAgree(s) }

    /// A quick timing, not a test: `DDPTRAIN_CONV_TIMING=1 swift test -c release --disable-xctest
    /// --filter patchRowTiming` prints GFLOP/s of the first layers of models S and M, of LeNet-5's
    /// two layers, of the Winograd layers of S and M and of model M's dense layers, one thread,
    /// with training's sample groups, against the FMA peak measured the same way. Times are the
    /// thread's CPU time (best of 9), so that other processes on a shared machine count less.
    @Test("timing of first, Winograd and dense layers in thread CPU time (set DDPTRAIN_CONV_TIMING=1)",
          .enabled(if: ProcessInfo.processInfo.environment["DDPTRAIN_CONV_TIMING"] != nil))
    func patchRowTiming() {
        func cpuNanoseconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) * 1e9 + Double(t.tv_nsec)
        }
        func rate(_ flops: Double, _ body: () -> Void) -> Double {
            body()
            var best = Double.infinity
            for _ in 0..<9 {
                let start = cpuNanoseconds()
                body()
                best = min(best, cpuNanoseconds() - start)
            }
            return flops / best
        }
        let shapes = [
            ConvShape(batch: 64, height: 32, width: 32, inChannels: 3, outChannels: 32, kernelHeight: 3, kernelWidth: 3, padding: 0),
            ConvShape(batch: 64, height: 32, width: 32, inChannels: 3, outChannels: 32, kernelHeight: 3, kernelWidth: 3, padding: 1),
            // LeNet-5's two layers.
            ConvShape(batch: 64, height: 32, width: 32, inChannels: 3, outChannels: 6, kernelHeight: 5, kernelWidth: 5, padding: 0),
            ConvShape(batch: 64, height: 14, width: 14, inChannels: 6, outChannels: 16, kernelHeight: 5, kernelWidth: 5, padding: 0),
            // The Winograd layers of models S (conv2, conv3) and M (conv2, conv3, conv4).
            ConvShape(batch: 64, height: 15, width: 15, inChannels: 32, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 0),
            ConvShape(batch: 64, height: 6, width: 6, inChannels: 64, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 0),
            ConvShape(batch: 64, height: 32, width: 32, inChannels: 32, outChannels: 32, kernelHeight: 3, kernelWidth: 3, padding: 0),
            ConvShape(batch: 64, height: 15, width: 15, inChannels: 32, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 1),
            ConvShape(batch: 64, height: 15, width: 15, inChannels: 64, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 0),
        ]
        let dense = [DenseShape(batch: 64, inputs: 2304, outputs: 512), DenseShape(batch: 64, inputs: 1024, outputs: 64)]
        let ws = layer.workspace(shapes, threads: 1)
        ws.pool.sampleGroups = SampleGroups.standard(globalBatch: 64)  // the groups training uses, which sizes every weight gradient's partials
        shapes.forEach(ws.reserve(for:))
        dense.forEach(ws.reserve(for:))
        let peakIterations = 20_000_000
        let peak = rate(Double(peakIterations / 12 * 12 * 32)) { _ = ws.kernels.measuredPeakGflopsPerCore() }
        print("FMA peak of 1 core in CPU time: \(String(format: "%.0f", peak)) GFLOP/s (\(ws.kernels.rawValue))")
        func report(_ name: String, _ rates: [(String, Double)]) {
            print(name + ": " + rates.map { "\($0.0) " + String(format: "%6.1f (%3.0f%%)", $0.1, 100 * $0.1 / peak) }.joined(separator: "   "))
        }
        let buffers = (0..<6).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 64 * 32 * 32 * 32) }
        defer { buffers.forEach { $0.deallocate() } }
        for b in buffers { b.initialize(from: randomArray(64 * 32 * 32 * 32, seed: 1), count: 64 * 32 * 32 * 32) }
        let (x, w, y, dw, db, bias) = (buffers[0], buffers[1], buffers[2], buffers[3], buffers[4], buffers[5])
        for s in shapes {
            report("\(s.forwardAlgorithm) \(s.height)x\(s.width)x\(s.inChannels)→\(s.outChannels) p\(s.padding)", [
                ("forward", rate(s.forwardFlops) { conv2DForward(s, input: x, weights: w, bias: bias, output: y, workspace: ws) }),
                ("input gradient", rate(s.forwardFlops) { conv2DBackwardData(s, outputGradient: y, weights: w, inputGradient: dw, workspace: ws) }),
                ("weight gradient", rate(s.forwardFlops) {
                    conv2DBackwardWeights(s, input: x, outputGradient: y, weightGradient: dw, biasGradient: db, workspace: ws)
                }),
            ])
        }
        for s in dense {
            report("dense \(s.inputs)→\(s.outputs) batch \(s.batch)", [
                ("forward", rate(s.forwardFlops) { denseForward(s, input: x, weights: w, bias: bias, output: y, workspace: ws) }),
                ("input gradient", rate(s.forwardFlops) { denseBackwardData(s, outputGradient: y, weights: w, inputGradient: dw, workspace: ws) }),
                ("weight gradient", rate(s.forwardFlops) {
                    denseBackwardWeights(s, input: x, outputGradient: y, weightGradient: dw, biasGradient: db, workspace: ws)
                }),
            ])
        }
    }
}
