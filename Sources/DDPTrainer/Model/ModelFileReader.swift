/// Where a layer of the expanded list was written, so that a shape error `validate` finds in
/// `layers[7].body[1]` can name the line and the path as written (`layers[2].layers[0].residual[1]`).
struct LayerOrigin {
    var path: String
    var at: TextPosition
    /// " (copy 2 of 3)" for a layer that a `repeat` copied.
    var note = ""
    var body: [LayerOrigin] = []
    var shortcut: [LayerOrigin] = []

    func annotated(_ extra: String) -> LayerOrigin {
        var o = self
        o.note += extra
        o.body = body.map { $0.annotated(extra) }
        o.shortcut = shortcut.map { $0.annotated(extra) }
        return o
    }
}

/// Turns the JSON tree of a model file into a `ModelSpec`, checking every field's type and
/// range and refusing unknown keys; shapes are left to `ModelSpec.validate()`.
struct ModelFileReader {
    let file: String
    private var origins: [LayerOrigin] = []
    /// Positions of the top-level values, for `validate` errors about `input`, `classes` or `layers`.
    private var topLevel: [String: TextPosition] = [:]

    init(file: String) { self.file = file }

    static let parameterless: [String: LayerSpec] = [
        "batchnorm": .batchNorm, "relu": .relu, "sigmoid": .sigmoid, "tanh": .tanh,
        "globalavgpool": .globalAvgPool, "flatten": .flatten,
    ]
    static let knownLayers = ["conv", "batchnorm", "relu", "sigmoid", "tanh", "maxpool", "avgpool", "globalavgpool",
                              "dropout", "flatten", "dense", "residual", "repeat"]
    /// Every key a layer object of each kind may have; the first is the kind itself.
    static let layerKeys: [String: [String]] = [
        "conv": ["conv", "kernel", "stride", "padding", "bias"],
        "maxpool": ["maxpool", "stride"], "avgpool": ["avgpool", "stride"],
        "dropout": ["dropout"], "dense": ["dense"],
        "residual": ["residual", "shortcut"], "repeat": ["repeat", "layers"],
    ]
    static let layerExamples: [String: String] = [
        "conv": #"{"conv": 16, "kernel": 3}"#, "maxpool": #"{"maxpool": 2}"#, "avgpool": #"{"avgpool": 2}"#,
        "dropout": #"{"dropout": 0.5}"#, "dense": #"{"dense": 10}"#,
        "residual": #"{"residual": […], "shortcut": []}"#, "repeat": #"{"repeat": 3, "layers": […]}"#,
    ]
    static let modelKeys = ["name", "input", "classes", "recipe", "layers"]
    static let recipeKeys = ["epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                             "decay_all_parameters", "beta1", "beta2", "epsilon", "warmup_epochs", "schedule",
                             "label_smoothing", "augment"]

    private func fail(_ at: TextPosition?, _ path: String?, _ problem: String) -> ModelFileError {
        ModelFileError(file: file, at: at, path: path, problem: problem)
    }

    // MARK: the model

    mutating func model(_ root: JSONValue) throws(ModelFileError) -> ModelSpec {
        let f = try fields(root, path: nil, allowed: Self.modelKeys, what: "a model file")
        var name = defaultName
        if let v = f["name"] {
            guard case let .string(s) = v.kind, !s.isEmpty, !s.contains("/") else {
                throw fail(v.at, "name", "expected a non-empty string without '/', got \(v.shortText)")
            }
            name = s
        }
        var height = 32, width = 32, channels = 3, classes = 10
        if let v = f["input"] {
            topLevel["input"] = v.at
            let g = try fields(v, path: "input", allowed: ["height", "width", "channels"], what: "input")
            if let h = g["height"] { height = try int(h, "input.height", min: 1) }
            if let w = g["width"] { width = try int(w, "input.width", min: 1) }
            if let c = g["channels"] { channels = try int(c, "input.channels", min: 1) }
        }
        if let v = f["classes"] {
            topLevel["classes"] = v.at
            classes = try int(v, "classes", min: 1)
        }
        let recipe = try f["recipe"].map { v throws(ModelFileError) in try self.recipe(v) } ?? .adam
        guard let layersValue = f["layers"] else {
            throw fail(root.at, nil, #"missing "layers": the list of layers, e.g. "layers": [{"conv": 16, "kernel": 3}, "relu", "flatten", {"dense": 10}]"#)
        }
        topLevel["layers"] = layersValue.at
        let (layers, origins) = try self.layers(layersValue, path: "layers")
        self.origins = origins
        return ModelSpec(name: name, inputHeight: height, inputWidth: width, inputChannels: channels, classes: classes,
                         layers: layers, recipe: recipe)
    }

    /// `nets/wide.json` → `wide`.
    private var defaultName: String {
        var base = file.split(separator: "/").last.map(String.init) ?? file
        if base.hasSuffix(".json") { base.removeLast(5) }
        return base.isEmpty ? "model" : base
    }

    // MARK: layers

    private func layers(_ value: JSONValue, path: String) throws(ModelFileError) -> ([LayerSpec], [LayerOrigin]) {
        guard case let .array(elements) = value.kind else {
            throw fail(value.at, path, "expected a list of layers, got \(value.shortText)")
        }
        var specs: [LayerSpec] = [], origins: [LayerOrigin] = []
        for (i, element) in elements.enumerated() {
            let here = "\(path)[\(i)]"
            switch element.kind {
            case let .string(s):
                if let layer = Self.parameterless[s] {
                    specs.append(layer)
                    origins.append(LayerOrigin(path: here, at: element.at))
                } else if let example = Self.layerExamples[s] {
                    throw fail(element.at, here, "'\(s)' needs parameters: write it as an object, e.g. \(example)")
                } else {
                    throw fail(element.at, here, unknownLayer(s))
                }
            case let .object(members):
                try layerObject(element, members, here, &specs, &origins)
            default:
                throw fail(element.at, here, #"expected a layer: a string such as "relu" or an object such as {"conv": 16, "kernel": 3}, got "# + element.shortText)
            }
        }
        return (specs, origins)
    }

    private func unknownLayer(_ name: String) -> String {
        "unknown layer '\(name)' (\(didYouMean(name, Self.knownLayers))known: \(Self.knownLayers.joined(separator: ", ")))"
    }

    private func layerObject(_ element: JSONValue, _ members: [JSONValue.Member], _ here: String,
                              _ specs: inout [LayerSpec], _ origins: inout [LayerOrigin]) throws(ModelFileError) {
        let kinds = members.filter { Self.knownLayers.contains($0.key) }
        guard let kindMember = kinds.first else {
            let options = Set(Self.layerKeys.values.joined())
            if let stranger = members.first(where: { !options.contains($0.key) }) {
                throw fail(stranger.keyAt, here, unknownLayer(stranger.key))
            }
            throw fail(element.at, here, """
                a layer object needs one of \(Self.knownLayers.filter { Self.layerKeys[$0] != nil }.joined(separator: ", ")) as a key\
                \(members.isEmpty ? "" : " (it has only \(members.map { "'\($0.key)'" }.joined(separator: ", ")))")
                """)
        }
        let kind = kindMember.key
        if kinds.count > 1 {
            throw fail(kinds[1].keyAt, here, "one layer per object: this one has both '\(kind)' and '\(kinds[1].key)' (split it in two)")
        }
        if Self.parameterless[kind] != nil {
            throw fail(kindMember.keyAt, here, "'\(kind)' takes no parameters: write it as the string \"\(kind)\"")
        }
        let f = try fields(element, path: here, allowed: Self.layerKeys[kind]!, what: "a \(kind) layer")
        let main = kindMember.value
        func required(_ key: String) throws(ModelFileError) -> JSONValue {
            guard let v = f[key] else {
                throw fail(element.at, here, "a \(kind) layer needs \"\(key)\" (e.g. \(Self.layerExamples[kind]!))")
            }
            return v
        }
        let origin = LayerOrigin(path: here, at: element.at)
        switch kind {
        case "conv":
            let channels = try int(main, "\(here).conv", min: 1)
            let kernel = try int(try required("kernel"), "\(here).kernel", min: 1)
            let stride = try f["stride"].map { v throws(ModelFileError) in try int(v, "\(here).stride", min: 1) } ?? 1
            let padding = try f["padding"].map { v throws(ModelFileError) in try int(v, "\(here).padding", min: 0) } ?? 0
            let bias = try f["bias"].map { v throws(ModelFileError) in try bool(v, "\(here).bias") } ?? true
            specs.append(.conv(outChannels: channels, kernel: kernel, stride: stride, padding: padding, bias: bias))
            origins.append(origin)
        case "maxpool", "avgpool":
            let size = try int(main, "\(here).\(kind)", min: 1)
            let stride = try f["stride"].map { v throws(ModelFileError) in try int(v, "\(here).stride", min: 1) } ?? size
            specs.append(kind == "maxpool" ? .maxPool(size: size, stride: stride) : .avgPool(size: size, stride: stride))
            origins.append(origin)
        case "dropout":
            let rate = try float(main, "\(here).dropout", "a rate in [0, 1)") { $0 >= 0 && $0 < 1 }
            specs.append(.dropout(rate: rate))
            origins.append(origin)
        case "dense":
            specs.append(.dense(outputs: try int(main, "\(here).dense", min: 1)))
            origins.append(origin)
        case "residual":
            let (body, bodyOrigins) = try layers(main, path: "\(here).residual")
            var (shortcut, shortcutOrigins) = ([LayerSpec](), [LayerOrigin]())
            if let s = f["shortcut"] { (shortcut, shortcutOrigins) = try layers(s, path: "\(here).shortcut") }
            specs.append(.residual(body: body, shortcut: shortcut))
            origins.append(LayerOrigin(path: here, at: element.at, body: bodyOrigins, shortcut: shortcutOrigins))
        case "repeat":
            let count = try int(main, "\(here).repeat", min: 1)
            let (group, groupOrigins) = try layers(try required("layers"), path: "\(here).layers")
            guard !group.isEmpty else { throw fail(f["layers"]!.at, "\(here).layers", "a repeat needs at least one layer") }
            guard group.count * count <= 100_000 else {
                throw fail(main.at, "\(here).repeat", "\(count) copies of \(group.count) layers is more than 100,000 layers")
            }
            for copy in 1...count {
                specs += group
                origins += count == 1 ? groupOrigins : groupOrigins.map { $0.annotated(" (copy \(copy) of \(count))") }
            }
        default:
            fatalError("unhandled layer kind \(kind)")
        }
    }

    // MARK: the recipe

    private func recipe(_ value: JSONValue) throws(ModelFileError) -> Recipe {
        let f = try fields(value, path: "recipe", allowed: Self.recipeKeys, what: "recipe")
        var kind = Recipe.adam.optimizer.kind
        if let v = f["optimizer"] {
            guard case let .string(s) = v.kind else { throw fail(v.at, "recipe.optimizer", "expected \"sgd\" or \"adam\", got \(v.shortText)") }
            guard let k = OptimizerConfig.Kind(rawValue: s) else {
                throw fail(v.at, "recipe.optimizer", "unknown optimizer '\(s)' (sgd or adam)")
            }
            kind = k
        }
        // As `train --lr`: 0.001 for Adam, 0.01 for SGD.
        var o = OptimizerConfig(kind: kind, learningRate: kind == .adam ? 1e-3 : 1e-2)
        var r = Recipe.adam
        func positive(_ x: Float) -> Bool { x > 0 }
        func nonNegative(_ x: Float) -> Bool { x >= 0 }
        func fraction(_ x: Float) -> Bool { x >= 0 && x < 1 }
        // In file order, so that the first mistake in the file is the one reported.
        for (key, v) in f.sorted(by: { ($0.value.at.line, $0.value.at.column) < ($1.value.at.line, $1.value.at.column) }) {
            let path = "recipe.\(key)"
            switch key {
            case "epochs": r.epochs = try int(v, path, min: 1)
            case "batch_size": r.globalBatch = try int(v, path, min: 1)
            case "optimizer": break
            case "lr": o.learningRate = try float(v, path, "a positive number", positive)
            case "momentum": o.momentum = try float(v, path, "a non-negative number", nonNegative)
            case "nesterov": o.nesterov = try bool(v, path)
            case "weight_decay": o.weightDecay = try float(v, path, "a non-negative number", nonNegative)
            case "decay_all_parameters": o.decayAllParameters = try bool(v, path)
            case "beta1": o.beta1 = try float(v, path, "a number in [0, 1)", fraction)
            case "beta2": o.beta2 = try float(v, path, "a number in [0, 1)", fraction)
            case "epsilon": o.epsilon = try float(v, path, "a positive number", positive)
            case "warmup_epochs": r.schedule.warmupEpochs = try int(v, path, min: 0)
            case "schedule": r.schedule.decay = try decay(v)
            case "label_smoothing": r.labelSmoothing = try float(v, path, "a number in [0, 1)", fraction)
            case "augment": r.augment = try bool(v, path)
            default: fatalError("unhandled recipe key \(key)")
            }
        }
        r.optimizer = o
        return r
    }

    private func decay(_ v: JSONValue) throws(ModelFileError) -> LearningRateSchedule.Decay {
        let expected = #""constant", "cosine" or {"step": [30, 45], "factor": 0.1}"#
        switch v.kind {
        case .string("constant"): return .constant
        case .string("cosine"): return .cosine
        case let .string(s): throw fail(v.at, "recipe.schedule", "unknown schedule '\(s)' (\(expected))")
        case .object:
            let f = try fields(v, path: "recipe.schedule", allowed: ["step", "factor"], what: "a step schedule")
            guard let steps = f["step"] else { throw fail(v.at, "recipe.schedule", "a step schedule needs \"step\": \(expected)") }
            guard case let .array(elements) = steps.kind, !elements.isEmpty else {
                throw fail(steps.at, "recipe.schedule.step", "expected a list of epochs such as [30, 45], got \(steps.shortText)")
            }
            var epochs: [Int] = []
            for (i, e) in elements.enumerated() { epochs.append(try int(e, "recipe.schedule.step[\(i)]", min: 0)) }
            let factor = try f["factor"].map { v throws(ModelFileError) in
                try float(v, "recipe.schedule.factor", "a positive number", { $0 > 0 })
            } ?? 0.1
            return .step(epochs: epochs, factor: factor)
        default:
            throw fail(v.at, "recipe.schedule", "expected \(expected), got \(v.shortText)")
        }
    }

    // MARK: fields and values

    /// The members of an object by key; a duplicate or a key outside `allowed` is an error.
    private func fields(_ value: JSONValue, path: String?, allowed: [String], what: String) throws(ModelFileError) -> [String: JSONValue] {
        guard case let .object(members) = value.kind else {
            let example = path == nil ? #" {"name": …, "layers": […]}"# : ""
            throw fail(value.at, path, "\(what) must be a JSON object\(example), got \(value.shortText)")
        }
        var out: [String: JSONValue] = [:]
        for m in members {
            guard allowed.contains(m.key) else {
                throw fail(m.keyAt, path, "unknown key '\(m.key)' (\(didYouMean(m.key, allowed))\(what) has \(allowed.joined(separator: ", ")))")
            }
            guard out[m.key] == nil else { throw fail(m.keyAt, path, "duplicate key '\(m.key)'") }
            out[m.key] = m.value
        }
        return out
    }

    private func int(_ v: JSONValue, _ path: String, min: Int) throws(ModelFileError) -> Int {
        guard case let .number(text) = v.kind, let n = Int(text), n >= min else {
            throw fail(v.at, path, "expected \(min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : "an integer ≥ \(min)"), got \(v.shortText)")
        }
        return n
    }

    private func float(_ v: JSONValue, _ path: String, _ expected: String, _ ok: (Float) -> Bool) throws(ModelFileError) -> Float {
        guard case let .number(text) = v.kind, let x = Float(text), x.isFinite, ok(x) else {
            throw fail(v.at, path, "expected \(expected), got \(v.shortText)")
        }
        return x
    }

    private func bool(_ v: JSONValue, _ path: String) throws(ModelFileError) -> Bool {
        guard case let .bool(b) = v.kind else { throw fail(v.at, path, "expected true or false, got \(v.shortText)") }
        return b
    }

    // MARK: shape errors

    /// A `validate()` error with the line and the path as written in the file.
    func locate(_ error: ModelError) -> ModelFileError {
        let unlocated = fail(nil, error.path, error.problem)
        var components = error.path.split(separator: ".").map(String.init)
        guard !components.isEmpty else { return unlocated }
        let (name, index) = Self.split(components.removeFirst())
        guard name == "layers" else { return fail(topLevel[name], error.path, error.problem) }
        guard let index else {
            // About the whole list (its output does not match the classes): point at its last layer.
            return fail(origins.last?.at ?? topLevel["layers"], error.path, error.problem)
        }
        guard index < origins.count else { return unlocated }
        var origin = origins[index]
        var suffix = ""
        for component in components {
            let (branch, j) = Self.split(component)
            let written = branch == "body" ? "residual" : branch
            guard let j else { suffix += ".\(written)"; continue }
            let list = branch == "body" ? origin.body : origin.shortcut
            guard suffix.isEmpty, j < list.count else { return unlocated }
            origin = list[j]
        }
        return fail(origin.at, origin.path + suffix + origin.note, error.problem)
    }

    /// `body[3]` → ("body", 3); `layers` → ("layers", nil).
    private static func split(_ component: String) -> (String, Int?) {
        guard let open = component.firstIndex(of: "["), component.hasSuffix("]") else { return (component, nil) }
        let number = component[component.index(after: open)..<component.index(before: component.endIndex)]
        return (String(component[..<open]), Int(number))
    }
}

/// "did you mean 'conv'? " when one of `candidates` is within two edits of `word`, else "".
func didYouMean(_ word: String, _ candidates: [String]) -> String {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
    let w = Array(word.lowercased())
    let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 }
    guard let (candidate, d) = best, d <= 2, d < w.count else { return "" }
    return "did you mean '\(candidate)'? "
}
