import ConvKernels
import ConvKernelsAVX512

extension ConvKernelSet {
    /// One core's measured FMA throughput, in GFLOP/s, with these kernels' vector width.
    public func measuredPeakGflopsPerCore() -> Double {
        switch self {
        case .avx2: return ConvKernels.measureFMAPeakGflops()
        case .avx512: return ConvKernelsAVX512.measureFMAPeakGflops()
        }
    }
}
