import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (the default subcommand).",
        discussion: """
            Every rank trains on its slice of each global batch; 1, 2 or 4 ranks follow the same \
            trajectory. Examples:
              mpirun -n 4 ddptrain --data ../shared/cifar10-sample --epochs 30
              ddptrain --model keras-cnn --optimizer sgd --lr 0.01 --augment
            """)

    @Option(help: "CIFAR-10 binary directory (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).")
    var data: String?

    @Option(help: "Model: \(ModelSpec.all.map(\.name).joined(separator: ", ")).")
    var model = ModelSpec.tfTutorial.name

    @Option(help: "Number of passes over the training set.")
    var epochs = 30

    @Option(help: "Global batch size: the sum over all ranks; must be divisible by the number of ranks.")
    var batchSize = 64

    @Option(help: "Optimizer: sgd or adam.")
    var optimizer: OptimizerConfig.Kind = .adam

    @Option(help: "Learning rate (default: 0.001 for adam, 0.01 for sgd).")
    var lr: Float?

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Flag(help: "Use Nesterov momentum (SGD).")
    var nesterov = false

    @Option(help: "L2 weight decay added to the gradient (PyTorch semantics).")
    var weightDecay: Float = 0

    @Option(help: "Seed for initialisation, data order, augmentation and dropout.")
    var seed: UInt64 = 0

    @Flag(help: "Random pad-4 crop and horizontal flip of training images.")
    var augment = false

    @Option(help: "Directory for metrics and weights (default: runs/<model>).")
    var runDir: String?

    @Option(help: "Stop after this many global steps in total (a checkpoint is written; run again without it to continue).")
    var maxSteps: Int?

    @Option(help: "Checkpoint every N global steps, besides every epoch end and the end of the run (0: only those).")
    var checkpointEvery = 500

    @Option(help: "Number of checkpoints to keep in the run directory.")
    var keep = 3

    @Option(help: "Compare the replicas' parameter checksums every N global steps (0: only at start, resume and end).")
    var verifyEvery = 1000


    @OptionGroup var parallel: ParallelOptions

    @Option(help: "Seconds a collective may take before the job is ended with a message (0: wait forever).")
    var collectiveTimeout = 300.0

    @Option(help: "auto: continue from the run directory's latest valid checkpoint, if any; none: start over; or a checkpoint path.")
    var resume = "auto"

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let m = maxSteps, m < 0 { throw ValidationError("--max-steps must not be negative") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must not be negative") }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if verifyEvery < 0 { throw ValidationError("--verify-every must not be negative") }
        if !(collectiveTimeout >= 0) { throw ValidationError("--collective-timeout must not be negative") }
    }

    func run() throws {
        let comm = Communicator()
        defer { comm.finish() }
        comm.setCollectiveTimeout(collectiveTimeout)
        let threadPlan = parallel.threadPlan(comm)
        let setup = try comm.agreeOnSetup(Result { try TrainingSetup(config: makeConfig(), rank: comm.rank, worldSize: comm.size) })
        let trainer = try Trainer(setup, comm: comm, threads: threadPlan)
        try trainer.run()
    }

    func makeConfig() throws -> TrainingConfig {
        let directory = try resolveDataDirectory(explicit: data)
        var config = TrainingConfig(dataDirectory: directory, runDirectory: runDir ?? "runs/\(model)")
        config.model = model
        config.epochs = epochs
        config.globalBatch = batchSize
        config.optimizer = OptimizerConfig(kind: optimizer, learningRate: lr ?? (optimizer == .adam ? 1e-3 : 1e-2),
                                           momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
        config.seed = seed
        config.augment = augment
        config.maxSteps = maxSteps
        config.threads = parallel.threads
        config.checkpointEvery = checkpointEvery
        config.keep = keep
        config.verifyEvery = verifyEvery
        config.collectiveTimeout = collectiveTimeout
        config.bucketBytes = parallel.bucketBytes
        config.gradientCompression = parallel.gradientCompression
        switch resume {
        case "auto": config.resume = .auto
        case "none": config.resume = .none
        default: config.resume = .path(resume)
        }
        return config
    }
}

extension OptimizerConfig.Kind: ExpressibleByArgument {}