import ConvCore
import Dispatch
import Foundation
import Testing

/// Convolutions as ResNets and VGG with batch norm use them: without bias (the norm's shift
/// replaces it), and ResNet-20's strided layers (3x3 stride 2 and the 1x1 stride-2 shortcuts).
@Suite struct ResNetConvTests {
    /// ResNet-20's downsampling convolutions, batch 16 and 64: 3x3 stride 2 padding 1 (16→32 on
    /// 32x32, 32→64 on 16x16) and the 1x1 stride-2 projection shortcuts.
    static let stridedShapes: [ConvShape] = [16, 64].flatMap { batch in [
        ConvShape(batch: batch, height: 32, width: 32, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: batch, height: 16, width: 16, inChannels: 32, outChannels: 64, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: batch, height: 32, width: 32, inChannels: 16, outChannels: 32, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0),
        ConvShape(batch: batch, height: 16, width: 16, inChannels: 32, outChannels: 64, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0),
    ] }

    let reference = LayerGradientTests()

    func workspace(_ shapes: [ConvShape], threads: Int = 2) -> ConvWorkspace {
        let ws = ConvWorkspace(threads: threads)
        for s in shapes { ws.reserve(for: s) }
        return ws
    }

    /// y, dx, dW and (if `withBias`) dBias of one shape.
    func run(_ s: ConvShape, x: [Float], w: [Float], bias: [Float]?, dy: [Float], withBiasGradient: Bool, ws: ConvWorkspace)
        -> (y: [Float], dx: [Float], dw: [Float], db: [Float]?) {
        var y = [Float](repeating: .nan, count: s.outputCount), dx = [Float](repeating: .nan, count: s.inputCount)
        var dw = [Float](repeating: .nan, count: s.weightCount), db = [Float](repeating: .nan, count: s.outChannels)
        y.withUnsafeMutableBufferPointer { yp in
            if let bias {
                conv2DForward(s, input: x, weights: w, bias: bias, output: yp.baseAddress!, workspace: ws)
            } else {
                conv2DForward(s, input: x, weights: w, bias: nil, output: yp.baseAddress!, workspace: ws)
            }
        }
        dx.withUnsafeMutableBufferPointer { conv2DBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        dw.withUnsafeMutableBufferPointer { dwp in
            db.withUnsafeMutableBufferPointer { dbp in
                conv2DBackwardWeights(s, input: x, outputGradient: dy, weightGradient: dwp.baseAddress!,
                                      biasGradient: withBiasGradient ? dbp.baseAddress! : nil, workspace: ws)
            }
        }
        return (y, dx, dw, withBiasGradient ? db : nil)
    }

    /// On every shape of the layer tests (direct tiles, both Winograd variants, strided, 1x1):
    /// bias nil gives exactly the output of bias = zeros, and a nil bias gradient leaves the
    /// weight gradient exactly as it is with one.
    @Test("a bias-free convolution equals bias = zeros exactly, and its weight gradient is unchanged",
          arguments: LayerGradientTests.convShapes)
    func biasFree(s: ConvShape) {
        let ws = workspace([s])
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), dy = randomArray(s.outputCount, seed: 4)
        let zeros = [Float](repeating: 0, count: s.outChannels)
        let withBias = run(s, x: x, w: w, bias: zeros, dy: dy, withBiasGradient: true, ws: ws)
        let without = run(s, x: x, w: w, bias: nil, dy: dy, withBiasGradient: false, ws: ws)
        #expect(without.y == withBias.y)
        #expect(without.dw.map(\.bitPattern) == withBias.dw.map(\.bitPattern))
        #expect(without.dx.map(\.bitPattern) == withBias.dx.map(\.bitPattern))
        // And it is the convolution (not, say, left unwritten).
        #expect(maxRelativeError(without.y, reference.naiveConv(s, x, w, zeros)) < 1e-4)
    }

    @Test("ResNet-20's strided convolutions match the double-precision reference in all three directions",
          arguments: stridedShapes)
    func strided(s: ConvShape) {
        let ws = workspace([s])
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), dy = randomArray(s.outputCount, seed: 4)
        let zeros = [Float](repeating: 0, count: s.outChannels)
        let got = run(s, x: x, w: w, bias: nil, dy: dy, withBiasGradient: false, ws: ws)
        let want = reference.naiveConvBackward(s, x, w, dy)
        #expect(maxRelativeError(got.y, reference.naiveConv(s, x, w, zeros)) < 1e-5, "forward")
        #expect(maxRelativeError(got.dx, want.dx) < 1e-5, "input gradient")
        #expect(maxRelativeError(got.dw, want.dw) < 1e-5, "weight gradient")
    }

    @Test("strided convolutions are bitwise identical with 1 and 3 threads")
    func stridedThreadCountIndependence() {
        let shapes = [ResNetConvTests.stridedShapes[0], ResNetConvTests.stridedShapes[3]]
        for s in shapes {
            let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), dy = randomArray(s.outputCount, seed: 4)
            let one = run(s, x: x, w: w, bias: nil, dy: dy, withBiasGradient: false, ws: workspace([s], threads: 1))
            let threeThreads = workspace([s], threads: 3)
            for _ in 0..<3 {   // repeated: the helpers may miss the tasks of one run
                let three = run(s, x: x, w: w, bias: nil, dy: dy, withBiasGradient: false, ws: threeThreads)
                #expect((one.y + one.dx + one.dw).map(\.bitPattern) == (three.y + three.dx + three.dw).map(\.bitPattern))
            }
        }
    }

    /// A quick timing, not a test: `DDPTRAIN_CONV_TIMING=1 swift test -c release --disable-xctest
    /// --filter stridedTiming` prints each direction's GFLOP/s (forward-equivalent FLOPs, best of
    /// 7 after a warm-up) with 2 threads, against the measured FMA peak of 2 cores.
    @Test("timing of ResNet-20's strided convolutions (set DDPTRAIN_CONV_TIMING=1)",
          .enabled(if: ProcessInfo.processInfo.environment["DDPTRAIN_CONV_TIMING"] != nil))
    func stridedTiming() {
        let threads = Int(ProcessInfo.processInfo.environment["DDPTRAIN_CONV_TIMING_THREADS"] ?? "") ?? 2
        let ws = workspace(ResNetConvTests.stridedShapes, threads: threads)
        let peak = ws.kernels.measuredPeakGflopsPerCore() * Double(threads)
        print("FMA peak of \(threads) core(s): \(String(format: "%.0f", peak)) GFLOP/s (\(ws.kernels.rawValue))")
        for s in ResNetConvTests.stridedShapes {
            let x = UnsafeMutablePointer<Float>.allocate(capacity: s.inputCount), w = UnsafeMutablePointer<Float>.allocate(capacity: s.weightCount)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: s.outputCount), dw = UnsafeMutablePointer<Float>.allocate(capacity: s.weightCount)
            defer { [x, w, y, dw].forEach { $0.deallocate() } }
            x.initialize(from: randomArray(s.inputCount, seed: 1), count: s.inputCount)
            w.initialize(from: randomArray(s.weightCount, seed: 2), count: s.weightCount)
            y.initialize(from: randomArray(s.outputCount, seed: 3), count: s.outputCount)
            func rate(_ body: () -> Void) -> Double {
                body()
                var best = Double.infinity
                for _ in 0..<7 {
                    let start = DispatchTime.now().uptimeNanoseconds
                    body()
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
                }
                return s.forwardFlops / best
            }
            let rates = [
                ("forward", rate { conv2DForward(s, input: x, weights: w, bias: nil, output: y, workspace: ws) }),
                ("input gradient", rate { conv2DBackwardData(s, outputGradient: y, weights: w, inputGradient: x, workspace: ws) }),
                ("weight gradient", rate { conv2DBackwardWeights(s, input: x, outputGradient: y, weightGradient: dw, biasGradient: nil, workspace: ws) }),
            ]
            let row = rates.map { "\($0.0) " + String(format: "%6.1f (%3.0f%%)", $0.1, 100 * $0.1 / peak) }.joined(separator: "   ")
            print("batch \(s.batch) \(s.height)x\(s.width)x\(s.inChannels)→\(s.outChannels) k\(s.kernelHeight) s\(s.stride) p\(s.padding): \(row)")
        }
    }
}
