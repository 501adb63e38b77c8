import ConvCore
import DDPTrainer
import Foundation
import Testing

/// `--precision bf16` from the command line: refused where it cannot run, and where it can, a run
/// that keeps the world-size guarantee and float32 master weights.
@Suite(.serialized) struct PrecisionTests {
    static let bfloat16Unavailable = Precision.bfloat16.unavailableReason

    func train(ranks: Int, data: String, runDir: String, _ extra: [String]) throws -> CLI.Outcome {
        try CLI.run([CLI.launcher, "-n", "\(ranks)", CLI.binary, "--data", data, "--run-dir", runDir, "--model", "keras-cnn",
                     "--batch-size", "16", "--epochs", "1", "--optimizer", "sgd", "--lr", "0.01", "--seed", "5", "--threads", "1"] + extra)
    }

    @Test("--precision bf16 is refused, naming what is missing, where it cannot run (DDPTRAIN_KERNELS=avx2, or a CPU without avx512_bf16)")
    func refusedWhereUnavailable() throws {
        let data = try CLI.makeData()
        var cases = [(["DDPTRAIN_KERNELS=avx2"], Self.bfloat16Unavailable == nil ? "DDPTRAIN_KERNELS=avx2" : "avx512_bf16")]
        if Self.bfloat16Unavailable != nil { cases.append(([], "this CPU lacks avx512_bf16")) }
        for (environment, message) in cases {
            let runDir = CLI.temporaryDirectory()
            let r = try CLI.run(environment + [CLI.binary, "--data", data, "--run-dir", runDir, "--precision", "bf16", "--max-steps", "1"])
            #expect(r.status != 0, "\(r.output)")
            #expect(r.output.contains("--precision bf16: ") && r.output.contains(message), "\(r.output)")
            #expect(!FileManager.default.fileExists(atPath: runDir + "/checkpoints"), "nothing should be written")
        }
    }

    /// The bf16 products keep the sample groups' order, so 2 ranks train the bits of 1 rank as in
    /// float32; the checkpoint holds float32 master weights, which differ from a float32 run's.
    @Test("bf16 training: 2 ranks train the bits of 1 rank, unlike fp32's; resuming in fp32 is refused, resuming in bf16 continues",
          .enabled(if: bfloat16Unavailable == nil, "needs avx512_bf16: \(bfloat16Unavailable ?? "")"))
    func bfloat16Training() throws {
        let data = try CLI.makeData()
        var weights: [String: [String: [Float]]] = [:]
        var oneRankDir = ""
        for (name, ranks, precision) in [("bf16 × 1", 1, "bf16"), ("bf16 × 2", 2, "bf16"), ("fp32 × 1", 1, "fp32")] {
            let runDir = CLI.temporaryDirectory()
            if name == "bf16 × 1" { oneRankDir = runDir }
            let r = try train(ranks: ranks, data: data, runDir: runDir, ["--precision", precision, "--max-steps", "6"])
            #expect(r.status == 0, "\(name):\n\(r.output)")
            // keras-cnn's Winograd layers run F(4x4), which stays float32: only its two dense layers multiply in bf16.
            let said = "bf16 products in 2 of 6 layers with products (dense1, dense2: 5.7 % of the forward FLOPs); the other 4 multiply in float32"
            #expect(r.output.contains(said) == (precision == "bf16"), "\(name):\n\(r.output)")
            weights[name] = try CLI.weights(runDir + "/model.safetensors")
        }
        let bf16 = try #require(weights["bf16 × 1"]), fp32 = try #require(weights["fp32 × 1"])
        #expect(!bf16.isEmpty && bf16.values.allSatisfy { $0.allSatisfy(\.isFinite) })
        #expect(weights["bf16 × 2"] == bf16, "2 ranks differ from 1 by \(CLI.maxRelativeDifference(bf16, weights["bf16 × 2"] ?? [:]))")
        #expect(bf16 != fp32, "bf16 trained the bits of fp32: its products did not run")
        let difference = CLI.maxRelativeDifference(fp32, bf16)
        #expect(difference < 0.05, "bf16 strayed from fp32 by \(difference) in 6 steps")

        let refused = try train(ranks: 1, data: data, runDir: oneRankDir, ["--precision", "fp32", "--max-steps", "8"])
        #expect(refused.status != 0 && refused.output.contains("--precision is fp32 here but bf16 in the checkpoint"), "\(refused.output)")
        let resumed = try train(ranks: 1, data: data, runDir: oneRankDir, ["--precision", "bf16", "--max-steps", "8"])
        #expect(resumed.status == 0 && resumed.output.contains("resumed from") && resumed.output.contains("stopped at --max-steps 8"),
                "\(resumed.output)")
    }
}
