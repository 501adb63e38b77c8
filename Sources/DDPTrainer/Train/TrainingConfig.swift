import ConvCore

/// Everything that defines a training run. Parsed by the CLI, saved in the run directory.
public struct TrainingConfig: Sendable, Codable, Equatable {
    public var model: String = ModelSpec.tfTutorial.name
    public var dataDirectory: String
    public var epochs: Int = 30
    /// The global batch: the sum over ranks. Training is defined by it, never by the world size.
    public var globalBatch: Int = 64
    public var optimizer = OptimizerConfig(kind: .adam, learningRate: 1e-3)
    /// The learning rate over the run: `optimizer.learningRate` × the schedule's factor.
    public var schedule = LearningRateSchedule.constant
    public var labelSmoothing: Float = 0
    public var batchNorm = BatchNormMode.global
    public var seed: UInt64 = 0
    public var augment = false
    public var runDirectory: String
    /// Stop after this many global steps in total (for tests and quick trials).
    public var maxSteps: Int?
    public var threads: Int?
    /// Save a checkpoint every this many global steps (0: only at epoch ends and the end of the run).
    public var checkpointEvery = 500
    /// Checkpoints kept in the run directory; older ones are deleted.
    public var keep = 3
    public var resume = ResumeMode.auto
    /// Compare the replicas' parameter checksums every this many global steps (0: only at
    /// start, after resume and at the end).
    public var verifyEvery = 1000
    /// Gradient all-reduce bucket size; 0 reduces the whole buffer after the backward pass.
    public var bucketBytes = 1 << 20
    /// The products' operands: float32, or bfloat16 with float32 sums.
    public var precision = Precision.float32
    /// bfloat16 halves the all-reduce's bytes, for slow links.
    public var gradientCompression = GradientCompression.none
    /// Samples per group of every sum over the global batch (`SampleGroups`); nil: the global
    /// batch over 8 (`SampleGroups.standard`).
    public var reduceGroup: Int?
    /// How ranks' gradients are added: in the fixed tree order (the same bits on 1, 2, 4 or 8
    /// ranks) or in `MPI_Iallreduce`'s.
    public var reduceOrder = ReductionOrder.fixed
    /// A collective that has not completed after this many seconds ends the job (0: wait forever).
    public var collectiveTimeout = 300.0
    /// Rank 0 logs the training loss, accuracy, learning rate and images/s every this many
    /// global steps (and at each epoch's end): TensorBoard scalars, and a line in plain mode.
    public var logEvery = 50
    public var progress = ProgressMode.auto
    /// Only the epoch lines, warnings and errors on the console.
    public var quiet = false

    /// Settings a resumed run must share with the checkpoint it continues: they define the
    /// trajectory. Epochs, step limits, threads, world size and paths may change.
    public func conflicts(with saved: TrainingConfig) -> [String] {
        var out: [String] = []
        func check<T: Equatable>(_ name: String, _ a: T, _ b: T) {
            if a != b { out.append("\(name) is \(a) here but \(b) in the checkpoint") }
        }
        check("--model", model, saved.model)
        check("--batch-size (global)", globalBatch, saved.globalBatch)
        check("--seed", seed, saved.seed)
        check("--augment", augment, saved.augment)
        check("--optimizer", optimizer.kind.rawValue, saved.optimizer.kind.rawValue)
        check("--lr", optimizer.learningRate, saved.optimizer.learningRate)
        check("--momentum", optimizer.momentum, saved.optimizer.momentum)
        check("--nesterov", optimizer.nesterov, saved.optimizer.nesterov)
        check("--weight-decay", optimizer.weightDecay, saved.optimizer.weightDecay)
        if optimizer.weightDecay > 0 || saved.optimizer.weightDecay > 0 {  // without decay the choice changes nothing
            check("--decay-all", optimizer.decayAllParameters, saved.optimizer.decayAllParameters)
        }
        check("the learning-rate schedule", schedule, saved.schedule)
        check("--label-smoothing", labelSmoothing, saved.labelSmoothing)
        check("--batch-norm", batchNorm, saved.batchNorm)
        check("--precision", precision.rawValue, saved.precision.rawValue)
        return out
    }

    public init(dataDirectory: String, runDirectory: String) {
        self.dataDirectory = dataDirectory
        self.runDirectory = runDirectory
    }

    /// Keys missing from an older checkpoint's configuration take today's defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dataDirectory: try c.decode(String.self, forKey: .dataDirectory),
                  runDirectory: try c.decode(String.self, forKey: .runDirectory))
        model = try c.decode(String.self, forKey: .model)
        globalBatch = try c.decode(Int.self, forKey: .globalBatch)
        optimizer = try c.decode(OptimizerConfig.self, forKey: .optimizer)
        seed = try c.decode(UInt64.self, forKey: .seed)
        augment = try c.decode(Bool.self, forKey: .augment)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps)
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? checkpointEvery
        keep = try c.decodeIfPresent(Int.self, forKey: .keep) ?? keep
        resume = try c.decodeIfPresent(ResumeMode.self, forKey: .resume) ?? resume
        verifyEvery = try c.decodeIfPresent(Int.self, forKey: .verifyEvery) ?? verifyEvery
        collectiveTimeout = try c.decodeIfPresent(Double.self, forKey: .collectiveTimeout) ?? collectiveTimeout
        bucketBytes = try c.decodeIfPresent(Int.self, forKey: .bucketBytes) ?? bucketBytes
        precision = try c.decodeIfPresent(Precision.self, forKey: .precision) ?? precision
        gradientCompression = try c.decodeIfPresent(GradientCompression.self, forKey: .gradientCompression) ?? gradientCompression
        reduceGroup = try c.decodeIfPresent(Int.self, forKey: .reduceGroup)
        reduceOrder = try c.decodeIfPresent(ReductionOrder.self, forKey: .reduceOrder) ?? reduceOrder
        schedule = try c.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule) ?? schedule
        labelSmoothing = try c.decodeIfPresent(Float.self, forKey: .labelSmoothing) ?? labelSmoothing
        batchNorm = try c.decodeIfPresent(BatchNormMode.self, forKey: .batchNorm) ?? batchNorm
        logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? logEvery
        progress = try c.decodeIfPresent(ProgressMode.self, forKey: .progress) ?? progress
        quiet = try c.decodeIfPresent(Bool.self, forKey: .quiet) ?? quiet
    }

    /// The recipe's values for every setting that defines the trajectory; the CLI then applies
    /// the flags the user gave.
    public mutating func apply(_ recipe: Recipe) {
        epochs = recipe.epochs
        globalBatch = recipe.globalBatch
        optimizer = recipe.optimizer
        schedule = recipe.schedule
        labelSmoothing = recipe.labelSmoothing
        augment = recipe.augment
    }

    /// The grouping of the global batch that orders every sum over samples.
    public var sampleGroups: SampleGroups {
        reduceGroup.map { SampleGroups(size: $0) } ?? .standard(globalBatch: globalBatch)
    }

    /// Why `worldSize` ranks would not train the very bits one rank trains, or nil when they do
    /// (README, *What "data-parallel" means here*).
    public func worldSizeCaveat(worldSize: Int) -> String? {
        if worldSize == 1 { return nil }
        let groups = sampleGroups, count = groups.count(batch: globalBatch)
        let ranks = "\(worldSize) ranks"
        if reduceOrder == .mpi {
            return "\(ranks) with --reduce-order mpi add gradients in Open MPI's order: training matches other world sizes only up to summation order"
        }
        if gradientCompression == .bfloat16 {
            return "\(ranks) with bf16 gradients round each rank's partial sums: training is reproducible on \(ranks) but not bit-identical to other world sizes"
        }
        if !groups.treeIsIndependent(ofWorldSize: worldSize, globalBatch: globalBatch) {
            return """
                \(ranks) do not split the global batch's \(count) sample groups (of \(groups.size), --reduce-group) into equal \
                power-of-two shares: training is reproducible on \(ranks) but not bit-identical to 1 rank \
                (that needs a power-of-two world size dividing \(count))
                """
        }
        return nil
    }

    /// The learning rate of the update made at `globalStep`.
    public func learningRate(atStep globalStep: Int, stepsPerEpoch: Int) -> Float {
        optimizer.learningRate * schedule.factor(step: globalStep, stepsPerEpoch: stepsPerEpoch, epochs: epochs)
    }
}

/// Which samples batch norm's statistics cover in training.
public enum BatchNormMode: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// The whole global batch, summed across ranks (PyTorch's SyncBatchNorm) in the fixed order:
    /// 1, 2, 4 or 8 ranks train the same bits, like every other layer.
    case global
    /// Each rank's own slice (PyTorch DDP's default): no communication, but the statistics,
    /// and so the training, change with the world size.
    case local
    public var description: String { rawValue }
}

/// Where a run's starting point comes from.
public enum ResumeMode: Sendable, Codable, Equatable {
    /// The run directory's latest valid checkpoint if there is one, else a fresh start.
    case auto
    case none
    case path(String)
}

/// A problem with the user's input that ends the run with a message and a non-zero status.
public struct UsageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
