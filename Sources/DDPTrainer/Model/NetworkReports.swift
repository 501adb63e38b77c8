import ConvCore

/// What `bench`, `models` and `visualize` show of a compiled network.
extension Network {
    /// One entry per layer, depth first (what `profile` indexes); a residual block's entry is
    /// its addition (and, backward, the copies of the gradient its branches share).
    public var layerSummaries: [LayerSummary] {
        var counters: [String: Int] = [:]
        var out: [LayerSummary] = []
        func name(_ kind: String) -> String { counters[kind, default: 0] += 1; return "\(kind)\(counters[kind]!)" }
        func visit(_ list: [CompiledLayer]) {
            for layer in list {
                // The first layer computes no input gradient: its backward is the weight gradient alone.
                func add(_ name: String, _ shape: [Int] = [layer.outputSize], forwardFlops f: Double = 0, bfloat16: Bool = false) {
                    out.append(LayerSummary(name: name, outputShape: shape, forwardFlops: f,
                                            backwardFlops: layer.index == 0 ? f : 2 * f, bfloat16: bfloat16))
                }
                // Right after the layer's name, so a reader scanning the names sees it first.
                func tag(_ bfloat16: Bool) -> String { bfloat16 ? " bf16" : "" }
                switch layer.op {
                case let .conv(s, _, b, _):
                    let bf16 = workspace.multipliesInBFloat16(s)
                    add(name("conv") + tag(bf16) + " \(s.kernelHeight)x\(s.kernelWidth)/\(s.stride) \(s.inChannels)→\(s.outChannels)"
                            + (b == nil ? " no bias" : "") + " " + s.forwardAlgorithm,
                        [s.outHeight, s.outWidth, s.outChannels], forwardFlops: s.forwardFlops, bfloat16: bf16)
                case let .dense(s, _, _):
                    let bf16 = workspace.precision == .bfloat16
                    add(name("dense") + tag(bf16) + " \(s.inputs)→\(s.outputs)", [s.outputs], forwardFlops: s.forwardFlops, bfloat16: bf16)
                case let .batchNorm(bn): add(name("bn") + " \(bn.channels)")
                case .relu: add("relu")
                case .reluInBatchNorm: add("relu (done by the batch norm)")
                case .reluInMaxPool: add("relu (done by the max pool)")
                case .reluInConvolution: add("relu (forward done by the conv)")
                case .sigmoid: add("sigmoid")
                case .tanh: add("tanh")
                case let .maxPool(s, _, _): add("maxpool \(s.size)x\(s.size)/\(s.stride)", [s.outHeight, s.outWidth, s.channels])
                case let .maxPoolInBatchNorm(s, _):
                    add("maxpool \(s.size)x\(s.size)/\(s.stride) (done by the batch norm)", [s.outHeight, s.outWidth, s.channels])
                case let .avgPool(s): add("avgpool \(s.size)x\(s.size)/\(s.stride)", [s.outHeight, s.outWidth, s.channels])
                case let .globalAvgPool(_, c): add("globalavgpool", [1, 1, c])
                case let .dropout(rate, _): add("dropout \(rate)")
                case .flatten: add("flatten")
                case let .residual(body, shortcut, _):
                    add(name("add") + (shortcut.isEmpty ? " (identity shortcut" : " (projection shortcut")
                            + (layer.normAddingShortcut != nil ? ", done by the batch norm)" : ")"))
                    visit(body)
                    visit(shortcut)
                }
            }
        }
        visit(layers)
        return out
    }

    /// Every convolution's feature maps for image `image` of the last forward pass, depth first,
    /// named as their weights are (`conv1`, `conv2`, …): the output of the convolution together
    /// with the batch norm and the activation that directly follow it (HWC), for `ddptrain visualize`.
    /// A residual block's last convolution shows the block's output: its norm adds the shortcut
    /// and does the ReLU after the block (`CompiledLayer.normAddingShortcut`).
    ///
    ///     net.forward(batch: 1, training: nil)
    ///     for map in net.convolutionOutputs(image: 0) { print(map.name, map.height, map.width, map.channels) }
    public func convolutionOutputs(image: Int) -> [FeatureMaps] {
        var out: [FeatureMaps] = []
        func visit(_ list: [CompiledLayer]) {
            for (i, layer) in list.enumerated() {
                switch layer.op {
                case let .conv(s, _, _, _):
                    // Activations may work in place, so the maps are read where the last of the group wrote them.
                    var last = i
                    if last + 1 < list.count, case .batchNorm = list[last + 1].op { last += 1 }
                    if last + 1 < list.count, list[last + 1].isActivation { last += 1 }
                    let start = list[last].output + image * layer.outputSize
                    var values = Array(UnsafeBufferPointer(start: start, count: layer.outputSize))
                    // A ReLU that the max pool does leaves its buffer unrectified.
                    if case .reluInMaxPool = list[last].op { values = values.map { max($0, 0) } }
                    out.append(FeatureMaps(name: "conv\(out.count + 1)", height: s.outHeight, width: s.outWidth, channels: s.outChannels,
                                           values: values))
                case let .residual(body, shortcut, _):
                    visit(body)
                    visit(shortcut)
                default:
                    break
                }
            }
        }
        visit(layers)
        return out
    }

    /// Under `--precision bf16`, which layers multiply in bf16 and what share of the forward
    /// FLOPs they hold: only dense and Winograd F(2x2) layers do (`Precision`), so for most
    /// convolutional models bf16 changes little of the step. Nil in float32.
    ///
    ///     "bf16 products in 1 of 22 layers with products (dense1: 0.0 % of the forward FLOPs); the other 21 multiply in float32"
    public var bfloat16Summary: String? {
        guard workspace.precision == .bfloat16 else { return nil }
        let layers = layerSummaries.filter { $0.forwardFlops > 0 }, bf16 = layers.filter(\.bfloat16)
        let share = 100 * bf16.reduce(0) { $0 + $1.forwardFlops } / max(layers.reduce(0) { $0 + $1.forwardFlops }, 1)
        let names = bf16.map { String($0.name.prefix { $0 != " " }) }.joined(separator: ", ")
        return "bf16 products in \(bf16.count) of \(layers.count) layers with products ("
            + (names.isEmpty ? "" : names + ": ") + String(format: "%.1f %% of the forward FLOPs)", share)
            + (bf16.count == layers.count ? "" : "; the other \(layers.count - bf16.count) multiply in float32")
    }

    /// The forward multiply-adds ×2 of one image, summed over every layer.
    public var forwardFlopsPerImage: Double { layerSummaries.reduce(0) { $0 + $1.forwardFlops } }
}

/// One layer's output channels for one image, HWC.
public struct FeatureMaps: Sendable {
    public let name: String
    public let height: Int, width: Int, channels: Int
    public let values: [Float]
}
