import Dispatch

/// Accumulated time per layer and direction.
public final class LayerProfile {
    public private(set) var forwardNanoseconds: [UInt64]
    public private(set) var backwardNanoseconds: [UInt64]
    public init(layers: Int) {
        forwardNanoseconds = Array(repeating: 0, count: layers)
        backwardNanoseconds = Array(repeating: 0, count: layers)
    }
    func record(layer: Int, backward: Bool, since start: UInt64) {
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        if backward { backwardNanoseconds[layer] += elapsed } else { forwardNanoseconds[layer] += elapsed }
    }
    public func reset() {
        for i in forwardNanoseconds.indices { forwardNanoseconds[i] = 0; backwardNanoseconds[i] = 0 }
    }
}

/// What one compiled layer is, for reports: its description, output shape and arithmetic.
public struct LayerSummary: Sendable {
    public let name: String
    public let outputShape: [Int]
    /// Floating-point operations per sample: forward, and backward (weights plus data where computed).
    public let forwardFlops: Double
    public let backwardFlops: Double
    /// Whether its products take bf16 operands in any pass (`--precision bf16`; "bf16" follows the
    /// layer's name then, as in "conv3 bf16 3x3/1 64→64 F(2x2,3x3)").
    public let bfloat16: Bool
}
