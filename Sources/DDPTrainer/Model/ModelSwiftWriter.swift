extension ModelSpec {
    /// This model as the Swift expression that builds it (`ModelSpec(name: …, layers: [.conv(…), …])`),
    /// for moving a model file into the zoo (`ddptrain models --show net.json --swift`). Arguments at
    /// their defaults are left out; `repeat` is written out.
    public var swiftExpression: String {
        var lines = ["ModelSpec(", "    name: \(SwiftWriter.quoted(name)),"]
        if inputHeight != 32 { lines.append("    inputHeight: \(inputHeight),") }
        if inputWidth != 32 { lines.append("    inputWidth: \(inputWidth),") }
        if inputChannels != 3 { lines.append("    inputChannels: \(inputChannels),") }
        if classes != 10 { lines.append("    classes: \(classes),") }
        lines.append("    layers: [")
        lines += SwiftWriter.render(layers, indent: "        ", trailingComma: true)
        if recipe == .adam {
            lines.append("    ])")
        } else {
            lines.append("    ],")
            lines += SwiftWriter.recipe(recipe)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

enum SwiftWriter {
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20 || u.value == 0x7F: out += "\\u{\(String(u.value, radix: 16))}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// `    recipe: Recipe(epochs: 60, …))`, wrapped like the model file's recipe.
    static func recipe(_ r: Recipe) -> [String] {
        let o = r.optimizer, d = OptimizerConfig(kind: o.kind, learningRate: o.learningRate)
        var optimizerArguments = ["kind: .\(o.kind.rawValue)", "learningRate: \(o.learningRate)"]
        if o.momentum != d.momentum { optimizerArguments.append("momentum: \(o.momentum)") }
        if o.nesterov { optimizerArguments.append("nesterov: true") }
        if o.weightDecay != 0 { optimizerArguments.append("weightDecay: \(o.weightDecay)") }
        if o.decayAllParameters { optimizerArguments.append("decayAllParameters: true") }
        var optimizer = "OptimizerConfig(\(optimizerArguments.joined(separator: ", ")))"
        if o.beta1 != d.beta1 || o.beta2 != d.beta2 || o.epsilon != d.epsilon {
            optimizer = "{ var o = \(optimizer); o.beta1 = \(o.beta1); o.beta2 = \(o.beta2); o.epsilon = \(o.epsilon); return o }()"
        }
        var arguments = ["epochs: \(r.epochs)"]
        if r.globalBatch != 64 { arguments.append("globalBatch: \(r.globalBatch)") }
        arguments.append("optimizer: \(optimizer)")
        if r.schedule != .constant {
            let decay: String
            switch r.schedule.decay {
            case .constant: decay = ".constant"
            case .cosine: decay = ".cosine"
            case let .step(epochs, factor): decay = ".step(epochs: [\(epochs.map(String.init).joined(separator: ", "))], factor: \(factor))"
            }
            arguments.append("schedule: LearningRateSchedule(warmupEpochs: \(r.schedule.warmupEpochs), decay: \(decay))")
        }
        if r.labelSmoothing != 0 { arguments.append("labelSmoothing: \(r.labelSmoothing)") }
        if r.augment { arguments.append("augment: true") }
        return ModelFileWriter.packed(arguments, prefix: "    recipe: Recipe(", suffix: "))")
    }

    static func inline(_ layer: LayerSpec) -> String? {
        switch layer {
        case let .conv(channels, kernel, stride, padding, bias):
            var a = ["outChannels: \(channels)", "kernel: \(kernel)"]
            if stride != 1 { a.append("stride: \(stride)") }
            if padding != 0 { a.append("padding: \(padding)") }
            if !bias { a.append("bias: false") }
            return ".conv(\(a.joined(separator: ", ")))"
        case .batchNorm: return ".batchNorm"
        case .relu: return ".relu"
        case .sigmoid: return ".sigmoid"
        case .tanh: return ".tanh"
        case let .maxPool(size, stride): return ".maxPool(size: \(size), stride: \(stride))"
        case let .avgPool(size, stride): return ".avgPool(size: \(size), stride: \(stride))"
        case .globalAvgPool: return ".globalAvgPool"
        case let .dropout(rate): return ".dropout(rate: \(rate))"
        case .flatten: return ".flatten"
        case let .dense(outputs): return ".dense(outputs: \(outputs))"
        case .residual: return nil
        }
    }

    /// The same line breaks as the model file: batch norm and activations join the layer before.
    static func render(_ layers: [LayerSpec], indent: String, trailingComma: Bool) -> [String] {
        var lines: [String] = []
        var joinable = false
        for (n, layer) in layers.enumerated() {
            let comma = n + 1 < layers.count || trailingComma ? "," : ""
            if let text = inline(layer) {
                if ModelFileWriter.isModifier(layer), joinable, lines[lines.count - 1].count + 1 + text.count <= ModelFileWriter.width {
                    lines[lines.count - 1] += " " + text + comma
                } else {
                    lines.append(indent + text + comma)
                    joinable = true
                }
            } else if case let .residual(body, shortcut) = layer {
                lines.append(indent + ".residual(body: [")
                lines += render(body, indent: indent + "    ", trailingComma: false)
                if shortcut.isEmpty {
                    lines.append(indent + "], shortcut: [])" + comma)
                } else {
                    lines.append(indent + "], shortcut: [")
                    lines += render(shortcut, indent: indent + "    ", trailingComma: false)
                    lines.append(indent + "])" + comma)
                }
                joinable = false
            }
        }
        return lines
    }
}
