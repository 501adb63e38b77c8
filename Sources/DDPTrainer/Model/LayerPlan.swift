import ConvCore

/// Shape inference over a ModelSpec: per-sample activation sizes and the parameter table.
struct LayerPlan {
    enum Step {
        case conv(ConvShape, weight: Int, bias: Int)
        case relu
        case maxPool(PoolShape)
        case dropout(rate: Float)
        case flatten
        case dense(DenseShape, weight: Int, bias: Int)

        var worksInPlace: Bool {
            switch self { case .relu, .flatten: return true; default: return false }
        }
    }
    var steps: [Step] = []
    /// sizes[l] is the per-sample size of layer l's input; sizes.last is the logits' size.
    var sizes: [Int] = []
    var tensors: [ParameterTensor] = []
    var parameterCount = 0

    init(_ spec: ModelSpec) {
        var h = spec.inputHeight, w = spec.inputWidth, c = spec.inputChannels
        sizes.append(h * w * c)
        var convs = 0, denses = 0
        for layer in spec.layers {
            switch layer {
            case let .conv(out, k, stride, pad):
                let shape = ConvShape(batch: 1, height: h, width: w, inChannels: c, outChannels: out,
                                      kernelHeight: k, kernelWidth: k, stride: stride, padding: pad)
                precondition(shape.outHeight >= 1 && shape.outWidth >= 1,
                             "\(spec.name): \(layer) on \(h)x\(w) leaves no output")
                convs += 1
                let wOff = addTensor("conv\(convs).weight", [k, k, c, out], fanIn: k * k * c)
                let bOff = addTensor("conv\(convs).bias", [out], fanIn: k * k * c)
                steps.append(.conv(shape, weight: wOff, bias: bOff))
                (h, w, c) = (shape.outHeight, shape.outWidth, out)
            case .relu:
                steps.append(.relu)
            case let .maxPool(k, stride):
                let shape = PoolShape(batch: 1, height: h, width: w, channels: c, size: k, stride: stride)
                steps.append(.maxPool(shape))
                (h, w) = (shape.outHeight, shape.outWidth)
            case let .dropout(rate):
                steps.append(.dropout(rate: rate))
            case .flatten:
                steps.append(.flatten)
                (h, w, c) = (1, 1, h * w * c)
            case let .dense(out):
                let inputs = h * w * c
                denses += 1
                let wOff = addTensor("dense\(denses).weight", [inputs, out], fanIn: inputs)
                let bOff = addTensor("dense\(denses).bias", [out], fanIn: inputs)
                steps.append(.dense(DenseShape(batch: 1, inputs: inputs, outputs: out), weight: wOff, bias: bOff))
                (h, w, c) = (1, 1, out)
            }
            sizes.append(h * w * c)
        }
    }

    private mutating func addTensor(_ name: String, _ shape: [Int], fanIn: Int) -> Int {
        let t = ParameterTensor(name: name, offset: parameterCount, shape: shape, fanIn: fanIn)
        tensors.append(t)
        parameterCount += t.count
        return t.offset
    }
}

extension ConvShape {
    func batched(_ n: Int) -> ConvShape {
        ConvShape(batch: n, height: height, width: width, inChannels: inChannels, outChannels: outChannels,
                  kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: padding)
    }
}
extension PoolShape {
    func batched(_ n: Int) -> PoolShape {
        PoolShape(batch: n, height: height, width: width, channels: channels, size: size, stride: stride)
    }
}
extension DenseShape {
    func batched(_ n: Int) -> DenseShape { DenseShape(batch: n, inputs: inputs, outputs: outputs) }
}
