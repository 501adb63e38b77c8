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
    /// kernels (`winogradConvolveTiles`), tasks and order of `winogradForward`'s split by tiles,
    /// so Y has its bits. Nil (and Y untouched) where the forward pass does not run that way: no
    /// Winograd, pixel pairs, the split by positions, or bf16 products.
    public func winogradForwardPhases(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                      output y: UnsafeMutablePointer<Float>) -> WinogradPhaseShares? {
        guard let algorithm = s.winogradDataPasses, !algorithm.convolvesByPositions(s, winogradConvolutionSplit),
              !bfloat16Products(algorithm) else { return nil }
        transformForwardWeights(algorithm, s, w)
        let m = algorithm.m, tiles = algorithm.tiles(s), perTask = algorithm.tilesPerTask
        let u = UnsafePointer(packedWeights), scratch = winogradScratch
        var nanoseconds = [UInt64](repeating: 0, count: 3), last: UInt64 = 0
        func phaseEnded(_ phase: Int) {
            let now = DispatchTime.now().uptimeNanoseconds
            nanoseconds[phase] += now - last
            last = now
        }
        for first in stride(from: 0, to: tiles, by: perTask) {
            let count = min(perTask, tiles - first)
            last = DispatchTime.now().uptimeNanoseconds
            switch kernels.forColumns(s.outChannels) {
            case .avx2:
                ConvKernels.winogradConvolveTiles(m: m, s.geometry, input: x, transformedWeights: u, epilogue: .init(), output: y,
                                                  first: first, count: count, scratch: scratch, phaseEnded: phaseEnded)
            case .avx512:
                ConvKernelsAVX512.winogradConvolveTiles(m: m, s.geometry.avx512, input: x, transformedWeights: u, epilogue: .init(), output: y,
                                                        first: first, count: count, scratch: scratch, phaseEnded: phaseEnded)
            }
        }
        let total = Double(nanoseconds.reduce(0, +))
        return WinogradPhaseShares(inputTransform: Double(nanoseconds[0]) / total, products: Double(nanoseconds[1]) / total,
                                   outputTransform: Double(nanoseconds[2]) / total)
    }
}
