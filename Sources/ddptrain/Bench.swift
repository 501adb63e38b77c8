import ArgumentParser
import DDPTrainer
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training throughput on synthetic data (works under mpirun too).",
        discussion: """
            The full step (forward, loss, backward, all-reduce, SGD with momentum) on random
            CIFAR-shaped inputs. Prints images/s (median of --repeats windows of --steps steps),
            per-layer time with GFLOP/s and percent of the cores' FMA peak, and peak memory.
              ddptrain bench --model keras-cnn --batch-size 64
              cluster/ddprun -n 2 .build/release/ddptrain bench --model tf-tutorial --threads 1 --json
            """)

    @Option(help: "Model to measure: a built-in name (`ddptrain models`) or a model file (default: keras-cnn; with --kernels, models S and M).")
    var model: String?
    @Option(help: "Global batch size (divided among ranks).")
    var batchSize = 64
    @Option(help: "Steps per timed window.")
    var steps = 10
    @Option(help: "Untimed steps first.")
    var warmup = 3
    @Option(help: "Timed windows; the median is reported.")
    var repeats = 5
    @OptionGroup var parallel: ParallelOptions
    @Flag(help: "Under mpirun: also alternate windows of the fixed and the MPI reduction order (--reduce-order) in this one run and report both.")
    var compareReduceOrders = false
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false
    @Flag(help: "Benchmark the conv core instead: GEMM 1024³ and each distinct convolution of --model (default: models S and M) at --batch-size.")
    var kernels = false

    func validate() throws {
        if batchSize < 1 || steps < 1 || repeats < 1 || warmup < 0 { throw ValidationError("sizes must be positive") }
    }

    func run() throws {
        let comm = Communicator()
        defer { comm.finish() }
        let plan = parallel.threadPlan(comm)
        if kernels {
            if comm.isRoot { try printKernelBenchmark(threads: plan) }
            return
        }
        var config = BenchmarkConfig()
        let model = self.model ?? ModelSpec.kerasCNN.name
        config.model = model
        config.globalBatch = batchSize
        config.steps = steps
        config.warmup = warmup
        config.repeats = repeats
        config.bucketBytes = parallel.bucketBytes
        config.gradientCompression = parallel.gradientCompression
        config.precision = parallel.precision
        config.reduceGroup = parallel.reduceGroup
        config.reduceOrder = parallel.reduceOrder
        config.compareReduceOrders = compareReduceOrders
        config.batchNorm = parallel.batchNorm
        let result = try exitingOnSetupFailure {
            try comm.agreeOnSetup(Result { () -> BenchmarkConfig in
                _ = try ModelSpec.resolve(model)
                guard batchSize % comm.size == 0 else {
                    throw UsageError("global batch \(batchSize) is not divisible by \(comm.size) ranks")
                }
                return config
            })
        }
        let r = try runBenchmark(result, comm: comm, threads: plan)
        guard comm.isRoot else { return }
        if json { return try printJSON(r) }
        print("ddptrain bench: \(r.model), global batch \(r.globalBatch), \(r.ranks) rank(s) × \(plan)")
        print("cpu: \(r.cpu); kernel: \(r.kernels)")
        let samples = r.imagesPerSecondSamples.map { String(format: "%.0f", $0) }.joined(separator: " ")
        print(String(format: "images/s: %.1f (median of %d windows: %@); step %.2f ms; exposed all-reduce wait %.2f ms/step",
                     r.imagesPerSecond, r.imagesPerSecondSamples.count, samples, r.stepMs, r.allReduceMs))
        if let solo = r.singleRankImagesPerSecond, let efficiency = r.scalingEfficiency {
            print(String(format: "exposed communication %.1f%% of the step; scaling efficiency %.1f%% (rank 0 alone, same %d images × %d thread(s), no all-reduce: %.1f images/s)",
                         100 * r.allReduceMs / r.stepMs, 100 * efficiency, r.globalBatch / r.ranks, r.threadsPerRank, solo))
        }
        if let c = r.reduceOrders {
            let list = { (v: [Double]) in v.map { String(format: "%.0f", $0) }.joined(separator: " ") }
            print(String(format: "reduce order, alternated windows: fixed %.1f images/s (%@), mpi %.1f (%@); fixed ÷ mpi %.3f (median of pairs)",
                         c.fixedMedian, list(c.fixedImagesPerSecond), c.mpiMedian,
                         list(c.mpiImagesPerSecond), c.medianRatio))
        }
        if let a = r.allReduce {
            print(String(format: "all-reduce of the %.2f MB gradient: %.3f ms; algorithm bandwidth %.2f GB/s, bus bandwidth %.2f GB/s",
                         Double(a.bytes) / 1e6, a.milliseconds, a.algorithmGBps, a.busGBps))
        }
        // The names column is as wide as the longest name, so none is cut.
        let width = r.layers.map(\.name.count).max().map { max($0, 36) } ?? 36
        print("rank 0 layer (ms per step)".padding(toLength: width + 4, withPad: " ", startingAt: 0)
              + "forward  backward   GFLOP/s  % of \(Int(r.peakGflops)) GFLOP/s peak")
        for l in r.layers {
            let name = l.name.padding(toLength: width, withPad: " ", startingAt: 0)
            print("  " + name + String(format: " %8.2f  %8.2f  %8.1f  %5.1f%%", l.forwardMs, l.backwardMs, l.gflops, l.percentOfPeak))
        }
        if r.layers.contains(where: { $0.name.contains("F(") }) {
            print("  (Winograd layers are counted in the direct convolution's FLOPs, so they can pass the FMA peak)")
        }
        let total = r.layers.reduce(0) { $0 + $1.forwardMs + $1.backwardMs }
        print(String(format: "  layers total %.2f ms per step (rank 0)", total))
        print(String(format: "peak memory (rank 0): %.0f MB", r.peakMemoryMB))
    }
}

extension Bench {
    /// One line of JSON with sorted keys, for scripts.
    func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    func printKernelBenchmark(threads plan: ThreadPlan) throws {
        let models = try model.map { [try ModelSpec.resolve($0)] } ?? [.tfTutorial, .kerasCNN]
        let rows = runKernelBenchmark(models: models, batch: batchSize, threads: plan.threads, repeats: repeats,
                                      precision: parallel.precision)
        if json { return try printJSON(rows) }
        print("ddptrain bench --kernels: batch \(batchSize), \(plan); GFLOP/s, median of \(repeats), "
              + "(% of the FMA peak of the row's threads, measured right after it)")
        for row in rows {
            let rates = row.gflops.sorted { $0.key < $1.key }.map {
                "\($0.key) " + String(format: "%.1f (%.0f%%)", $0.value, row.peakGflops > 0 ? 100 * $0.value / row.peakGflops : 0)
            }
            print("  " + row.name.padding(toLength: 18, withPad: " ", startingAt: 0)
                  + row.shape.padding(toLength: 56, withPad: " ", startingAt: 0) + rates.joined(separator: "   "))
            if let p = row.forwardPhases {
                print(String(format: "    forward on one thread: input transform %.0f %%, products %.0f %%, output transform %.0f %%",
                             100 * p.inputTransform, 100 * p.products, 100 * p.outputTransform))
            }
        }
    }
}
