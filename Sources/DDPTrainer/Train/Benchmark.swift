import ConvCore
import Foundation

/// Synthetic-data throughput of a model on this machine (or cluster, under mpirun), in the
/// manner of Horovod's synthetic benchmarks: random inputs, the full training step.
public struct BenchmarkConfig: Sendable {
    public var model = ModelSpec.kerasCNN.name
    public var globalBatch = 64
    public var steps = 10
    public var warmup = 3
    public var repeats = 5
    /// As `TrainingConfig.bucketBytes` and `.gradientCompression`.
    public var bucketBytes = 1 << 20
    public var gradientCompression = GradientCompression.none
    /// As `TrainingConfig.precision`.
    public var precision = Precision.float32
    /// As `TrainingConfig.reduceGroup` and `.reduceOrder`.
    public var reduceGroup: Int?
    public var reduceOrder = ReductionOrder.fixed
    /// Under mpirun: also time windows that alternate the fixed and the MPI reduction order in
    /// this one process, so that both see the same machine (`BenchmarkResult.reduceOrders`).
    public var compareReduceOrders = false
    public var batchNorm = BatchNormMode.global
    public var optimizer = OptimizerConfig(kind: .sgd, learningRate: 0.01, momentum: 0.9)
    public init() {}
}

public struct BenchmarkResult: Codable, Sendable {
    public struct Layer: Codable, Sendable {
        public let name: String
        public let forwardMs: Double, backwardMs: Double
        public let gflops: Double
        public let percentOfPeak: Double
    }
    public let model: String
    public let ranks: Int, threadsPerRank: Int, globalBatch: Int
    public let imagesPerSecond: Double
    public let imagesPerSecondSamples: [Double]
    public let stepMs: Double
    /// Time per step spent waiting for the gradient all-reduce after backward (rank 0's view):
    /// the exposed communication, what overlap did not hide.
    public let allReduceMs: Double
    /// Under mpirun: blocking all-reduce of the whole gradient, timed apart from training.
    public let allReduce: AllReduceBandwidth?
    /// Under mpirun: rank 0 training alone (same per-rank batch and threads, no all-reduce)
    /// while the other ranks sleep, and the job's images/s over `ranks` × that.
    public let singleRankImagesPerSecond: Double?
    public let scalingEfficiency: Double?
    /// With `compareReduceOrders`: images/s of alternated windows in each order.
    public let reduceOrders: ReduceOrderComparison?
    public let layers: [Layer]
    public let peakMemoryMB: Double
    public let cpu: String
    public let kernels: String
    /// FMA peak of the cores this rank computes on: one core's measured FMA throughput (at the kernels' vector width) × threads.
    public let peakGflops: Double
}

public func runBenchmark(_ config: BenchmarkConfig, comm: Communicator, threads: ThreadPlan) throws -> BenchmarkResult {
    let spec = try ModelSpec.resolve(config.model)
    guard config.globalBatch % comm.size == 0 else {
        throw UsageError("global batch \(config.globalBatch) is not divisible by \(comm.size) ranks")
    }
    let batch = config.globalBatch / comm.size
    if let group = config.reduceGroup, config.globalBatch % group != 0 {
        throw UsageError("--reduce-group \(group) must divide the global batch \(config.globalBatch)")
    }
    let groups = config.reduceGroup.map { SampleGroups(size: $0) } ?? .standard(globalBatch: config.globalBatch)
    let network = Network(spec: spec, maxBatch: batch, threads: threads.threads, sampleGroups: groups, precision: config.precision)
    network.initializeParameters(seed: 1)
    let optimizer = Optimizer(config.optimizer, tensors: network.tensors)
    if config.batchNorm == .global && comm.size > 1 { network.statistics = comm }
    var rng = KeyedRandom(seed: UInt64(comm.rank), stream: .synthetic)
    for i in 0..<(batch * network.inputSize) { network.input[i] = rng.nextGaussian() }
    let labels = (0..<batch).map { _ in Int32(rng.nextInt(below: network.classes)) }
    let ids = (0..<batch).map { Int32(comm.rank * batch + $0) }
    var allReduceNanoseconds: UInt64 = 0
    let reducer = GradientReducer.make(comm: comm, network: network, bucketBytes: config.bucketBytes,
                                       compression: config.gradientCompression, order: config.reduceOrder)

    func step(_ index: Int, communicate: Bool = true, through chosen: GradientReducer? = nil) {
        ids.withUnsafeBufferPointer { network.forward(batch: batch, training: DropoutKey(seed: 1, epoch: index, sampleIDs: $0.baseAddress!)) }
        _ = network.loss(labels: labels, batch: batch, gradientScale: 1 / Float(config.globalBatch))
        if communicate {
            allReduceNanoseconds += backwardSummingGradients(network, batch: batch, reducer: chosen ?? reducer, comm: comm)
        } else {
            network.backward(batch: batch)
        }
        optimizer.step(parameters: network.parameters, gradients: network.gradients, learningRate: config.optimizer.learningRate,
                       pool: network.workspace.pool)
    }

    for i in 0..<config.warmup { step(i) }
    let profile = LayerProfile(layers: network.layerSummaries.count)
    network.profile = profile
    allReduceNanoseconds = 0
    var samples: [Double] = []
    for r in 0..<config.repeats {
        comm.barrier()
        let start = DispatchTime.now().uptimeNanoseconds
        for i in 0..<config.steps { step(config.warmup + r * config.steps + i) }
        comm.barrier()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        samples.append(Double(config.steps * config.globalBatch) / seconds)
    }
    let totalSteps = Double(config.steps * config.repeats)
    let exposedNanoseconds = allReduceNanoseconds
    network.profile = nil

    var singleRank: Double?
    var allReduce: AllReduceBandwidth?
    var reduceOrders: ReduceOrderComparison?
    if comm.size > 1 {
        if comm.isRoot {
            let reducer = network.statistics
            network.statistics = nil  // the other ranks sleep: batch norm must not wait for them
            defer { network.statistics = reducer }
            singleRank = median((0..<config.repeats).map { _ in
                let start = DispatchTime.now().uptimeNanoseconds
                for i in 0..<config.steps { step(i, communicate: false) }
                return Double(config.steps * batch) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            })
        }
        comm.sleepingBarrier()
        if config.compareReduceOrders {
            let reducers = ReductionOrder.allCases.map {
                GradientReducer.make(comm: comm, network: network, bucketBytes: config.bucketBytes,
                                     compression: config.gradientCompression, order: $0)
            }
            reduceOrders = compareOrders(repeats: config.repeats) { order, r in
                comm.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                for i in 0..<config.steps { step(r * config.steps + i, through: reducers[order]) }
                comm.barrier()
                return Double(config.steps * config.globalBatch) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
        }
        allReduce = measureAllReduce(comm: comm, buffer: network.gradients, count: network.parameterCount, repeats: config.repeats)
    }
    let cpu = CPUInfo.current
    let peak = network.workspace.kernels.measuredPeakGflopsPerCore() * Double(threads.threads)
    let layers = network.layerSummaries.enumerated().map { l, s in
        let f = Double(profile.forwardNanoseconds[l]) / totalSteps / 1e6
        let b = Double(profile.backwardNanoseconds[l]) / totalSteps / 1e6
        let flops = (s.forwardFlops + s.backwardFlops) * Double(batch)
        let gflops = f + b > 0 ? flops / ((f + b) / 1e3) / 1e9 : 0
        return BenchmarkResult.Layer(name: s.name, forwardMs: f, backwardMs: b, gflops: gflops,
                                     percentOfPeak: peak > 0 ? 100 * gflops / peak : 0)
    }
    let throughput = median(samples)
    return BenchmarkResult(
        model: spec.name, ranks: comm.size, threadsPerRank: threads.threads, globalBatch: config.globalBatch,
        imagesPerSecond: throughput, imagesPerSecondSamples: samples, stepMs: 1000 * Double(config.globalBatch) / throughput,
        allReduceMs: Double(exposedNanoseconds) / totalSteps / 1e6, allReduce: allReduce,
        singleRankImagesPerSecond: singleRank, scalingEfficiency: singleRank.map { throughput / (Double(comm.size) * $0) },
        reduceOrders: reduceOrders, layers: layers,
        peakMemoryMB: peakResidentMegabytes(), cpu: cpu.summary, kernels: kernelDescription(network), peakGflops: peak)
}

/// Images/s of the fixed and the MPI reduction order, measured in pairs of back-to-back windows
/// (which goes first alternates), so that a busy machine slows both alike.
public struct ReduceOrderComparison: Codable, Sendable {
    public let fixedImagesPerSecond: [Double]
    public let mpiImagesPerSecond: [Double]
    /// The median over pairs of fixed ÷ mpi.
    public let medianRatio: Double
    public var fixedMedian: Double { median(fixedImagesPerSecond) }
    public var mpiMedian: Double { median(mpiImagesPerSecond) }
}

/// `window(order, repeat)` (order indexes `ReductionOrder.allCases`) timed `repeats` times for each order, alternating.
func compareOrders(repeats: Int, _ window: (_ order: Int, _ repeat: Int) -> Double) -> ReduceOrderComparison {
    let fixed = ReductionOrder.allCases.firstIndex(of: .fixed)!, mpi = ReductionOrder.allCases.firstIndex(of: .mpi)!
    var a: [Double] = [], b: [Double] = []
    for r in 0..<repeats {
        if r % 2 == 0 {
            a.append(window(fixed, r)); b.append(window(mpi, r))
        } else {
            b.append(window(mpi, r)); a.append(window(fixed, r))
        }
    }
    return ReduceOrderComparison(fixedImagesPerSecond: a, mpiImagesPerSecond: b, medianRatio: median(zip(a, b).map { $0 / $1 }))
}

/// All-reduce throughput as nccl-tests defines it: the algorithm bandwidth is the message size
/// over the time; the bus bandwidth scales it by 2(n-1)/n, the share of the data each rank
/// must send and receive in a ring, so that it can be compared with the link's speed.
public struct AllReduceBandwidth: Codable, Sendable {
    public let bytes: Int
    public let milliseconds: Double
    public let algorithmGBps: Double
    public let busGBps: Double
}

/// Median over `repeats` windows of 10 back-to-back all-reduces of `count` floats (after 2 untimed).
func measureAllReduce(comm: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, repeats: Int) -> AllReduceBandwidth {
    let iterations = 10
    for _ in 0..<2 { comm.allReduceSum(buffer, count: count) }
    let seconds = median((0..<repeats).map { _ in
        comm.barrier()
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { comm.allReduceSum(buffer, count: count) }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(iterations)
    })
    let bytes = 4 * count
    let algorithm = Double(bytes) / seconds / 1e9
    return AllReduceBandwidth(bytes: bytes, milliseconds: seconds * 1e3, algorithmGBps: algorithm,
                              busGBps: algorithm * 2 * Double(comm.size - 1) / Double(comm.size))
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// The CPU as /proc/cpuinfo describes it.
struct CPUInfo {
    let model: String
    let megahertz: Double
    let avx512: Bool

    static var current: CPUInfo {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix(name) }?.split(separator: ":", maxSplits: 1).last
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return CPUInfo(model: field("model name") ?? "unknown CPU", megahertz: Double(field("cpu MHz") ?? "") ?? 0,
                       avx512: ConvKernelSet.cpuSupportsAVX512)
    }
    var summary: String { "\(model), \(Int(megahertz)) MHz, AVX-512 \(avx512 ? "present" : "absent")" }
}

func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

#if canImport(Glibc)
import Glibc
#endif

/// The kernels a workspace runs, for the benchmark's report.
private func kernelDescription(_ network: Network) -> String {
    let ws = network.workspace
    let products = network.bfloat16Summary.map { "; \($0) (vdpbf16ps, float32 sums); shares are of the float32 FMA peak" } ?? ""
    return "convolution: \(ws.kernels.description); \(ws.kernels.gemmDescription)\(products)"
}
