/// One layer of a model, as a user would write it down. A model is a list of these; a
/// residual block nests two lists.
public indirect enum LayerSpec: Sendable, Equatable, CustomStringConvertible {
    /// Square kernel; `padding` zero pixels on each side ("same" for a 3x3 kernel is padding 1).
    /// A convolution followed by batch norm needs no bias (`bias: false`): the norm's shift replaces it.
    case conv(outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true)
    /// Per-channel normalisation over the batch (training) or the running statistics
    /// (evaluation), then a learned scale and shift.
    case batchNorm
    case relu
    case sigmoid
    case tanh
    case maxPool(size: Int, stride: Int)
    case avgPool(size: Int, stride: Int)
    /// The mean of each channel over the whole image: HxWxC becomes 1x1xC.
    case globalAvgPool
    /// Drops each activation with probability `rate` during training (inverted dropout).
    case dropout(rate: Float)
    /// NHWC activations are already contiguous per sample, so flattening is free.
    case flatten
    case dense(outputs: Int)
    /// body(x) + shortcut(x); an empty shortcut is the identity.
    case residual(body: [LayerSpec], shortcut: [LayerSpec])

    public var description: String {
        switch self {
        case let .conv(c, k, s, p, bias): return "conv(\(c),\(k)x\(k),stride \(s),pad \(p)\(bias ? "" : ",no bias"))"
        case .batchNorm: return "batchnorm"
        case .relu: return "relu"
        case .sigmoid: return "sigmoid"
        case .tanh: return "tanh"
        case let .maxPool(k, s): return "maxpool(\(k)x\(k),stride \(s))"
        case let .avgPool(k, s): return "avgpool(\(k)x\(k),stride \(s))"
        case .globalAvgPool: return "globalavgpool"
        case let .dropout(r): return "dropout(\(r))"
        case .flatten: return "flatten"
        case let .dense(n): return "dense(\(n))"
        case let .residual(body, shortcut):
            let s = shortcut.isEmpty ? "identity" : shortcut.map(\.description).joined(separator: " ")
            return "residual[\(body.map(\.description).joined(separator: " ")) | \(s)]"
        }
    }
}

extension LayerSpec {
    /// 3x3 convolution, padding 1, no bias, then batch norm: the unit every BN network repeats.
    public static func convBN(_ channels: Int, stride: Int = 1) -> [LayerSpec] {
        [.conv(outChannels: channels, kernel: 3, stride: stride, padding: 1, bias: false), .batchNorm]
    }

    /// The ResNet basic block (He et al. 2016): two 3x3 conv + BN, added to the input, then ReLU.
    /// A block that changes the resolution projects its shortcut with a strided 1x1 conv + BN.
    public static func basicBlock(_ channels: Int, stride: Int = 1) -> [LayerSpec] {
        let body = convBN(channels, stride: stride) + [.relu] + convBN(channels)
        let shortcut: [LayerSpec] = stride == 1 ? [] :
            [.conv(outChannels: channels, kernel: 1, stride: stride, padding: 0, bias: false), .batchNorm]
        return [.residual(body: body, shortcut: shortcut), .relu]
    }
}

/// A named model: a layer list, the input it expects, and the recipe a bare `--model NAME` trains with.
public struct ModelSpec: Sendable, Equatable {
    public let name: String
    public let inputHeight: Int, inputWidth: Int, inputChannels: Int, classes: Int
    public let layers: [LayerSpec]
    public let recipe: Recipe

    public init(name: String, inputHeight: Int = 32, inputWidth: Int = 32, inputChannels: Int = 3, classes: Int = 10,
                layers: [LayerSpec], recipe: Recipe = .adam) {
        self.name = name; self.inputHeight = inputHeight; self.inputWidth = inputWidth
        self.inputChannels = inputChannels; self.classes = classes; self.layers = layers; self.recipe = recipe
    }

    public var description: String { layers.map(\.description).joined(separator: " ") }

    public static let all: [ModelSpec] = [.tfTutorial, .kerasCNN, .lenet5, .alexnet, .vgg11, .resnet20, .resnet56]

    public static func named(_ name: String) -> ModelSpec? { all.first { $0.name == name } }
}
