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

    /// Every sum over samples is taken over fixed groups of the global batch and combined in one
    /// tree (SampleGroups), and the gradient reduction finishes that tree across ranks, so a
    /// power-of-two world size dividing the group count trains the very bits of one rank.
    /// Training is chaotic: a difference in the last bit used to grow to 1e-4 by step 8, so
    /// bitwise equality after 12 steps shows the order, not luck. Global batch 16: 8 groups of 2.
    /// The epoch's training and test losses are sums in sample order (StepExchange, Evaluation),
    /// so metrics.jsonl is the same bits too.
    @Test("1, 2, 4 and 8 ranks train bit-identical parameters and log bit-identical losses (augmentation, dropout; SGD momentum and Adam)",
          arguments: [["--model", "keras-cnn", "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9"],
                      ["--model", "tf-tutorial", "--optimizer", "adam"]])
    func worldSizeIndependence(_ recipe: [String]) throws {
        let data = try CLI.makeData()
        var weights: [Int: [String: [Float]]] = [:], metrics: [Int: [[String: String]]] = [:]
        for ranks in [1, 2, 4, 8] {
            let runDir = CLI.temporaryDirectory()
            // 200 images: one epoch of 12 steps, then the test set.
            let r = try train(ranks: ranks, data: data, runDir: runDir, extra: recipe + ["--batch-size", "16", "--epochs", "1", "--max-steps", "12"])
            #expect(r.status == 0, "\(ranks) ranks failed:\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(ranks) ranks:\n\(r.output)")
            #expect(r.output.contains("\(ranks) rank"), "\(r.output)")
            #expect(!r.output.contains("warning:"), "\(r.output)")
            weights[ranks] = try CLI.weights(runDir + "/model.safetensors")
            metrics[ranks] = try CLI.epochMetrics(runDir)
        }
        let reference = try #require(weights[1])
        #expect(!reference.isEmpty)
        #expect(metrics[1]?.count == 1 && metrics[1]?.first?["trainLoss"] != nil, "\(metrics)")
        for ranks in [2, 4, 8] {
            let other = try #require(weights[ranks])
            #expect(other == reference, "\(ranks) ranks differ from 1 rank by \(CLI.maxRelativeDifference(reference, other))")
            #expect(metrics[ranks] == metrics[1], "\(ranks) ranks logged \(metrics[ranks] ?? []), 1 rank \(metrics[1] ?? [])")
        }
    }

    /// The guarantee needs a power-of-two world size dividing the groups; 3 ranks still train
    /// (reproducibly) but are told. Open MPI's order (--reduce-order mpi) differs from one rank.
    @Test("3 ranks and --reduce-order mpi train but warn that they are not bit-identical to 1 rank; a bad --reduce-group is refused")
    func worldSizeCaveats() throws {
        let data = try CLI.makeData()
        let three = try train(ranks: 3, data: data, runDir: CLI.temporaryDirectory(), extra: ["--batch-size", "12", "--max-steps", "2"])
        #expect(three.status == 0, "\(three.output)")
        #expect(three.output.contains("warning: 3 ranks do not split the global batch's 4 sample groups"), "\(three.output)")
        #expect(three.output.components(separatedBy: "warning:").count == 2, "the warning should appear once:\n\(three.output)")
        let mpi = try train(ranks: 2, data: data, runDir: CLI.temporaryDirectory(), extra: ["--max-steps", "2", "--reduce-order", "mpi"])
        #expect(mpi.status == 0, "\(mpi.output)")
        #expect(mpi.output.contains("warning: 2 ranks with --reduce-order mpi"), "\(mpi.output)")
        let bad = try train(ranks: 2, data: data, runDir: CLI.temporaryDirectory(), extra: ["--reduce-group", "3"])
        #expect(bad.status != 0)
        #expect(bad.output.contains("--reduce-group 3 must divide the global batch 8"), "\(bad.output)")
        #expect(bad.output.components(separatedBy: "error:").count == 2, "the message should appear once:\n\(bad.output)")
    }

    /// Three steps of resnet20 with its recipe (SGD Nesterov, warmup, label smoothing,
    /// augmentation) at global batch 16. Global batch norm sums its statistics across ranks in
    /// the groups' tree order, and its scale and shift gradients are those global sums, so 1, 2,
    /// 4 and 8 ranks train the same bits, running statistics included. Per-rank statistics
    /// (PyTorch DDP's default) normalise 2 ranks by 8 images each: the running means differ by
    /// about 0.8, the shifts by 2 (relative to each tensor's largest value).
    @Test("batch norm: global statistics make 1, 2, 4 and 8 ranks bit-identical; per-rank statistics do not")
    func batchNormWorldSize() throws {
        let data = try CLI.makeData()
        func resnet(ranks: Int, mode: String) throws -> [String: [Float]] {
            let runDir = CLI.temporaryDirectory()
            let r = try CLI.run([CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir,
                                 "--model", "resnet20", "--batch-size", "16", "--max-steps", "3", "--seed", "2",
                                 "--threads", "1", "--batch-norm", mode])
            #expect(r.status == 0, "\(ranks) ranks, \(mode):\n\(r.output)")
            #expect(r.output.contains("replicas identical at the end"), "\(r.output)")
            return try CLI.weights(runDir + "/model.safetensors")
        }
        let reference = try resnet(ranks: 1, mode: "global")
        #expect(reference.keys.contains("bn1.running_var") && reference.keys.contains("conv21.weight"))
        for ranks in [2, 4, 8] {
            let weights = try resnet(ranks: ranks, mode: "global")
            #expect(weights == reference, "\(ranks) ranks differ from 1 rank by \(CLI.maxRelativeDifference(reference, weights))")
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
        CLI.waitForFirstCheckpoint(dir)
        let ranks = CLI.rankPIDs(marker: dir, count: 2)
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
