extension ModelSpec {
    /// This model as a model file, which `parse` reads back to an equal `ModelSpec`: a layer per
    /// line, with the batch norm and activations that follow it (`{"conv": …}, "batchnorm", "relu"`),
    /// residual branches indented, runs of identical groups of layers written once with `repeat`,
    /// fields at their defaults left out of layers, numbers as Swift prints them (0.1, 0.0005).
    public var modelFileJSON: String { ModelFileWriter.text(self) }
}

enum ModelFileWriter {
    /// Lines are packed up to this many characters.
    static let width = 100

    /// A layer, or `copies` copies of a group of layers.
    indirect enum Item: Equatable {
        case layer(LayerSpec)
        case repeated(copies: Int, [Item])
    }

    static func text(_ spec: ModelSpec) -> String {
        var lines = ["{"]
        lines.append("  \"name\": \(jsonQuoted(spec.name)),")
        lines.append("  \"input\": {\"height\": \(spec.inputHeight), \"width\": \(spec.inputWidth), \"channels\": \(spec.inputChannels)},")
        lines.append("  \"classes\": \(spec.classes),")
        lines += packed(recipeFields(spec.recipe), prefix: "  \"recipe\": {", suffix: "},")
        if spec.layers.isEmpty {
            lines.append("  \"layers\": []")
        } else {
            lines.append("  \"layers\": [")
            lines += render(compress(spec.layers), indent: "    ")
            lines.append("  ]")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: the recipe

    /// The fields that say what the recipe is; Adam's betas and epsilon, and SGD's fields under
    /// Adam, only when they are not the defaults (the reader fills those in).
    static func recipeFields(_ r: Recipe) -> [String] {
        let o = r.optimizer, defaults = OptimizerConfig(kind: o.kind, learningRate: o.learningRate)
        var f = ["\"epochs\": \(r.epochs)", "\"batch_size\": \(r.globalBatch)", "\"optimizer\": \"\(o.kind.rawValue)\"",
                 "\"lr\": \(o.learningRate)"]
        if o.kind == .sgd || o.momentum != defaults.momentum || o.nesterov != defaults.nesterov {
            f += ["\"momentum\": \(o.momentum)", "\"nesterov\": \(o.nesterov)"]
        }
        if o.beta1 != defaults.beta1 || o.beta2 != defaults.beta2 || o.epsilon != defaults.epsilon {
            f += ["\"beta1\": \(o.beta1)", "\"beta2\": \(o.beta2)", "\"epsilon\": \(o.epsilon)"]
        }
        f.append("\"weight_decay\": \(o.weightDecay)")
        if o.weightDecay != 0 || o.decayAllParameters != defaults.decayAllParameters {
            f.append("\"decay_all_parameters\": \(o.decayAllParameters)")
        }
        f.append("\"warmup_epochs\": \(r.schedule.warmupEpochs)")
        switch r.schedule.decay {
        case .constant: f.append("\"schedule\": \"constant\"")
        case .cosine: f.append("\"schedule\": \"cosine\"")
        case let .step(epochs, factor):
            f.append("\"schedule\": {\"step\": [\(epochs.map(String.init).joined(separator: ", "))], \"factor\": \(factor)}")
        }
        f += ["\"label_smoothing\": \(r.labelSmoothing)", "\"augment\": \(r.augment)"]
        return f
    }

    /// `prefix` then the fields separated by ", ", wrapped at `width` under the first field.
    static func packed(_ fields: [String], prefix: String, suffix: String) -> [String] {
        let continuation = String(repeating: " ", count: prefix.count)
        var lines = [prefix]
        for (n, field) in fields.enumerated() {
            let text = field + (n + 1 < fields.count ? "," : suffix)
            if lines[lines.count - 1] == prefix || lines[lines.count - 1].count + 1 + text.count <= width {
                lines[lines.count - 1] += (lines[lines.count - 1] == prefix ? "" : " ") + text
            } else {
                lines.append(continuation + text)
            }
        }
        if fields.isEmpty { lines[0] += suffix }
        return lines
    }

    // MARK: layers

    static func isParameterless(_ layer: LayerSpec) -> Bool {
        switch layer {
        case .batchNorm, .relu, .sigmoid, .tanh, .globalAvgPool, .flatten: return true
        default: return false
        }
    }

    /// A layer on one line, or nil for a residual block.
    static func inline(_ layer: LayerSpec) -> String? {
        switch layer {
        case let .conv(channels, kernel, stride, padding, bias):
            var f = ["\"conv\": \(channels)", "\"kernel\": \(kernel)"]
            if stride != 1 { f.append("\"stride\": \(stride)") }
            if padding != 0 { f.append("\"padding\": \(padding)") }
            if !bias { f.append("\"bias\": false") }
            return "{" + f.joined(separator: ", ") + "}"
        case .batchNorm: return "\"batchnorm\""
        case .relu: return "\"relu\""
        case .sigmoid: return "\"sigmoid\""
        case .tanh: return "\"tanh\""
        case let .maxPool(size, stride): return "{\"maxpool\": \(size)" + (stride == size ? "}" : ", \"stride\": \(stride)}")
        case let .avgPool(size, stride): return "{\"avgpool\": \(size)" + (stride == size ? "}" : ", \"stride\": \(stride)}")
        case .globalAvgPool: return "\"globalavgpool\""
        case let .dropout(rate): return "{\"dropout\": \(rate)}"
        case .flatten: return "\"flatten\""
        case let .dense(outputs): return "{\"dense\": \(outputs)}"
        case .residual: return nil
        }
    }

    /// Batch norm and activations: they join the line of the layer before them.
    static func isModifier(_ layer: LayerSpec) -> Bool {
        switch layer {
        case .batchNorm, .relu, .sigmoid, .tanh: return true
        default: return false
        }
    }

    /// One item per line, except that batch norm and activations join the line of the one-line
    /// layer before them, and flatten joins a globalavgpool line, when there is room; every item
    /// but the last ends with a comma.
    static func render(_ items: [Item], indent: String) -> [String] {
        enum Line { case none, layer, structural }
        var lines: [String] = []
        var last = Line.none
        for (n, item) in items.enumerated() {
            let comma = n + 1 < items.count ? "," : ""
            if case let .layer(layer) = item, let text = inline(layer) {
                let joins = isModifier(layer) ? last != .none : isParameterless(layer) && last == .structural
                if joins, lines[lines.count - 1].count + 1 + text.count + comma.count <= width {
                    lines[lines.count - 1] += " " + text + comma
                } else {
                    lines.append(indent + text + comma)
                    last = isParameterless(layer) && !isModifier(layer) ? .structural : .layer
                }
            } else {
                var block = self.block(item, indent: indent)
                block[block.count - 1] += comma
                lines += block
                last = .none
            }
        }
        return lines
    }

    private static func block(_ item: Item, indent: String) -> [String] {
        let inner = indent + "  "
        switch item {
        case let .repeated(copies, group):
            return ["\(indent){\"repeat\": \(copies), \"layers\": ["] + render(group, indent: inner) + ["\(indent)]}"]
        case let .layer(.residual(body, shortcut)):
            var lines = [indent + "{\"residual\": ["]
            if body.isEmpty { lines[0] += "]" } else { lines += render(compress(body), indent: inner) + [indent + "]"] }
            if !shortcut.isEmpty {
                lines[lines.count - 1] += ", \"shortcut\": ["
                lines += render(compress(shortcut), indent: inner) + [indent + "]"]
            }
            lines[lines.count - 1] += "}"
            return lines
        case let .layer(layer):
            return [indent + (inline(layer) ?? "")]
        }
    }

    // MARK: repeat

    /// Writes runs of identical consecutive groups (of up to 8 layers) once, under `repeat`.
    /// A group starts with a layer that has parameters (so ResNet blocks read [residual, relu],
    /// not [relu, residual]) unless it has none. The run covering the most layers goes first
    /// (among equals the shorter group, then the earlier run) if it saves at least four lines;
    /// then the layers before and after it are compressed the same way.
    static func compress(_ layers: [LayerSpec]) -> [Item] {
        struct Run { let start: Int, period: Int, copies: Int; var covered: Int { period * copies } }
        let n = layers.count
        var runs: [Run] = []
        for period in stride(from: 1, through: min(8, n / 2), by: 1) {
            // matching[i]: how many layers from i on equal the layer `period` places later.
            var matching = [Int](repeating: 0, count: n + 1)
            for i in stride(from: n - period - 1, through: 0, by: -1) where layers[i] == layers[i + period] {
                matching[i] = matching[i + 1] + 1
            }
            for start in 0...(n - 2 * period) where matching[start] >= period {
                let group = layers[start..<start + period]
                guard !isParameterless(group.first!) || group.allSatisfy(isParameterless) else { continue }
                runs.append(Run(start: start, period: period, copies: 1 + matching[start] / period))
            }
        }
        runs.sort { ($0.covered, -$0.period, -$0.start) > ($1.covered, -$1.period, -$1.start) }
        for run in runs {
            let group = compress(Array(layers[run.start..<run.start + run.period]))
            let groupLines = render(group, indent: "").count
            // Written out: copies × groupLines lines; under repeat: groupLines + 2.
            guard (run.copies - 1) * groupLines >= 4 else { continue }
            return compress(Array(layers[..<run.start])) + [.repeated(copies: run.copies, group)]
                + compress(Array(layers[(run.start + run.covered)...]))
        }
        return layers.map(Item.layer)
    }
}
