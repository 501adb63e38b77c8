import ConvCore
import DDPTrainer
import Testing

/// Batch norm against PyTorch's definition, computed here in double precision: training mode
/// normalises by the batch's mean and (biased) variance and updates the running estimates with
/// momentum 0.1 and the unbiased variance; evaluation mode normalises by the running estimates.
@Suite struct BatchNormTests {
    /// 3x3x2 images → batch norm → dense 2, so the logits are a known linear map of the normalised input.
    static let spec = ModelSpec(name: "bn-probe", inputHeight: 3, inputWidth: 3, inputChannels: 2, classes: 2,
                                layers: [.batchNorm, .flatten, .dense(outputs: 2)])
    static let batch = 5, pixels = 9, channels = 2

    func makeNetwork() -> (Network, [Double]) {
        let net = Network(spec: Self.spec, maxBatch: Self.batch, threads: 2)
        net.initializeParameters(seed: 1)
        // A non-trivial scale and shift, so the test sees them applied.
        net.parameters[0] = 1.5; net.parameters[1] = -0.5; net.parameters[2] = 0.25; net.parameters[3] = 2
        var rng = KeyedRandom(seed: 9, stream: .synthetic)
        var x: [Double] = []
        for i in 0..<(Self.batch * net.inputSize) {
            let v = 3 * rng.nextFloat() + Float(i % 2)  // channel 1 has another mean
            net.input[i] = v
            x.append(Double(v))
        }
        return (net, x)
    }

    /// Logits of `x` normalised with per-channel `mean` and `variance`, by the network's own scale, shift and dense layer.
    func expectedLogits(_ net: Network, x: [Double], mean: [Double], variance: [Double]) -> [Double] {
        let p = { (i: Int) in Double(net.parameters[i]) }
        let dense = 4, inputs = Self.pixels * Self.channels
        var out: [Double] = []
        for n in 0..<Self.batch {
            for o in 0..<2 {
                var z = p(dense + inputs * 2 + o)
                for j in 0..<inputs {
                    let c = j % Self.channels
                    let normalised = (x[n * inputs + j] - mean[c]) / (variance[c] + 1e-5).squareRoot() * p(c) + p(2 + c)
                    z += normalised * p(dense + j * 2 + o)
                }
                out.append(z)
            }
        }
        return out
    }

    func batchMoments(_ x: [Double]) -> (mean: [Double], variance: [Double]) {
        let count = Double(Self.batch * Self.pixels)
        var mean = [0.0, 0], square = [0.0, 0]
        for (i, v) in x.enumerated() { mean[i % 2] += v / count; square[i % 2] += v * v / count }
        return (mean, (0..<2).map { square[$0] - mean[$0] * mean[$0] })
    }

    @Test("training mode: batch statistics, and running estimates updated as PyTorch does")
    func trainingMode() {
        let (net, x) = makeNetwork()
        let ids = [Int32](0..<Int32(Self.batch))
        ids.withUnsafeBufferPointer { net.forward(batch: Self.batch, training: DropoutKey(seed: 0, epoch: 0, sampleIDs: $0.baseAddress!)) }
        let (mean, variance) = batchMoments(x)
        let want = expectedLogits(net, x: x, mean: mean, variance: variance)
        for (i, w) in want.enumerated() { #expect(abs(Double(net.logits[i]) - w) < 1e-4, "logit \(i): \(net.logits[i]) vs \(w)") }
        let count = Double(Self.batch * Self.pixels)
        for c in 0..<2 {
            #expect(abs(Double(net.buffers[c]) - 0.1 * mean[c]) < 1e-6, "running mean \(c)")
            #expect(abs(Double(net.buffers[2 + c]) - (0.9 + 0.1 * variance[c] * count / (count - 1))) < 1e-6, "running variance \(c)")
        }
        #expect(net.bufferTensors.map(\.name) == ["bn1.running_mean", "bn1.running_var"])
    }

    @Test("evaluation mode: normalised by the running estimates, which it leaves unchanged")
    func evaluationMode() {
        let (net, x) = makeNetwork()
        let running: [Float] = [0.3, -0.2, 2.5, 0.7]
        for (i, v) in running.enumerated() { net.buffers[i] = v }
        net.forward(batch: Self.batch, training: nil)
        let want = expectedLogits(net, x: x, mean: [0.3, -0.2], variance: [2.5, 0.7])
        for (i, w) in want.enumerated() { #expect(abs(Double(net.logits[i]) - w) < 1e-4, "logit \(i): \(net.logits[i]) vs \(w)") }
        #expect((0..<4).map { net.buffers[$0] } == running)
    }

    @Test("batch norm starts as the identity: scale 1, shift 0, running mean 0, running variance 1")
    func initialisation() {
        let net = Network(spec: .resnet20, maxBatch: 1, threads: 1)
        net.initializeParameters(seed: 3)
        for t in net.tensors where t.name.hasPrefix("bn") {
            let want: Float = t.name.hasSuffix(".weight") ? 1 : 0
            #expect(UnsafeBufferPointer(start: net.parameters + t.offset, count: t.count).allSatisfy { $0 == want }, "\(t.name)")
        }
        for t in net.bufferTensors {
            let want: Float = t.name.hasSuffix("running_var") ? 1 : 0
            #expect(UnsafeBufferPointer(start: net.buffers + t.offset, count: t.count).allSatisfy { $0 == want }, "\(t.name)")
        }
    }
}
