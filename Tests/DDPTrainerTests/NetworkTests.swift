import ConvCore
import DDPTrainer
import Testing

@Suite struct NetworkTests {
    /// Counted by hand from each definition (k·k·in·out [+ out] per conv, 2·channels per batch
    /// norm, in·out + out per dense); the reference models' counts are their peers'.
    @Test("every built-in model has the parameter count of its definition",
          arguments: [("tf-tutorial", 122_570), ("keras-cnn", 1_250_858), ("lenet5", 62_006), ("alexnet", 2_014_410),
                      ("vgg11", 9_228_362), ("resnet20", 272_474), ("resnet56", 855_770)])
    func parameterCounts(name: String, count: Int) throws {
        let spec = try #require(ModelSpec.named(name))
        #expect(Network(spec: spec, maxBatch: 1, threads: 1).parameterCount == count)
    }

    /// examples/resnet20-wide2.json, the accuracy table's best recipe: ResNet-20 with every
    /// channel count doubled (16/32/64 → 32/64/128; counted by hand as above) and resnet20's recipe.
    @Test("the example model file reads as ResNet-20 at twice the width, with resnet20's recipe")
    func wideResNetExample() throws {
        let spec = try ModelSpec.load(contentsOf: CLI.root.appendingPathComponent("examples/resnet20-wide2.json").path)
        #expect(spec.recipe == ModelSpec.resnet20.recipe)
        #expect(Network(spec: spec, maxBatch: 1, threads: 1).parameterCount == 1_084_586)
        let doubled = ModelSpec.resnet20.modelFileJSON.replacingOccurrences(of: "\"conv\": 64", with: "\"conv\": 128")
            .replacingOccurrences(of: "\"conv\": 32", with: "\"conv\": 64").replacingOccurrences(of: "\"conv\": 16", with: "\"conv\": 32")
            .replacingOccurrences(of: "\"name\": \"resnet20\"", with: "\"name\": \"resnet20-wide2\"")
        #expect(try ModelSpec.parse(json: doubled, file: "doubled.json") == spec)
    }

    @Test("ResNets: one batch norm per conv, running statistics for each, identity and projection shortcuts")
    func resnetStructure() {
        let net = Network(spec: .resnet20, maxBatch: 1, threads: 1)
        let convs = net.tensors.filter { $0.name.hasPrefix("conv") }.count
        #expect(convs == 21)  // 19 3x3 convolutions and 2 projection shortcuts
        #expect(net.tensors.filter { $0.name.hasPrefix("bn") }.count == 2 * convs)
        #expect(net.bufferTensors.count == 2 * convs)
        #expect(net.tensors.filter { !$0.decays }.allSatisfy { $0.name.hasPrefix("bn") || $0.name.hasSuffix(".bias") })
        let summaries = net.layerSummaries.map(\.name)
        #expect(summaries.filter { $0.contains("identity shortcut") }.count == 7)
        #expect(summaries.filter { $0.contains("projection shortcut") }.count == 2)
    }

    /// A small model using every layer kind: padded and strided convs, 1x1, pooling, dropout, dense.
    static let tiny = ModelSpec(
        name: "tiny", inputHeight: 9, inputWidth: 9, inputChannels: 3, classes: 4,
        layers: [
            .conv(outChannels: 5, kernel: 3, stride: 1, padding: 1), .relu,
            .conv(outChannels: 6, kernel: 3, stride: 2, padding: 0), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 4, kernel: 1, stride: 1, padding: 0), .dropout(rate: 0.3),
            .flatten, .dense(outputs: 7), .relu, .dense(outputs: 4),
        ])

    func loadInput(_ net: Network, batch: Int, seed: UInt64) -> [Int32] {
        var rng = KeyedRandom(seed: seed, stream: .synthetic)
        for i in 0..<(batch * net.inputSize) { net.input[i] = 2 * rng.nextFloat() - 1 }
        return (0..<batch).map { _ in Int32(rng.nextInt(below: net.classes)) }
    }

    func lossAndGradient(_ net: Network, labels: [Int32], ids: [Int32]) -> Double {
        ids.withUnsafeBufferPointer { idp in
            net.forward(batch: labels.count, training: DropoutKey(seed: 3, epoch: 1, sampleIDs: idp.baseAddress!))
        }
        let r = net.loss(labels: labels, batch: labels.count, gradientScale: 1)
        net.backward(batch: labels.count)
        return r.lossSum
    }

    /// Every layer the zoo adds: a bias-free conv and batch norm, a residual block with an
    /// identity shortcut and one with a strided 1x1 projection, average and global average
    /// pooling, sigmoid and tanh, and label smoothing in the loss.
    static let tinyZoo = ModelSpec(
        name: "tiny-zoo", inputHeight: 8, inputWidth: 8, inputChannels: 3, classes: 4,
        layers: [
            .conv(outChannels: 4, kernel: 3, stride: 1, padding: 1, bias: false), .batchNorm, .relu,
            .residual(body: [.conv(outChannels: 4, kernel: 3, padding: 1, bias: false), .batchNorm, .tanh,
                             .conv(outChannels: 4, kernel: 3, padding: 1), .batchNorm],
                      shortcut: []),
            .sigmoid,
            .residual(body: [.conv(outChannels: 6, kernel: 3, stride: 2, padding: 1, bias: false), .batchNorm, .relu],
                      shortcut: [.conv(outChannels: 6, kernel: 1, stride: 2, padding: 0, bias: false), .batchNorm]),
            .avgPool(size: 2, stride: 1), .tanh, .globalAvgPool, .flatten, .dense(outputs: 4),
        ])

    /// VGG's blocks at odd sizes: batch norms that do the max pool after them (a 7x7 image, whose
    /// last row and column no window covers), with and without a ReLU between.
    static let tinyVGG = ModelSpec(
        name: "tiny-vgg", inputHeight: 7, inputWidth: 7, inputChannels: 3, classes: 4,
        layers: [
            .conv(outChannels: 16, kernel: 3, stride: 1, padding: 1, bias: false), .batchNorm, .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 32, kernel: 3, stride: 1, padding: 1, bias: false), .batchNorm, .maxPool(size: 2, stride: 2),
            .relu, .flatten, .dense(outputs: 4),
        ])

    @Test("whole-network gradient matches finite differences of the loss, every tensor",
          arguments: ["tiny", "tiny-zoo", "tiny-vgg"])
    func networkGradient(model: String) {
        let net = Network(spec: [Self.tiny, Self.tinyZoo, Self.tinyVGG].first { $0.name == model }!, maxBatch: 3, threads: 2)
        if model == "tiny-zoo" { net.labelSmoothing = 0.1 }
        net.initializeParameters(seed: 11)
        let labels = loadInput(net, batch: 3, seed: 12)
        let input = Array(UnsafeBufferPointer(start: net.input, count: 3 * net.inputSize))
        let ids: [Int32] = [5, 900, 17]
        _ = lossAndGradient(net, labels: labels, ids: ids)
        let analytic = Array(UnsafeBufferPointer(start: net.gradients, count: net.parameterCount))
        func loss() -> Double {
            input.withUnsafeBufferPointer { net.input.update(from: $0.baseAddress!, count: $0.count) }
            return lossAndGradient(net, labels: labels, ids: ids)
        }
        let eps: Float = 1e-3
        let center = loss()
        for t in net.tensors {
            var worst = 0.0
            for j in stride(from: 0, to: t.count, by: max(1, t.count / 12)) {
                let i = t.offset + j
                let saved = net.parameters[i]
                net.parameters[i] = saved + eps
                let plus = loss()
                net.parameters[i] = saved - eps
                let minus = loss()
                net.parameters[i] = saved
                // A ReLU or max-pool switching inside ±eps puts a kink in the loss; there the
                // derivative is one of the one-sided slopes, so the best of the three is judged.
                let slopes = [(plus - minus) / Double(2 * eps), (plus - center) / Double(eps), (center - minus) / Double(eps)]
                let a = Double(analytic[i])
                worst = max(worst, slopes.map { abs($0 - a) / max(abs($0), abs(a), 1e-2) }.min()!)
            }
            #expect(worst < 2e-2, "\(t.name): relative error \(worst)")
        }
    }

    /// ResNet blocks as the zoo builds them, at odd widths: batch norms that end a block's body,
    /// add its shortcut (identity, then a strided projection) and do the ReLU after it. Its
    /// gradient is not checked against finite differences: with this many ReLUs some always switch
    /// within ±eps. The fused layers are checked against the separate ones, which tiny and
    /// tiny-zoo check against finite differences.
    static let tinyResNet = ModelSpec(
        name: "tiny-resnet", inputHeight: 8, inputWidth: 8, inputChannels: 3, classes: 4,
        layers: [
            .conv(outChannels: 5, kernel: 3, stride: 1, padding: 1, bias: false), .batchNorm, .relu,
            .residual(body: [.conv(outChannels: 5, kernel: 3, padding: 1, bias: false), .batchNorm, .relu,
                             .conv(outChannels: 5, kernel: 3, padding: 1, bias: false), .batchNorm],
                      shortcut: []),
            .relu,
            .residual(body: [.conv(outChannels: 18, kernel: 3, stride: 2, padding: 1, bias: false), .batchNorm, .relu,
                             .conv(outChannels: 18, kernel: 3, padding: 1, bias: false), .batchNorm],
                      shortcut: [.conv(outChannels: 18, kernel: 1, stride: 2, padding: 0, bias: false), .batchNorm]),
            .relu, .globalAvgPool, .flatten, .dense(outputs: 4),
        ])

    /// Logits, loss, gradients and running statistics of one training step, then the logits in
    /// evaluation mode, as bit patterns.
    func stepBits(_ spec: ModelSpec, fusing: Bool) -> [UInt64] {
        let net = Network(spec: spec, maxBatch: 3, threads: 2, fusing: fusing)
        net.initializeParameters(seed: 5)
        let labels = loadInput(net, batch: 3, seed: 6)
        let loss = lossAndGradient(net, labels: labels, ids: [4, 8, 15])
        var bits = [loss.bitPattern]
        func add(_ p: UnsafePointer<Float>, _ count: Int) { bits += (0..<count).map { UInt64(p[$0].bitPattern) } }
        add(net.logits, 3 * net.classes)
        add(net.gradients, net.parameterCount)
        add(net.buffers, net.bufferCount)
        net.forward(batch: 3, training: nil)
        add(net.logits, 3 * net.classes)
        return bits
    }

    @Test("ReLUs, residual additions and max pools done by the layers before them give the bits of separate layers",
          arguments: ["tiny-resnet", "tiny-zoo", "tiny-vgg", "resnet20", "keras-cnn", "vgg11"])
    func fusionKeepsBits(model: String) throws {
        let spec = try #require([Self.tinyZoo, Self.tinyResNet, Self.tinyVGG].first { $0.name == model } ?? ModelSpec.named(model))
        // Compared outside #expect, which would print both of VGG-11's 9 million values.
        let fused = stepBits(spec, fusing: true), separate = stepBits(spec, fusing: false)
        let firstDifference = fused.count == separate.count ? zip(fused, separate).enumerated().first { $0.element.0 != $0.element.1 }?.offset : 0
        #expect(firstDifference == nil, "value \(firstDifference ?? 0) of \(separate.count) differs")
        // Every max pool of VGG's blocks is done by the batch norm before it.
        if model.contains("vgg") {
            let pools = Network(spec: spec, maxBatch: 1, threads: 1).layerSummaries.map(\.name).filter { $0.hasPrefix("maxpool") }
            #expect(!pools.isEmpty && pools.allSatisfy { $0.hasSuffix("(done by the batch norm)") }, "\(pools)")
        }
        // And the fusion happened: every block of a ResNet ends in a norm that adds its shortcut
        // and does the ReLU after it.
        if model.contains("resnet") {
            let names = Network(spec: spec, maxBatch: 1, threads: 1).layerSummaries.map(\.name)
            let blocks = names.filter { $0.hasPrefix("add") }
            #expect(!blocks.isEmpty && blocks.allSatisfy { $0.hasSuffix("done by the batch norm)") })
            #expect(!names.contains("relu"))
        }
    }

    /// A layer at 6x6 pixels runs F(2x2), in bf16 (forward, input gradient and weight gradient);
    /// one at 3x3 runs F(4x4), which stays float32. VGG-11's 4x4 layers run F(4x4) too, and its
    /// 2x2 layers run on pixel pairs with the weight gradient split by blocks, all float32, so of
    /// its layers only the dense one is reported.
    @Test("under bf16, the layers reported as multiplying in bf16 are the ones that do",
          .enabled(if: Precision.bfloat16.unavailableReason == nil, "needs avx512_bf16: \(Precision.bfloat16.unavailableReason ?? "")"))
    func bfloat16Report() {
        let spec = ModelSpec(name: "f2x2-probe", inputHeight: 6, inputWidth: 6, inputChannels: 16, classes: 10,
                             layers: [.conv(outChannels: 32, kernel: 3, padding: 1), .relu, .maxPool(size: 2, stride: 2),
                                      .conv(outChannels: 32, kernel: 3, padding: 1), .flatten, .dense(outputs: 10)])
        let probe = Network(spec: spec, maxBatch: 8, threads: 1, precision: .bfloat16)
        #expect(probe.layerSummaries.filter(\.bfloat16).map(\.name).map { $0.prefix { $0 != " " } } == ["conv1", "dense1"])
        #expect(probe.layerSummaries.filter(\.bfloat16).allSatisfy { $0.name.contains(" bf16 ") })
        #expect(probe.layerSummaries.contains { $0.name.hasPrefix("conv2 ") && $0.name.contains("F(4x4,3x3)") && !$0.bfloat16 })
        #expect(probe.bfloat16Summary?.hasPrefix("bf16 products in 2 of 3 layers with products (conv1, dense1: ") == true,
                "\(probe.bfloat16Summary ?? "nil")")
        let vgg = Network(spec: .vgg11, maxBatch: 64, threads: 1, precision: .bfloat16)
        #expect(vgg.bfloat16Summary?.hasPrefix("bf16 products in 1 of 9 layers with products (dense1: ") == true,
                "\(vgg.bfloat16Summary ?? "nil")")
        #expect(Network(spec: .vgg11, maxBatch: 64, threads: 1).bfloat16Summary == nil)
    }

    func gradients(threads: Int) -> [UInt32] {
        let net = Network(spec: .kerasCNN, maxBatch: 4, threads: threads)
        net.initializeParameters(seed: 1)
        let labels = loadInput(net, batch: 4, seed: 2)
        _ = lossAndGradient(net, labels: labels, ids: [0, 1, 2, 3])
        return (0..<net.parameterCount).map { net.gradients[$0].bitPattern }
    }

    @Test("1 and 2 threads give bitwise-identical gradients (keras-cnn)")
    func threadIndependence() {
        #expect(gradients(threads: 1) == gradients(threads: 2))
    }

    @Test("initialisation is PyTorch's ±1/√fanIn and reproducible from the seed")
    func initialisation() {
        let a = Network(spec: .tfTutorial, maxBatch: 1, threads: 1), b = Network(spec: .tfTutorial, maxBatch: 1, threads: 1)
        a.initializeParameters(seed: 4)
        b.initializeParameters(seed: 4)
        #expect(parameterChecksum(a.parameters, count: a.parameterCount) == parameterChecksum(b.parameters, count: b.parameterCount))
        for t in a.tensors {
            let bound = 1 / Float(t.fanIn).squareRoot()
            let values = UnsafeBufferPointer(start: a.parameters + t.offset, count: t.count)
            #expect(values.allSatisfy { abs($0) <= bound }, "\(t.name) outside ±\(bound)")
            if t.count >= 100 {
                #expect(values.max()! > 0.9 * bound && values.min()! < -0.9 * bound, "\(t.name) does not fill its range")
            }
        }
        b.initializeParameters(seed: 5)
        #expect(parameterChecksum(a.parameters, count: a.parameterCount) != parameterChecksum(b.parameters, count: b.parameterCount))
    }
}

@Suite struct OptimizerTests {
    func run(_ config: OptimizerConfig, steps: Int) -> [Float] {
        // Two tensors: a decaying weight [1, -2] and a bias [0.5] that decays only with decayAllParameters.
        let opt = Optimizer(config, tensors: [ParameterTensor(name: "w", offset: 0, shape: [2], fanIn: 1, decays: true),
                                              ParameterTensor(name: "b", offset: 2, shape: [1], fanIn: 1, decays: false)])
        var p: [Float] = [1, -2, 0.5]
        let pool = WorkerPool(threads: 1)
        for s in 0..<steps {
            let g: [Float] = [0.1 * Float(s + 1), -0.3, 0.05]
            p.withUnsafeMutableBufferPointer { opt.step(parameters: $0.baseAddress!, gradients: g, learningRate: config.learningRate, pool: pool) }
        }
        return p
    }

    /// The update rules as PyTorch documents them, in double precision.
    func reference(_ c: OptimizerConfig, steps: Int) -> [Double] {
        var p: [Double] = [1, -2, 0.5], m = [0.0, 0, 0], v = [0.0, 0, 0]
        for s in 0..<steps {
            let g: [Double] = [0.1 * Double(s + 1), -0.3, 0.05]
            for i in 0..<3 {
                let decay = i < 2 || c.decayAllParameters ? Double(c.weightDecay) : 0
                var d = g[i] + decay * p[i]
                switch c.kind {
                case .sgd:
                    m[i] = s == 0 ? d : Double(c.momentum) * m[i] + d
                    d = c.nesterov ? d + Double(c.momentum) * m[i] : m[i]
                    p[i] -= Double(c.learningRate) * d
                case .adam:
                    m[i] = 0.9 * m[i] + 0.1 * d
                    v[i] = 0.999 * v[i] + 0.001 * d * d
                    let mHat = m[i] / (1 - pow(0.9, Double(s + 1))), vHat = v[i] / (1 - pow(0.999, Double(s + 1)))
                    p[i] -= Double(c.learningRate) * mHat / (vHat.squareRoot() + 1e-8)
                }
            }
        }
        return p
    }

    @Test("SGD (momentum, Nesterov, weight decay) and Adam follow PyTorch's update rules",
          arguments: [
            OptimizerConfig(kind: .sgd, learningRate: 0.1, momentum: 0),
            OptimizerConfig(kind: .sgd, learningRate: 0.1, momentum: 0.9),
            OptimizerConfig(kind: .sgd, learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01),
            OptimizerConfig(kind: .adam, learningRate: 0.01),
            OptimizerConfig(kind: .adam, learningRate: 0.01, weightDecay: 0.1),
            OptimizerConfig(kind: .sgd, learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01, decayAllParameters: true),
          ])
    func updateRules(config: OptimizerConfig) {
        let got = run(config, steps: 5), want = reference(config, steps: 5)
        for i in 0..<3 { #expect(abs(Double(got[i]) - want[i]) < 1e-5, "\(config.kind) param \(i): \(got[i]) vs \(want[i])") }
    }
}

#if canImport(Glibc)
import Glibc
#endif
