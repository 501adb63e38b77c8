import ConvKernels
import ConvKernelsAVX512
import Dispatch

/// Where a Winograd layer's forward pass spends its time, for `ddptrain bench --kernels`: the
/// shares of the input transform (Bᵀ·d·B), the per-position products (V·U) and the output
/// transform (Aᵀ·M·A). At 16 channels the transforms take more time than the products; at 64,
/// a quarter. The weight transform, once per pass, is left out.
public struct WinogradPhaseShares: Codable, Sendable, Equatable {
    public let inputTransform: Double, products: Double, outputTransform: Double

    public init(inputTransform: Double, products: Double, outputTransform: Double) {
        self.inputTransform = inputTransform; self.products = products; self.outputTransform = outputTransform
    }
}

extension ConvWorkspace {
    /// Y = conv(X, W) for `s`, run task by task on the calling thread with each phase timed: the
    /// kernels, tasks and order of `winogradForward`'s split by tiles, so Y has its bits. Nil
    /// (and Y untouched) where the forward pass does not run that way: no Winograd, pixel
    /// pairs, the split by positions, or bf16 products.
    public func winogradForwardPhases(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                      output y: UnsafeMutablePointer<Float>) -> WinogradPhaseShares? {
        guard let algorithm = s.winogradDataPasses, !algorithm.convolvesByPositions(s, winogradConvolutionSplit),
              !bfloat16Products(algorithm) else { return nil }
        let cin = s.inChannels, cout = s.outChannels, m = algorithm.m, positions = algorithm.positions
        transformWeights(algorithm, k: cin, n: cout, (origin: w, yStride: 3 * cin * cout, xStride: cin * cout, kStride: cout, nStride: 1))
        let tiles = algorithm.tiles(s), perTask = algorithm.tilesPerTask, kernels = self.kernels.forColumns(cout)
        let vPerPosition = perTask * cin, mPerPosition = perTask * cout
        let u = UnsafePointer(packedWeights), v = winogradScratch, product = v + positions * vPerPosition
        let uPerPosition = kernels == .avx2 ? ConvKernels.winogradWeightsPerPosition(k: cin, n: cout)
                                            : ConvKernelsAVX512.winogradWeightsPerPosition(k: cin, n: cout)
        let g = s.geometry
        var nanoseconds: (input: UInt64, products: UInt64, output: UInt64) = (0, 0, 0)
        for first in stride(from: 0, to: tiles, by: perTask) {
            let count = min(perTask, tiles - first)
            let start = DispatchTime.now().uptimeNanoseconds
            switch kernels {
            case .avx2:
                ConvKernels.winogradInputTiles(m: m, g, input: x, first: first, count: count, v: v,
                                               ConvKernels.OperandLayout(perPosition: vPerPosition, row: cin))
            case .avx512:
                ConvKernelsAVX512.winogradInputTiles(m: m, g.avx512, input: x, first: first, count: count, v: v,
                                                     ConvKernelsAVX512.OperandLayout(perPosition: vPerPosition, row: cin))
            }
            let transformed = DispatchTime.now().uptimeNanoseconds
            for xi in 0..<positions {
                let a = UnsafePointer(v + xi * vPerPosition), b = u + xi * uPerPosition, c = product + xi * mPerPosition
                switch kernels {
                case .avx2: ConvKernels.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
                case .avx512: ConvKernelsAVX512.gemmBlock(kc: cin, a: a, lda: cin, rows: count, packedB: b, columns: cout, c: c, ldc: cout)
                }
            }
            let multiplied = DispatchTime.now().uptimeNanoseconds
            switch kernels {
            case .avx2:
                ConvKernels.winogradOutputTiles(m: m, g, products: product, ConvKernels.OperandLayout(perPosition: mPerPosition, row: cout),
                                                first: first, count: count, epilogue: ConvKernels.OutputEpilogue(), output: y)
            case .avx512:
                ConvKernelsAVX512.winogradOutputTiles(m: m, g.avx512, products: product,
                                                      ConvKernelsAVX512.OperandLayout(perPosition: mPerPosition, row: cout),
                                                      first: first, count: count, epilogue: ConvKernelsAVX512.OutputEpilogue(), output: y)
            }
            let end = DispatchTime.now().uptimeNanoseconds
            nanoseconds.input += transformed - start
            nanoseconds.products += multiplied - transformed
            nanoseconds.output += end - multiplied
        }
        let total = Double(nanoseconds.input + nanoseconds.products + nanoseconds.output)
        return WinogradPhaseShares(inputTransform: Double(nanoseconds.input) / total, products: Double(nanoseconds.products) / total,
                                   outputTransform: Double(nanoseconds.output) / total)
    }
}
