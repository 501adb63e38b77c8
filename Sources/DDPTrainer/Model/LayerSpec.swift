/// One layer of a sequential model, as a user would write it down.
public enum LayerSpec: Sendable, Equatable, CustomStringConvertible {
    /// Square kernel; `padding` zero pixels on each side ("same" for a 3x3 kernel is padding 1).
    case conv(outChannels: Int, kernel: Int, stride: Int, padding: Int)
    case relu
    case maxPool(size: Int, stride: Int)
    /// Drops each activation with probability `rate` during training (inverted dropout).
    case dropout(rate: Float)
    /// NHWC activations are already contiguous per sample, so flattening is free.
    case flatten
    case dense(outputs: Int)

    public var description: String {
        switch self {
        case let .conv(c, k, s, p): return "conv(\(c),\(k)x\(k),stride \(s),pad \(p))"
        case .relu: return "relu"
        case let .maxPool(k, s): return "maxpool(\(k)x\(k),stride \(s))"
        case let .dropout(r): return "dropout(\(r))"
        case .flatten: return "flatten"
        case let .dense(n): return "dense(\(n))"
        }
    }
}

/// A named model: a layer list and the input it expects.
public struct ModelSpec: Sendable, Equatable {
    public let name: String
    public let inputHeight: Int, inputWidth: Int, inputChannels: Int, classes: Int
    public let layers: [LayerSpec]

    public init(name: String, inputHeight: Int, inputWidth: Int, inputChannels: Int, classes: Int, layers: [LayerSpec]) {
        self.name = name; self.inputHeight = inputHeight; self.inputWidth = inputWidth
        self.inputChannels = inputChannels; self.classes = classes; self.layers = layers
    }

    public var description: String { layers.map(\.description).joined(separator: " ") }

    public static let all: [ModelSpec] = [.tfTutorial, .kerasCNN]

    public static func named(_ name: String) -> ModelSpec? { all.first { $0.name == name } }
}
