import Foundation

/// The precision of the products' operands. Sums, master weights,
/// optimizer state and every other layer stay float32 either way.
///
/// `bfloat16` rounds the operands of some products to bfloat16 and multiplies them with
/// `vdpbf16ps` (AVX512_BF16), accumulating in float32: the dense layers' three products, and
/// Winograd F(2x2) layers' per-position products (forward and input gradient; the weight
/// gradient too where it is split by sample groups): with padding 1, layers at 5 or 6 pixels a
/// side, or 2 or fewer (`ConvShape.winograd`). Winograd F(4x4) layers stay float32
/// (`ConvWorkspace.bfloat16Products` says why), and so do the other convolutions.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case float32 = "fp32", bfloat16 = "bf16"

    /// Why this machine cannot run `self`, or nil if it can.
    public var unavailableReason: String? {
        guard self == .bfloat16 else { return nil }
        if !ConvKernelSet.cpuFlags.contains("avx512_bf16") {
            return "this CPU lacks avx512_bf16 (AVX512_BF16: AMD Zen4 and later, Intel Cooper Lake and Sapphire Rapids), "
                + "which the bf16 products (vdpbf16ps) need; use --precision fp32"
        }
        if ConvKernelSet.best != .avx512 {
            return "the bf16 products run beside the AVX-512 kernels, and DDPTRAIN_KERNELS=avx2 turned them off"
        }
        return nil
    }
}
