import DDPTrainer
import Foundation
import Testing

@Suite struct ModelFileTests {
    /// The message `parse` gives for `text`, or nil if it parses.
    func message(_ text: String, file: String = "net.json") -> String? {
        do {
            _ = try ModelSpec.parse(json: text, file: file)
            return nil
        } catch {
            return "\(error)"
        }
    }

    // MARK: printing and reading back

    @Test("every built-in model prints as a file that reads back equal, and prints the same again",
          arguments: ModelSpec.all.map(\.name))
    func builtInRoundTrip(name: String) throws {
        let spec = try #require(ModelSpec.named(name))
        let text = spec.modelFileJSON
        let back = try ModelSpec.parse(json: text, file: "\(name).json")
        #expect(back == spec, "\(text)")
        #expect(back.modelFileJSON == text)

        let path = CLI.temporaryDirectory() + "/\(name).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try ModelSpec.load(contentsOf: path) == spec)
        #expect(try ModelSpec.resolve(path) == spec)
    }

    @Test("resnet56's file is short: each stage's identical blocks are written once under repeat")
    func resnet56UsesRepeat() throws {
        let text = ModelSpec.resnet56.modelFileJSON
        let lines = text.split(separator: "\n")
        #expect(lines.count < 60, "\(lines.count) lines:\n\(text)")
        #expect(text.contains(#"{"repeat": 9, "layers": ["#), "\(text)")
        #expect(text.components(separatedBy: #"{"repeat": 8, "layers": ["#).count == 3, "\(text)")
        #expect(lines.allSatisfy { $0.count <= 100 }, "\(text)")
        // Models without long runs of identical blocks have none (VGG's two 512 stages would
        // save one line, and only as [batchnorm, relu, maxpool, conv, …], which reads worse).
        #expect(!ModelSpec.tfTutorial.modelFileJSON.contains("repeat"))
        #expect(!ModelSpec.vgg11.modelFileJSON.contains("repeat"), "\(ModelSpec.vgg11.modelFileJSON)")
    }

    @Test("resnet20 prints as a person would write it")
    func resnet20Text() {
        let text = ModelSpec.resnet20.modelFileJSON
        let expectedStart = """
            {
              "name": "resnet20",
              "input": {"height": 32, "width": 32, "channels": 3},
              "classes": 10,
              "recipe": {"epochs": 60, "batch_size": 64, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                         "nesterov": true, "weight_decay": 0.0005, "decay_all_parameters": false,
                         "warmup_epochs": 5, "schedule": "cosine", "label_smoothing": 0.1, "augment": true},
              "layers": [
                {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
                {"repeat": 3, "layers": [
                  {"residual": [
                    {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
                    {"conv": 16, "kernel": 3, "padding": 1, "bias": false}, "batchnorm"
                  ]},
                  "relu"
                ]},
                {"residual": [
                  {"conv": 32, "kernel": 3, "stride": 2, "padding": 1, "bias": false}, "batchnorm", "relu",
                  {"conv": 32, "kernel": 3, "padding": 1, "bias": false}, "batchnorm"
                ], "shortcut": [
                  {"conv": 32, "kernel": 1, "stride": 2, "bias": false}, "batchnorm"
                ]},
                "relu",
                {"repeat": 2, "layers": [
            """
        #expect(text.hasPrefix(expectedStart), "\(text)")
        #expect(text.hasSuffix("""
                "globalavgpool", "flatten",
                {"dense": 10}
              ]
            }

            """), "\(text)")
    }

    @Test("every layer kind, odd names and non-default recipe fields survive printing and reading")
    func everyFieldRoundTrips() throws {
        let spec = ModelSpec(
            name: #"odd "name" \ with é"#, inputHeight: 20, inputWidth: 24, inputChannels: 1, classes: 7,
            layers: [
                .conv(outChannels: 8, kernel: 5, stride: 2, padding: 2, bias: true), .tanh,
                .avgPool(size: 3, stride: 1), .sigmoid, .maxPool(size: 2, stride: 2), .dropout(rate: 0.3),
                .residual(body: [.batchNorm, .relu], shortcut: []),
                .residual(body: [.conv(outChannels: 4, kernel: 1, bias: false)], shortcut: [.conv(outChannels: 4, kernel: 1)]),
                .globalAvgPool, .flatten, .dense(outputs: 7),
            ],
            recipe: Recipe(epochs: 3, globalBatch: 32,
                           optimizer: {
                               var o = OptimizerConfig(kind: .adam, learningRate: 3e-4, momentum: 0.5, nesterov: true,
                                                       weightDecay: 0.01, decayAllParameters: true)
                               o.beta1 = 0.8; o.beta2 = 0.99; o.epsilon = 1e-6
                               return o
                           }(),
                           schedule: LearningRateSchedule(warmupEpochs: 2, decay: .step(epochs: [1, 2], factor: 0.5)),
                           labelSmoothing: 0.05, augment: true))
        let text = spec.modelFileJSON
        #expect(try ModelSpec.parse(json: text, file: "x.json") == spec, "\(text)")
        #expect(text.contains(#""lr": 0.0003"#) && text.contains(#""beta2": 0.99"#) && text.contains(#""epsilon": 1e-06"#), "\(text)")
    }

    @Test("swiftExpression: the ModelSpec(...) that builds the model, defaults left out")
    func swiftExpression() {
        #expect(ModelSpec.tfTutorial.swiftExpression == """
            ModelSpec(
                name: "tf-tutorial",
                layers: [
                    .conv(outChannels: 32, kernel: 3), .relu,
                    .maxPool(size: 2, stride: 2),
                    .conv(outChannels: 64, kernel: 3), .relu,
                    .maxPool(size: 2, stride: 2),
                    .conv(outChannels: 64, kernel: 3), .relu,
                    .flatten,
                    .dense(outputs: 64), .relu,
                    .dense(outputs: 10),
                ])

            """)
        let resnet = ModelSpec.resnet20.swiftExpression
        #expect(resnet.contains("""
                    .residual(body: [
                        .conv(outChannels: 32, kernel: 3, stride: 2, padding: 1, bias: false), .batchNorm, .relu,
                        .conv(outChannels: 32, kernel: 3, padding: 1, bias: false), .batchNorm
                    ], shortcut: [
                        .conv(outChannels: 32, kernel: 1, stride: 2, bias: false), .batchNorm
                    ]),
            """), "\(resnet)")
        #expect(resnet.hasSuffix("""
                recipe: Recipe(epochs: 60,
                               optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1, nesterov: true, weightDecay: 0.0005),
                               schedule: LearningRateSchedule(warmupEpochs: 5, decay: .cosine),
                               labelSmoothing: 0.1, augment: true))

            """), "\(resnet)")
    }

    @Test("runs of identical layers are compressed only when that saves lines")
    func repeatCompression() throws {
        let block: [LayerSpec] = [.conv(outChannels: 4, kernel: 3, padding: 1), .relu]
        let many = ModelSpec(name: "many", inputHeight: 8, inputWidth: 8,
                             layers: Array(repeating: block, count: 6).flatMap { $0 } + [.flatten, .dense(outputs: 10)])
        let text = many.modelFileJSON
        #expect(text.contains(#"{"repeat": 6, "layers": ["#), "\(text)")
        #expect(try ModelSpec.parse(json: text, file: "m.json") == many)

        let two = ModelSpec(name: "two", inputHeight: 8, inputWidth: 8,
                            layers: block + block + [.flatten, .dense(outputs: 10)])
        #expect(!two.modelFileJSON.contains("repeat"), "\(two.modelFileJSON)")
    }

    @Test("random layer lists full of repeats round-trip (repeat compression never changes the model)")
    func randomRoundTrip() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        // Layers that keep a 6x6x3 input's shape, so any sequence of them is a valid model.
        func layer(depth: Int) -> LayerSpec {
            switch random(depth < 2 ? 8 : 7) {
            case 0: return .relu
            case 1: return .batchNorm
            case 2: return .tanh
            case 3: return .conv(outChannels: 3, kernel: 3, padding: 1, bias: random(2) == 0)
            case 4: return .dropout(rate: [0.1, 0.25, 0.5][random(3)])
            case 5: return .sigmoid
            case 6: return .avgPool(size: 1, stride: 1)
            default: return .residual(body: list(depth: depth + 1, minimum: 1), shortcut: random(3) == 0 ? [.batchNorm] : [])
            }
        }
        func list(depth: Int, minimum: Int = 0) -> [LayerSpec] {
            var out: [LayerSpec] = []
            while out.count < minimum || random(5) != 0 {
                let group = (0..<1 + random(4)).map { _ in layer(depth: depth) }
                out += Array(repeating: group, count: 1 + random(5)).flatMap { $0 }
            }
            return out
        }
        var repeats = 0
        for n in 0..<200 {
            let spec = ModelSpec(name: "random\(n)", inputHeight: 6, inputWidth: 6, layers: list(depth: 0) + [.flatten, .dense(outputs: 10)])
            let text = spec.modelFileJSON
            #expect(try ModelSpec.parse(json: text, file: "r.json") == spec, "\(text)")
            if text.contains("repeat") { repeats += 1 }
        }
        #expect(repeats > 50)
    }

    // MARK: hand-written files

    @Test("a hand-written residual net reads as the layers it names, with defaults filled in")
    func handWritten() throws {
        let spec = try ModelSpec.parse(json: """
            {"layers": [
              {"conv": 8, "kernel": 3, "padding": 1, "bias": false}, "batchnorm", "relu",
              {"residual": [{"conv": 8, "kernel": 3, "padding": 1}, "relu"]},
              {"residual": [{"conv": 16, "kernel": 3, "stride": 2, "padding": 1}],
               "shortcut": [{"conv": 16, "kernel": 1, "stride": 2}]},
              {"maxpool": 2}, {"avgpool": 3, "stride": 1}, {"dropout": 0.5},
              "flatten", {"dense": 10}
            ]}
            """, file: "nets/small.json")
        #expect(spec == ModelSpec(name: "small", layers: [
            .conv(outChannels: 8, kernel: 3, stride: 1, padding: 1, bias: false), .batchNorm, .relu,
            .residual(body: [.conv(outChannels: 8, kernel: 3, stride: 1, padding: 1, bias: true), .relu], shortcut: []),
            .residual(body: [.conv(outChannels: 16, kernel: 3, stride: 2, padding: 1, bias: true)],
                      shortcut: [.conv(outChannels: 16, kernel: 1, stride: 2, padding: 0, bias: true)]),
            .maxPool(size: 2, stride: 2), .avgPool(size: 3, stride: 1), .dropout(rate: 0.5),
            .flatten, .dense(outputs: 10),
        ]))
        #expect(spec.inputHeight == 32 && spec.inputWidth == 32 && spec.inputChannels == 3 && spec.classes == 10)
        #expect(spec.recipe == .adam)
    }

    @Test("repeat expands in place, nested too")
    func repeatExpands() throws {
        let spec = try ModelSpec.parse(json: """
            {"name": "r", "input": {"height": 4, "width": 4, "channels": 2}, "classes": 3, "layers": [
              {"repeat": 2, "layers": [{"repeat": 3, "layers": ["relu"]}, "tanh"]},
              "flatten", {"dense": 3}
            ]}
            """, file: "r.json")
        #expect(spec.layers == [.relu, .relu, .relu, .tanh, .relu, .relu, .relu, .tanh, .flatten, .dense(outputs: 3)])
        #expect(spec.inputHeight == 4 && spec.inputWidth == 4 && spec.inputChannels == 2 && spec.classes == 3)
    }

    @Test("recipe fields: given ones replace the defaults, missing ones keep Recipe.adam's (SGD's lr 0.01)")
    func recipeFields() throws {
        func recipe(_ json: String) throws -> Recipe {
            try ModelSpec.parse(json: #"{"recipe": \#(json), "layers": ["flatten", {"dense": 10}]}"#, file: "r.json").recipe
        }
        #expect(try recipe("{}") == .adam)
        #expect(try recipe(#"{"epochs": 5}"#) == Recipe(epochs: 5, optimizer: OptimizerConfig(kind: .adam, learningRate: 1e-3)))
        #expect(try recipe(#"{"optimizer": "sgd"}"#).optimizer == OptimizerConfig(kind: .sgd, learningRate: 0.01))
        let r = try recipe("""
            {"optimizer": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": true, "weight_decay": 1e-4,
             "decay_all_parameters": true, "warmup_epochs": 3, "schedule": {"step": [30, 45]},
             "batch_size": 128, "label_smoothing": 0.1, "augment": true}
            """)
        #expect(r == Recipe(epochs: 30, globalBatch: 128,
                            optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.05, momentum: 0.8, nesterov: true,
                                                       weightDecay: 1e-4, decayAllParameters: true),
                            schedule: LearningRateSchedule(warmupEpochs: 3, decay: .step(epochs: [30, 45], factor: 0.1)),
                            labelSmoothing: 0.1, augment: true))
        #expect(try recipe(#"{"schedule": "cosine"}"#).schedule == LearningRateSchedule(decay: .cosine))
    }

    @Test("resolve: a built-in name, else a file path, else a message listing the built-in models")
    func resolve() throws {
        #expect(try ModelSpec.resolve("resnet20") == .resnet20)
        let unknown = #"unknown model 'resnet21' (built-in: tf-tutorial, keras-cnn, lenet5, alexnet, vgg11, resnet20, resnet56; or a model file: a path ending in .json)"#
        #expect(throws: ModelFileError(file: nil, problem: unknown)) { try ModelSpec.resolve("resnet21") }
        #expect(throws: ModelFileError(file: "no/such.json", problem: "no such model file")) { try ModelSpec.resolve("no/such.json") }
        let dir = CLI.temporaryDirectory()
        #expect(throws: ModelFileError(file: dir, problem: "is a directory, not a model file")) { try ModelSpec.load(contentsOf: dir) }
    }

    // MARK: malformed files: one message, with the file, the line and the field

    static let known = "conv, batchnorm, relu, sigmoid, tanh, maxpool, avgpool, globalavgpool, dropout, flatten, dense, residual, repeat"

    @Test("field errors name the line, the column and the path as written",
          arguments: [
            // An unknown layer inside a residual body.
            ("""
             {"layers": [
               {"residual": ["relu", "convv"]},
               "flatten", {"dense": 10}
             ]}
             """, "net.json:2:25: layers[0].residual[1]: unknown layer 'convv' (did you mean 'conv'? known: \(known))"),
            // An unknown kind key in a layer object.
            (#"{"layers": [{"dens": 10}]}"#, "net.json:1:14: layers[0]: unknown layer 'dens' (did you mean 'dense'? known: \(known))"),
            // A number written as a string.
            ("""
             {"layers": [
               {"conv": "16", "kernel": 3}
             ]}
             """, #"net.json:2:12: layers[0].conv: expected a positive integer, got "16""#),
            (#"{"layers": ["flatten", {"dense": 0}]}"#, "net.json:1:34: layers[1].dense: expected a positive integer, got 0"),
            (#"{"layers": [{"conv": 8, "kernel": 3, "bias": "no"}]}"#, #"net.json:1:46: layers[0].bias: expected true or false, got "no""#),
            (#"{"layers": [{"dropout": 1.5}]}"#, "net.json:1:25: layers[0].dropout: expected a rate in [0, 1), got 1.5"),
            // An unknown key, in a layer and at the top.
            (#"{"layers": [{"conv": 8, "kernel": 3, "strid": 2}]}"#,
             "net.json:1:38: layers[0]: unknown key 'strid' (did you mean 'stride'? a conv layer has conv, kernel, stride, padding, bias)"),
            ("{\n  \"layer\": []\n}", "net.json:2:3: unknown key 'layer' (did you mean 'layers'? a model file has name, input, classes, recipe, layers)"),
            (#"{"layers": [], "layers": []}"#, "net.json:1:16: duplicate key 'layers'"),
            // Layers written the wrong way round.
            (#"{"layers": ["conv"]}"#, #"net.json:1:13: layers[0]: 'conv' needs parameters: write it as an object, e.g. {"conv": 16, "kernel": 3}"#),
            (#"{"layers": [{"relu": true}]}"#, #"net.json:1:14: layers[0]: 'relu' takes no parameters: write it as the string "relu""#),
            (#"{"layers": [{"conv": 8}]}"#, #"net.json:1:13: layers[0]: a conv layer needs "kernel" (e.g. {"conv": 16, "kernel": 3})"#),
            (#"{"layers": [{"conv": 8, "kernel": 3, "dense": 10}]}"#,
             "net.json:1:38: layers[0]: one layer per object: this one has both 'conv' and 'dense' (split it in two)"),
            (#"{"layers": [{"repeat": 2, "layers": ["relu", 7]}]}"#,
             #"net.json:1:46: layers[0].layers[1]: expected a layer: a string such as "relu" or an object such as {"conv": 16, "kernel": 3}, got 7"#),
            // The recipe.
            ("{\"recipe\": {\n  \"optimizer\": \"adamw\"}, \"layers\": []}", "net.json:2:16: recipe.optimizer: unknown optimizer 'adamw' (sgd or adam)"),
            (#"{"recipe": {"schedule": "linear"}, "layers": []}"#,
             #"net.json:1:25: recipe.schedule: unknown schedule 'linear' ("constant", "cosine" or {"step": [30, 45], "factor": 0.1})"#),
            (#"{"recipe": {"lr": 0}, "layers": []}"#, "net.json:1:19: recipe.lr: expected a positive number, got 0"),
            (#"{"input": {"height": 32, "width": -1}, "layers": []}"#, "net.json:1:35: input.width: expected a positive integer, got -1"),
            (#"{"name": "a"}"#, #"net.json:1:1: missing "layers": the list of layers, e.g. "layers": [{"conv": 16, "kernel": 3}, "relu", "flatten", {"dense": 10}]"#),
            ("[1, 2]", #"net.json:1:1: a model file must be a JSON object {"name": …, "layers": […]}, got a list"#),
          ])
    func fieldErrors(text: String, expected: String) {
        #expect(message(text) == expected)
    }

    @Test("JSON syntax errors name the line and column",
          arguments: [
            ("{\n  \"name\": \"x\"\n  \"layers\": []\n}", "net.json:3:3: expected ',' or '}' after the value of \"name\" (a missing comma?)"),
            ("{\"layers\": [\n  \"relu\",\n  \"flatten\",\n]}", "net.json:4:1: a comma before ']' is not allowed in JSON (remove the trailing comma)"),
            ("{\"layers\": [\n  relu\n]}", "net.json:2:3: unquoted word 'relu' (strings need double quotes: \"relu\")"),
            ("{\"layers\": [ // conv first\n]}", "net.json:1:14: JSON does not allow comments"),
            ("{\"layers\": [\n  {\"dense\": 10}", "net.json:2:16: unexpected end of the file inside a list (a missing ']'?)"),
            ("{\"name\": \"é\", \"layers\": [}", "net.json:1:26: expected a value (a number, a string, true, false, null, a list or an object) after '[', got '}'"),
            ("{\"layers\": [{\"dense\": 1.2.3}]}", "net.json:1:23: invalid number '1.2.3'"),
            ("", "net.json:1:1: the file is empty (a model file is a JSON object: {\"name\": …, \"layers\": […]})"),
            ("{\"layers\": []} }", "net.json:1:16: unexpected '}' after the end of the JSON value (a second top-level value, or an extra '}' or ']'?)"),
          ])
    func syntaxErrors(text: String, expected: String) {
        #expect(message(text) == expected)
    }

    /// Shape errors come from `validate()` (LayerPlan words the problem); the file adds where.
    @Test("shape errors name the layer's line and its path as written, inside repeat and residual too",
          arguments: [
            // The body gives 32 channels, the identity shortcut 3.
            ("""
             {"layers": [
               {"residual": [{"conv": 32, "kernel": 3, "padding": 1}]},
               "flatten", {"dense": 10}
             ]}
             """, "net.json:2:3: layers[0]: ", "shortcut"),
            // A 7x7 kernel on a 4x4 input.
            ("""
             {"input": {"height": 4, "width": 4, "channels": 3},
              "layers": ["relu", {"conv": 8, "kernel": 7}, "flatten", {"dense": 10}]}
             """, "net.json:2:21: layers[1]: ", "larger than the padded input"),
            // The second copy of a repeated 3x3 conv no longer fits (4 → 2 → too small).
            ("""
             {"input": {"height": 4, "width": 4, "channels": 3},
              "layers": [
                {"repeat": 3, "layers": [{"conv": 4, "kernel": 3}]},
                "flatten", {"dense": 10}]}
             """, "net.json:3:29: layers[0].layers[0] (copy 2 of 3): ", "larger than the padded input"),
            // Inside a residual's body inside a repeat.
            ("""
             {"input": {"height": 2, "width": 2, "channels": 3},
              "layers": [{"repeat": 2, "layers": [{"residual": ["relu", {"maxpool": 3}]}]}, "flatten", {"dense": 10}]}
             """, "net.json:2:60: layers[0].layers[0].residual[1] (copy 1 of 2): ", "window is larger than the input"),
            (#"{"layers": [{"residual": []}, "flatten", {"dense": 10}]}"#, "net.json:1:13: layers[0].residual: ", "at least one layer"),
            // 10 classes but the last layer gives 5 values.
            ("""
             {"classes": 10, "layers": [
               "flatten",
               {"dense": 5}
             ]}
             """, "net.json:3:3: layers: ", "10 classes"),
            (#"{"classes": 1, "layers": ["flatten", {"dense": 1}]}"#, "net.json:1:13: classes: ", "at least 2 classes"),
          ])
    func shapeErrors(text: String, prefix: String, phrase: String) {
        let m = message(text) ?? "(parsed)"
        #expect(m.hasPrefix(prefix) && m.contains(phrase), "\(m)")
    }

    // MARK: the CLI

    func cli(_ arguments: [String]) throws -> CLI.Outcome {
        try #require(FileManager.default.isExecutableFile(atPath: CLI.binary), "build first: swift build -c release")
        return try CLI.run([CLI.binary] + arguments, timeout: 120)
    }

    @Test("ddptrain models: a table of every built-in model with parameters, MFLOPs and recipe; --json too")
    func modelsTable() throws {
        let r = try cli(["models"])
        #expect(r.status == 0, "\(r.output)")
        for spec in ModelSpec.all {
            let row = r.output.split(separator: "\n").first { $0.hasPrefix(spec.name + " ") }
            #expect(row?.contains(spec.recipe.description) == true, "\(spec.name): \(r.output)")
        }
        #expect(r.output.contains("122,570") && r.output.contains("1,250,858"), "\(r.output)")

        let j = try cli(["models", "--json"])
        #expect(j.status == 0, "\(j.output)")
        struct Row: Decodable { let name: String; let parameters: Int; let forwardMFLOPs: Double; let recipe: String }
        let rows = try JSONDecoder().decode([Row].self, from: Data(j.output.utf8))
        #expect(rows.map(\.name) == ModelSpec.all.map(\.name))
        #expect(rows.first { $0.name == "tf-tutorial" }?.parameters == 122_570)
        #expect(rows.allSatisfy { $0.forwardMFLOPs > 0 })
    }

    @Test("models --show prints a file that --show reads back to the same text; a bad file exits 1 with its message")
    func modelsShow() throws {
        let shown = try cli(["models", "--show", "resnet20"])
        #expect(shown.status == 0, "\(shown.output)")
        #expect(shown.output == ModelSpec.resnet20.modelFileJSON)
        let dir = CLI.temporaryDirectory()
        let path = dir + "/f.json"
        try shown.output.write(toFile: path, atomically: true, encoding: .utf8)
        let again = try cli(["models", "--show", path])
        #expect(again.status == 0 && again.output == shown.output, "\(again.output)")

        let bad = dir + "/bad.json"
        try #"{"layers": [{"conv": "16", "kernel": 3}]}"#.write(toFile: bad, atomically: true, encoding: .utf8)
        let failed = try cli(["models", "--show", bad])
        #expect(failed.status == 1, "\(failed.output)")
        #expect(failed.output.contains(#"\#(bad):1:22: layers[0].conv: expected a positive integer, got "16""#), "\(failed.output)")

        let unknown = try cli(["models", "--show", "resnet21"])
        #expect(unknown.status == 1 && unknown.output.contains("unknown model 'resnet21'"), "\(unknown.output)")
    }
}
