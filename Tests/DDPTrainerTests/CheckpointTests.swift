import ConvCore
import DDPTrainer
import Foundation
import Testing

/// Checkpoint files as untrusted input: every kind of damage is reported, nothing crashes.
@Suite struct CheckpointTests {
    static let spec = ModelSpec(
        name: "tf-tutorial", inputHeight: 32, inputWidth: 32, inputChannels: 3, classes: 10,
        layers: ModelSpec.tfTutorial.layers)

    /// A valid checkpoint of model S written through the real store, and its network.
    func makeCheckpoint(spec: ModelSpec = Self.spec) throws -> (path: String, network: Network, directory: String) {
        let dir = CLI.temporaryDirectory()
        let network = Network(spec: spec, maxBatch: 1, threads: 1)
        network.initializeParameters(seed: 3)
        for i in 0..<network.bufferCount { network.buffers[i] = Float(i) * 0.25 }
        let optimizer = Optimizer(OptimizerConfig(kind: .sgd, learningRate: 0.01), tensors: network.tensors)
        for i in 0..<network.parameterCount { optimizer.state[i] = Float(i % 7) * 0.001 }
        var config = TrainingConfig(dataDirectory: "/data", runDirectory: dir)
        config.optimizer = optimizer.config
        var progress = TrainingProgress()
        progress.epoch = 2
        progress.stepInEpoch = 5
        progress.globalStep = 163
        let store = try CheckpointStore(runDirectory: dir, keep: 2)
        let data = try Checkpoint.encode(spec: network.spec, tensors: network.tensors, parameters: network.parameters,
                                         optimizerState: optimizer.state, bufferTensors: network.bufferTensors,
                                         buffers: network.buffers, progress: progress, config: config,
                                         worldSize: 4, dataFingerprint: "test-data")
        try store.save(globalStep: 163) { data }
        try store.waitForPendingSave()
        return (dir + "/checkpoints/" + CheckpointStore.fileName(globalStep: 163), network, dir)
    }

    func loadError(_ path: String, _ network: Network) -> String? {
        do {
            _ = try Checkpoint.load(path, for: network, optimizer: .sgd)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("a written checkpoint loads back exactly, with its progress and checksum")
    func roundTrip() throws {
        let (path, network, dir) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try Checkpoint.load(path, for: network, optimizer: .sgd)
        #expect(c.progress.epoch == 2 && c.progress.stepInEpoch == 5 && c.progress.globalStep == 163)
        #expect(c.parameters == Array(UnsafeBufferPointer(start: network.parameters, count: network.parameterCount)))
        #expect(c.optimizerState[8] == 0.001)
        #expect(c.metadata["world_size"] == "4" && c.metadata["data_fingerprint"] == "test-data")
        #expect(try String(contentsOfFile: dir + "/latest", encoding: .utf8) == "checkpoints/step-00000163.safetensors\n")
        #expect(try CheckpointReport(path: path).checksumHolds == true)
    }

    @Test("batch norm's running statistics are saved and restored with the parameters")
    func runningStatistics() throws {
        let (path, network, dir) = try makeCheckpoint(spec: .resnet20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try Checkpoint.load(path, for: network, optimizer: .sgd)
        #expect(c.buffers.count == network.bufferCount && network.bufferCount > 0)
        #expect(c.buffers == Array(UnsafeBufferPointer(start: network.buffers, count: network.bufferCount)))
        #expect(c.parameters == Array(UnsafeBufferPointer(start: network.parameters, count: network.parameterCount)))
    }

    @Test("truncated, bit-flipped, foreign and oversized files each get a message naming the problem")
    func badFiles() throws {
        let (path, network, dir) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        func variant(_ name: String, _ bytes: Data) throws -> String {
            let p = dir + "/" + name
            try bytes.write(to: URL(fileURLWithPath: p))
            return p
        }
        let truncated = try variant("truncated", good.prefix(good.count - 1000))
        #expect(loadError(truncated, network)?.contains("truncated") == true || loadError(truncated, network)?.contains("bytes") == true,
                "\(loadError(truncated, network) ?? "loaded")")

        var flipped = good
        flipped[good.count - 5000] ^= 0x10
        let flippedPath = try variant("flipped", flipped)
        #expect(loadError(flippedPath, network)?.contains("checksum mismatch") == true)
        #expect(try CheckpointReport(path: flippedPath).checksumHolds == false)

        let text = try variant("text", Data("hello, this is not a checkpoint at all\n".utf8))
        #expect(loadError(text, network)?.contains("header length") == true, "\(loadError(text, network) ?? "")")

        var huge = Data()
        withUnsafeBytes(of: UInt64(1 << 42).littleEndian) { huge.append(contentsOf: $0) }
        huge.append(Data("{}".utf8))
        let hugePath = try variant("huge", huge)
        #expect(loadError(hugePath, network)?.contains("exceeds") == true, "\(loadError(hugePath, network) ?? "")")

        #expect(loadError(dir + "/missing.safetensors", network)?.contains("no such file") == true)

        let other = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        #expect(loadError(path, other)?.contains("keras-cnn") == true)
    }

    @Test("random mutations of a checkpoint never crash the reader and are always detected")
    func fuzz() throws {
        let (path, network, dir) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(good.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        var rng = KeyedRandom(seed: 99, stream: .synthetic)
        let target = dir + "/mutant"
        var detected = 0
        let rounds = 300
        for round in 0..<rounds {
            var bytes = good
            switch round % 4 {
            case 0:  // flip bits in the header, where the parser works hardest
                for _ in 0...rng.nextInt(below: 4) { bytes[rng.nextInt(below: 8 + headerLength)] ^= UInt8(1 << rng.nextInt(below: 8)) }
            case 1:  // overwrite a header byte with a JSON-significant character
                let chars = Array("{}[]\":,0123456789-e.".utf8)
                bytes[8 + rng.nextInt(below: headerLength)] = chars[rng.nextInt(below: chars.count)]
            case 2:  // truncate anywhere
                bytes = bytes.prefix(rng.nextInt(below: bytes.count))
            default:  // corrupt the 8-byte length or the data
                if rng.nextInt(below: 2) == 0 {
                    bytes[rng.nextInt(below: 8)] = UInt8(truncatingIfNeeded: rng.next())
                } else {
                    bytes[8 + headerLength + rng.nextInt(below: bytes.count - 8 - headerLength)] ^= 0x01
                }
            }
            if bytes == good { detected += 1; continue }
            try bytes.write(to: URL(fileURLWithPath: target))
            if loadError(target, network) != nil { detected += 1 }
        }
        #expect(detected == rounds)
    }
}
