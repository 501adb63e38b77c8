import ConvCore
import DDPTrainer
import Foundation
import Testing

/// `ddptrain bench` is a benchmark, not a test: these runs are tiny and only show that it works
/// and reports what it promises, alone and under mpirun.
@Suite(.serialized) struct BenchTests {
    func bench(_ launch: [String], _ flags: [String]) throws -> BenchmarkResult {
        let r = try CLI.run(launch + [CLI.binary, "bench", "--json", "--steps", "1", "--warmup", "1", "--repeats", "1"] + flags)
        try #require(r.status == 0, "\(r.output)")
        let json = try #require(r.output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(r.output)")
        return try JSONDecoder().decode(BenchmarkResult.self, from: Data(json.utf8))
    }

    @Test("one process: throughput, every layer, memory and kernels reported")
    func singleProcess() throws {
        let r = try bench([], ["--model", "tf-tutorial", "--batch-size", "8"])
        #expect(r.ranks == 1 && r.globalBatch == 8)
        #expect(r.imagesPerSecond > 0 && r.stepMs > 0 && r.peakMemoryMB > 0)
        #expect(r.layers.count > 5 && r.layers.allSatisfy { $0.forwardMs >= 0 && $0.backwardMs >= 0 })
        #expect(r.layers.contains { $0.gflops > 0 })
        #expect(r.kernels.contains("AVX"), "\(r.kernels)")
        #expect(r.allReduce == nil && r.scalingEfficiency == nil && r.reduceOrders == nil)
    }

    @Test("under mpirun: all-reduce bandwidth, scaling efficiency against rank 0 alone, and both reduction orders")
    func underMPI() throws {
        let r = try bench([CLI.launcher, "-n", "2"], ["--model", "tf-tutorial", "--batch-size", "8", "--threads", "1",
                                                      "--repeats", "2", "--compare-reduce-orders"])
        #expect(r.ranks == 2)
        let allReduce = try #require(r.allReduce)
        #expect(allReduce.bytes == 4 * 122_570)
        #expect(allReduce.algorithmGBps > 0 && allReduce.busGBps == allReduce.algorithmGBps)
        let efficiency = try #require(r.scalingEfficiency)
        let solo = try #require(r.singleRankImagesPerSecond)
        #expect(abs(efficiency - r.imagesPerSecond / (2 * solo)) < 1e-9)
        let orders = try #require(r.reduceOrders)
        #expect(orders.fixedImagesPerSecond.count == 2 && orders.mpiImagesPerSecond.count == 2)
        #expect(orders.fixedImagesPerSecond.allSatisfy { $0 > 0 } && orders.mpiImagesPerSecond.allSatisfy { $0 > 0 })
        #expect(orders.medianRatio > 0)
    }

    @Test("--kernels: GEMM, the dense product in the chosen precision, and every convolution of models S and M")
    func kernels() throws {
        let r = try CLI.run([CLI.binary, "bench", "--kernels", "--batch-size", "2", "--repeats", "1"])
        #expect(r.status == 0, "\(r.output)")
        for name in ["gemm", "dense forward", "1024 → 1024, fp32", "conv1", "conv4"] {
            #expect(r.output.lowercased().contains(name), "\(r.output)")
        }
        if Precision.bfloat16.unavailableReason == nil {
            let bf16 = try CLI.run([CLI.binary, "bench", "--kernels", "--batch-size", "2", "--repeats", "1", "--precision", "bf16"])
            #expect(bf16.status == 0 && bf16.output.contains("1024 → 1024, bf16"), "\(bf16.output)")
        }
    }
}
