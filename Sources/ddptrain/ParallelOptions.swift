import ArgumentParser
import ConvCore
import DDPTrainer

/// The options `train` and `bench` share: how a rank computes and how its gradients travel.
struct ParallelOptions: ParsableArguments {
    @Option(help: "Compute threads per rank (default: this rank's share of the node's cores).")
    var threads: Int?

    @Option(help: "Operands of the products: fp32, or bf16 (bfloat16 multiplied by vdpbf16ps with float32 sums, in dense layers and Winograd F(2x2) layers; master weights, optimizer state and every other layer stay float32; needs a CPU with avx512_bf16).")
    var precision = Precision.float32

    @Option(help: "Gradient all-reduce bucket size in KiB, overlapped with the backward pass (0: one all-reduce after it).")
    var bucketKb = 1024

    @Option(help: "Gradients on the wire: none (float32) or bf16 (half the bytes, rounded to 8 significant bits; for slow links).")
    var gradientCompression = GradientCompression.none

    @Option(help: "Batch norm statistics in training: global (over the whole global batch, summed across ranks: 1, 2, 4 or 8 ranks train the same bits) or local (each rank's slice, as PyTorch DDP by default).")
    var batchNorm = BatchNormMode.global

    @Option(help: "Samples per group of every sum over the global batch (default: the global batch / 8). 1, 2, 4 or 8 ranks train the same bits when the world size is a power of two dividing the number of groups.")
    var reduceGroup: Int?

    @Option(help: "How ranks' gradients are added: fixed (a tree over ranks in a fixed order: the same bits on any power-of-two world size) or mpi (MPI_Iallreduce's order, which changes with the world size).")
    var reduceOrder = ReductionOrder.fixed

    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
        if bucketKb < 0 { throw ValidationError("--bucket-kb must not be negative") }
        if let g = reduceGroup, g < 1 { throw ValidationError("--reduce-group must be at least 1") }
        if let reason = precision.unavailableReason { throw ValidationError("--precision \(precision.rawValue): \(reason)") }
    }

    var bucketBytes: Int { bucketKb * 1024 }

    /// This rank's compute threads: --threads, else its share of the node.
    func threadPlan(_ comm: Communicator) -> ThreadPlan {
        ThreadPlan.decide(requested: threads, localRanks: comm.localSize,
                          launchedByMPI: Communicator.environmentInt("OMPI_COMM_WORLD_SIZE") != nil)
    }
}

extension GradientCompression: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension BatchNormMode: ExpressibleByArgument {}
extension ReductionOrder: ExpressibleByArgument {}
