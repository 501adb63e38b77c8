import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model (the default subcommand).",
        discussion: """
            Every rank trains on its slice of each global batch; 1, 2, 4 or 8 ranks train the same \
            bits (--reduce-group, --reduce-order). Examples:
              mpirun -n 4 ddptrain --data ../shared/cifar10-sample --epochs 30
              ddptrain --model keras-cnn --optimizer sgd --lr 0.01 --augment
            Ctrl-C, SIGTERM or SIGUSR1 at any rank: every rank stops after the same step, its \
            checkpoint is saved and the exit status is 3 (rerun to continue); a second signal ends \
            the run at once.
            """)

    @Option(help: "CIFAR-10 binary directory (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).")
    var data: String?

    @Option(help: "A built-in model (`ddptrain models` lists them) or a model file (path.json).")
    var model = ModelSpec.tfTutorial.name

    // The options below default to the model's recipe (`ddptrain models` shows each one).

    @Option(help: "Number of passes over the training set (default: the model's recipe).")
    var epochs: Int?

    @Option(help: "Global batch size: the sum over all ranks; must be divisible by the number of ranks (default: the recipe's).")
    var batchSize: Int?

    @Option(help: "Optimizer: sgd or adam (default: the recipe's). Another optimizer than the recipe's starts from its own defaults: lr 0.001 (adam) or 0.01 (sgd), momentum 0.9, no Nesterov.")
    var optimizer: OptimizerConfig.Kind?

    @Option(help: "Base learning rate (default: the recipe's). Linear scaling rule: multiply it by k when the global batch grows k-fold.")
    var lr: Float?

    @Option(help: "Learning-rate schedule after warmup: constant, cosine (to zero at the last step), or step:E1,E2[:F] (×F, default 0.1, at those epochs).")
    var schedule: String?

    @Option(help: "Epochs of linear learning-rate warmup (default: the recipe's).")
    var warmupEpochs: Int?

    @Option(help: "SGD momentum.")
    var momentum: Float?

    @Flag(inversion: .prefixedNo, help: "Nesterov momentum (SGD).")
    var nesterov: Bool?

    @Option(help: "L2 weight decay added to the gradient of conv and dense weights (PyTorch semantics).")
    var weightDecay: Float?

    @Flag(inversion: .prefixedNo, help: "Decay biases and batch norm parameters too (PyTorch's default; the recipes decay weights only).")
    var decayAll: Bool?

    @Option(help: "Label smoothing ε: targets (1 − ε)·one-hot + ε/classes.")
    var labelSmoothing: Float?

    @Option(help: "Seed for initialisation, data order, augmentation and dropout.")
    var seed: UInt64 = 0

    @Flag(inversion: .prefixedNo, help: "Random pad-4 crop and horizontal flip of training images.")
    var augment: Bool?

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

    @Option(help: "Log training loss, accuracy, learning rate and images/s every N global steps (TensorBoard, and a line in plain mode).")
    var logEvery = 50

    @Option(help: "Progress between epoch lines: auto (live on a terminal, else plain), live (one line redrawn in place) or plain (a line every --log-every steps).")
    var progress = ProgressMode.auto

    @Flag(help: "Print only the epoch lines, warnings and errors.")
    var quiet = false

    @OptionGroup var parallel: ParallelOptions

    @Option(help: "Seconds a collective may take before the job is ended with a message (0: wait forever).")
    var collectiveTimeout = 300.0

    @Option(help: "auto: continue from the run directory's latest valid checkpoint, if any; none: start over; or a checkpoint path.")
    var resume = "auto"

    func validate() throws {
        if let b = batchSize, b < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let e = epochs, e < 1 { throw ValidationError("--epochs must be at least 1") }
        if let w = warmupEpochs, w < 0 { throw ValidationError("--warmup-epochs must not be negative") }
        if let w = weightDecay, !(w >= 0) { throw ValidationError("--weight-decay must not be negative") }
        if let e = labelSmoothing, !(e >= 0 && e < 1) { throw ValidationError("--label-smoothing must be in [0, 1)") }
        if let schedule { _ = try parseSchedule(schedule) }
        if let m = maxSteps, m < 0 { throw ValidationError("--max-steps must not be negative") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must not be negative") }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if verifyEvery < 0 { throw ValidationError("--verify-every must not be negative") }
        if logEvery < 1 { throw ValidationError("--log-every must be at least 1") }
        if !(collectiveTimeout >= 0) { throw ValidationError("--collective-timeout must not be negative") }
    }

    func run() throws {
        let comm = Communicator(collectiveTimeout: collectiveTimeout)
        defer { comm.finish() }
        StopSignal.install()
        let threadPlan = parallel.threadPlan(comm)
        let setup = try exitingOnSetupFailure {
            try comm.agreeOnSetup(Result { try TrainingSetup(config: makeConfig(), rank: comm.rank, worldSize: comm.size) })
        }
        let end = try comm.endingJobOnError {
            try Trainer(setup, comm: comm, threads: threadPlan).run()
        }
        if case .stopped = end {
            StopSignal.stopCompleted()
            throw ExitCode(StopSignal.exitStatus)
        }
    }

    func makeConfig() throws -> TrainingConfig {
        let spec = try ModelSpec.resolve(model)
        let directory = try resolveDataDirectory(explicit: data)
        var config = TrainingConfig(dataDirectory: directory, runDirectory: runDir ?? "runs/\(spec.name)")
        config.model = model
        config.apply(spec.recipe)
        if let epochs { config.epochs = epochs }
        if let batchSize { config.globalBatch = batchSize }
        if let optimizer, optimizer != config.optimizer.kind {
            config.optimizer = OptimizerConfig(kind: optimizer, learningRate: optimizer == .adam ? 1e-3 : 1e-2,
                                               weightDecay: config.optimizer.weightDecay,
                                               decayAllParameters: config.optimizer.decayAllParameters)
        }
        if let lr { config.optimizer.learningRate = lr }
        if let momentum { config.optimizer.momentum = momentum }
        if let nesterov { config.optimizer.nesterov = nesterov }
        if let weightDecay { config.optimizer.weightDecay = weightDecay }
        if let decayAll { config.optimizer.decayAllParameters = decayAll }
        if let schedule { config.schedule.decay = try parseSchedule(schedule) }
        if let warmupEpochs { config.schedule.warmupEpochs = warmupEpochs }
        if let labelSmoothing { config.labelSmoothing = labelSmoothing }
        if let augment { config.augment = augment }
        config.batchNorm = parallel.batchNorm
        config.seed = seed
        config.maxSteps = maxSteps
        config.threads = parallel.threads
        config.checkpointEvery = checkpointEvery
        config.keep = keep
        config.verifyEvery = verifyEvery
        config.logEvery = logEvery
        config.progress = progress
        config.quiet = quiet
        config.collectiveTimeout = collectiveTimeout
        config.bucketBytes = parallel.bucketBytes
        config.gradientCompression = parallel.gradientCompression
        config.precision = parallel.precision
        config.reduceGroup = parallel.reduceGroup
        config.reduceOrder = parallel.reduceOrder
        switch resume {
        case "auto": config.resume = .auto
        case "none": config.resume = .none
        default: config.resume = .path(resume)
        }
        return config
    }
}

extension OptimizerConfig.Kind: ExpressibleByArgument {}
extension ProgressMode: ExpressibleByArgument {}
/// `constant`, `cosine`, or `step:E1,E2[:F]`.
func parseSchedule(_ text: String) throws -> LearningRateSchedule.Decay {
    switch text {
    case "constant": return .constant
    case "cosine": return .cosine
    default:
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, parts[0] == "step",
              case let epochs = parts[1].split(separator: ",").compactMap({ Int($0) }),
              !epochs.isEmpty, epochs.count == parts[1].split(separator: ",").count, epochs.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--schedule '\(text)': expected constant, cosine or step:E1,E2[:F] (e.g. step:30,45:0.1)")
        }
        let factor = parts.count == 3 ? Float(parts[2]) : 0.1
        guard let factor, factor > 0 else { throw ValidationError("--schedule '\(text)': the factor must be a positive number") }
        return .step(epochs: epochs, factor: factor)
    }
}
