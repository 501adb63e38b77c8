import DDPTrainer
import Foundation
import Testing

/// Under real `mpirun` (through cluster/ddprun): the world size must not change what is learned.
@Suite(.serialized) struct DistributedTests {
    func train(ranks: Int, data: String, runDir: String, extra: [String] = []) throws -> CLI.Outcome {
        try CLI.run([CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir,
                      "--model", "keras-cnn", "--batch-size", "8", "--epochs", "2", "--max-steps", "5",
                      "--optimizer", "sgd", "--lr", "0.01", "--augment", "--seed", "5", "--threads", "1"] + extra)
    }

    /// 5 steps of keras-cnn (dropout, augmentation) with SGD. Each world size sums the gradients
    /// in another order (within a rank, and in the all-reduce), a difference of about 1e-7.
    /// ReLU and max-pool make training chaotic: once such a difference flips a pooling winner
    /// or a ReLU near zero, the runs drift apart at the rate training amplifies it. On this data
    /// and seed that first happens between steps 5 and 8 with the Winograd layers (1e-4 at step
    /// 8, 8e-4 at step 10), so 5 steps keep a margin of 500× while a sharding or averaging error
    /// would already show at 1e-3 after one step.
    @Test("1, 2 and 4 ranks train the same parameters; all replicas stay identical")
    func worldSizeIndependence() throws {
        let data = try CLI.makeData()
        var weights: [Int: [String: [Float]]] = [:]
        for ranks in [1, 2, 4] {
            let runDir = CLI.temporaryDirectory()
            let r = try train(ranks: ranks, data: data, runDir: runDir)
            #expect(r.status == 0, "\(ranks) ranks failed:\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(ranks) ranks:\n\(r.output)")
            #expect(r.output.contains("\(ranks) rank"), "\(r.output)")
            weights[ranks] = try CLI.weights(runDir + "/model.safetensors")
        }
        let reference = try #require(weights[1])
        #expect(!reference.isEmpty)
        for ranks in [2, 4] {
            let worst = CLI.maxRelativeDifference(reference, try #require(weights[ranks]))
            #expect(worst <= 1e-4, "\(ranks) ranks differ from 1 rank by \(worst)")
        }
    }

    /// One step of resnet20 with its recipe (SGD Nesterov, warmup, label smoothing,
    /// augmentation) at global batch 8. Global batch norm sums its statistics across ranks, so
    /// every world size normalises by the same 8 images: the parameters and running statistics
    /// agree to rounding (2e-7). Per-rank statistics (PyTorch DDP's default) normalise 2 ranks by
    /// 4 images each: the running means differ by 0.8, the shifts by 2 (relative to each tensor's
    /// largest value). More steps would not sharpen the test: the shifts' gradients are sums that
    /// nearly cancel, so rounding differences in these near-zero tensors grow to 2e-3 by step 2.
    @Test("batch norm: global statistics make 1, 2 and 4 ranks agree; per-rank statistics do not")
    func batchNormWorldSize() throws {
        let data = try CLI.makeData()
        func resnet(ranks: Int, mode: String) throws -> [String: [Float]] {
            let runDir = CLI.temporaryDirectory()
            let r = try CLI.run([CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir,
                                 "--model", "resnet20", "--batch-size", "8", "--max-steps", "1", "--seed", "2",
                                 "--threads", "1", "--batch-norm", mode])
            #expect(r.status == 0, "\(ranks) ranks, \(mode):\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(r.output)")
            return try CLI.weights(runDir + "/model.safetensors")
        }
        let reference = try resnet(ranks: 1, mode: "global")
        #expect(reference.keys.contains("bn1.running_var") && reference.keys.contains("conv21.weight"))
        for ranks in [2, 4] {
            let worst = CLI.maxRelativeDifference(reference, try resnet(ranks: ranks, mode: "global"))
            #expect(worst <= 1e-5, "\(ranks) ranks differ from 1 rank by \(worst)")
        }
        let local = CLI.maxRelativeDifference(reference, try resnet(ranks: 2, mode: "local"))
        #expect(local > 0.1, "per-rank statistics on 2 ranks should train differently, but differ by only \(local)")
    }

    @Test("bfloat16 gradient compression: replicas stay identical and training follows the float32 run closely")
    func bfloat16Compression() throws {
        let data = try CLI.makeData()
        var weights: [String: [String: [Float]]] = [:]
        for compression in ["none", "bf16"] {
            let runDir = CLI.temporaryDirectory()
            let r = try train(ranks: 2, data: data, runDir: runDir, extra: ["--gradient-compression", compression])
            #expect(r.status == 0, "\(compression):\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(compression):\n\(r.output)")
            weights[compression] = try CLI.weights(runDir + "/model.safetensors")
        }
        // Gradients rounded to 8 significant bits move each step's update by under 1 %.
        let difference = CLI.maxRelativeDifference(try #require(weights["none"]), try #require(weights["bf16"]))
        #expect(difference > 0 && difference < 1e-2, "bf16 against float32 after 5 steps: \(difference)")
    }

    @Test("each rank runs its share of the node's cores; a lone rank is not left on mpirun's one-core binding")
    func threadSizing() throws {
        let data = try CLI.makeData()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        for (ranks, threads) in [(1, cores), (2, max(1, cores / 2)), (4, max(1, cores / 4))] {
            let r = try CLI.run([CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", CLI.temporaryDirectory(),
                                 "--max-steps", "1", "--batch-size", "8"])
            #expect(r.status == 0, "\(r.output)")
            #expect(r.output.contains("\(ranks) rank\(ranks == 1 ? "" : "s") × \(threads) thread"), "\(ranks) ranks:\n\(r.output)")
        }
    }

    @Test("a stalled rank (SIGSTOP) ends the whole job after --collective-timeout, with a message naming the wait")
    func stalledRank() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        let (process, log) = try CLI.start([CLI.launcher, "-n", "2", CLI.binary, "--data", data, "--run-dir", dir,
                                            "--batch-size", "8", "--epochs", "1000", "--collective-timeout", "3"])
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && !FileManager.default.fileExists(atPath: dir + "/latest") { Thread.sleep(forTimeInterval: 0.02) }
        let ranks = CLI.rankPIDs(marker: dir)
        try #require(ranks.count == 2, "expected 2 rank processes, found \(ranks)")
        kill(ranks.last!, SIGSTOP)
        let outcome = CLI.finish(process, log: log, started: Date(), timeout: 60)
        for pid in CLI.rankPIDs(marker: dir) { kill(pid, SIGKILL) }
        #expect(outcome.status != 0)
        #expect(outcome.seconds < 20, "took \(outcome.seconds) s")
        #expect(outcome.output.contains("has not completed after"), "\(outcome.output)")
    }

    /// MPI_Init waits for every rank of the job; here the second "rank" is a process that never
    /// calls it, like a rank stuck on a host that went away during start-up.
    @Test("a rank that never joins ends the job at start-up after --collective-timeout, with a message")
    func rankNeverJoins() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        let r = try CLI.run([CLI.launcher, "-n", "1", CLI.binary, "--data", data, "--run-dir", dir, "--batch-size", "8",
                             "--collective-timeout", "5", ":", "-n", "1", "sleep", "600"], timeout: 120)
        #expect(r.status == 75, "\(r.output)")
        #expect(r.seconds < 60, "took \(r.seconds) s")
        #expect(r.output.contains("the start-up (MPI_Init"), "\(r.output)")
        #expect(r.output.contains("has not completed after"), "\(r.output)")
        #expect(CLI.rankPIDs(marker: dir).isEmpty, "ranks left running after the job ended")
    }

    @Test("a global batch not divisible by the world size is refused with a clear message")
    func indivisibleBatch() throws {
        let data = try CLI.makeData()
        let r = try train(ranks: 4, data: data, runDir: CLI.temporaryDirectory(), extra: ["--batch-size", "10"])
        #expect(r.status != 0)
        #expect(r.output.contains("10") && r.output.contains("4"), "\(r.output)")
        #expect(r.output.components(separatedBy: "error:").count == 2, "the message should appear once:\n\(r.output)")
    }

    @Test("a bad flag under mpirun is reported once, by rank 0, and the job fails")
    func badFlagOnce() throws {
        let r = try CLI.run([CLI.launcher, "-n", "2", CLI.binary, "--keep", "0"], timeout: 120)
        #expect(r.status != 0, "\(r.output)")
        #expect(r.output.components(separatedBy: "Error: --keep must be at least 1").count == 2, "the message should appear once:\n\(r.output)")
    }

    @Test("missing data: the error names every place it looked")
    func missingData() throws {
        let r = try CLI.run([CLI.binary, "--data", "/nonexistent/cifar", "--run-dir", CLI.temporaryDirectory()])
        #expect(r.status != 0)
        #expect(r.output.contains("/nonexistent/cifar"), "\(r.output)")
    }
}
