import CIFAR10
import ConvCore
import Foundation

/// The data-parallel training loop. Each rank holds a full replica and trains on its slice of
/// every global batch; gradients are summed across ranks so every replica takes the same step.
public final class Trainer {
    let config: TrainingConfig
    let comm: Communicator
    let shard: ShardPlan
    let train: LabeledImages, test: LabeledImages
    let assembler: BatchAssembler, testAssembler: BatchAssembler
    public let network: Network
    let optimizer: Optimizer
    /// Overlaps the gradient all-reduce with backward (nil for one rank or --bucket-kb 0).
    let reducer: GradientReducer?
    let log: RunLog
    let reporter: ProgressReporter
    /// After each step: the losses and counts of the global batch, and the stop agreement.
    let stepExchange: StepExchange
    let store: CheckpointStore?
    let dataFingerprint: String
    /// The model file, normalisation and class names, saved with the weights for eval and predict.
    let modelMetadata: [String: String]
    var progress = TrainingProgress()
    /// Global step of the last checkpoint written, so none is written twice.
    var savedAtStep = -1
    /// Rank 0: parameters then optimizer state, copied at a checkpoint for the background writer.
    let snapshot: UnsafeMutablePointer<Float>?

    /// Sample indices and labels of the current local batch, allocated once.
    let sampleIDs: UnsafeMutablePointer<Int32>
    let labels: UnsafeMutablePointer<Int32>

    /// Builds the replica and gives every rank rank 0's starting point: fresh parameters from
    /// the seed, or the checkpoint rank 0 chose (collective).
    public init(_ setup: TrainingSetup, comm: Communicator, threads: ThreadPlan) throws {
        config = setup.config
        self.comm = comm
        shard = setup.shard
        train = setup.train
        test = setup.test
        log = setup.log
        reporter = ProgressReporter(config: config, isRoot: comm.isRoot, log: log, stepsPerEpoch: setup.shard.stepsPerEpoch(samples: setup.train.count))
        stepExchange = StepExchange(comm: comm, localBatch: setup.shard.localBatch)
        store = setup.store
        dataFingerprint = setup.dataFingerprint
        modelMetadata = TrainedModel.metadata(spec: setup.spec, normalization: setup.normalization,
                                              classNames: loadClassNames(directory: config.dataDirectory))
        assembler = BatchAssembler(images: train, normalization: setup.normalization)
        testAssembler = BatchAssembler(images: test, normalization: setup.normalization)
        network = Network(spec: setup.spec, maxBatch: shard.localBatch, threads: threads.threads, sampleGroups: config.sampleGroups,
                          precision: config.precision)
        optimizer = Optimizer(config.optimizer, tensors: network.tensors)
        network.labelSmoothing = config.labelSmoothing
        if config.batchNorm == .global && comm.size > 1 { network.statistics = comm }
        reducer = GradientReducer.make(comm: comm, network: network, bucketBytes: config.bucketBytes,
                                       compression: config.gradientCompression, order: config.reduceOrder)
        sampleIDs = .allocate(capacity: shard.localBatch)
        labels = .allocate(capacity: shard.localBatch)
        snapshot = comm.isRoot ? .allocate(capacity: network.parameterCount + optimizer.stateCount + network.bufferCount) : nil
        log.say("""
            ddptrain: \(setup.spec.name) (\(network.parameterCount.formatted()) parameters), \
            \(comm.size) rank\(comm.size == 1 ? "" : "s") × \(threads), \
            global batch \(config.globalBatch) (\(shard.localBatch) per rank), \(stepsPerEpoch) steps/epoch, \
            \(train.count) train / \(test.count) test images from \(config.dataDirectory)
            """)
        if let bf16 = network.bfloat16Summary { log.say(bf16) }
        if let caveat = config.worldSizeCaveat(worldSize: comm.size) { log.warn(caveat) }

        if let checkpoint = setup.resume {
            checkpoint.parameters.withUnsafeBufferPointer { network.parameters.update(from: $0.baseAddress!, count: $0.count) }
            checkpoint.optimizerState.withUnsafeBufferPointer { optimizer.state.update(from: $0.baseAddress!, count: $0.count) }
            checkpoint.buffers.withUnsafeBufferPointer { network.buffers.update(from: $0.baseAddress!, count: $0.count) }
            progress = checkpoint.progress
        } else {
            network.initializeParameters(seed: config.seed)
        }
        let start = comm.broadcast([setup.resume == nil ? 0 : 1] + progress.asDoubles)
        progress = TrainingProgress(Array(start.dropFirst()))
        // Every rank must agree that the resume point is already saved: saving is collective.
        if start[0] == 1 { savedAtStep = progress.globalStep }
        optimizer.steps = progress.optimizerSteps
        comm.broadcast(network.parameters, count: network.parameterCount)
        comm.broadcast(optimizer.state, count: optimizer.stateCount)
        comm.broadcast(network.buffers, count: network.bufferCount)
        if let checkpoint = setup.resume {
            log.say("resumed from \(checkpoint.path): epoch \(progress.epoch + 1), step \(progress.stepInEpoch) of \(stepsPerEpoch), global step \(progress.globalStep) (saved by \(checkpoint.metadata["world_size"] ?? "?") ranks)")
        }
        try verifyReplicas(when: setup.resume == nil ? "at start" : "after resume")
    }

    deinit {
        try? store?.waitForPendingSave()
        sampleIDs.deallocate()
        labels.deallocate()
        snapshot?.deallocate()
    }

    public var stepsPerEpoch: Int { shard.stepsPerEpoch(samples: train.count) }

    /// How a run ended: every epoch done (or --max-steps reached), or stopped by a signal
    /// (`StopSignal`) at a global step that every rank agreed on, with that step's checkpoint saved.
    public enum End: Equatable, Sendable {
        case finished
        case stopped(signal: Int32, globalStep: Int)
    }

    /// Trains until the configured epochs are done (or maxSteps), checkpointing on the way.
    @discardableResult
    public func run() throws -> End {
        defer { log.clearStatus() }  // an error's message starts on a line of its own
        if progress.epoch >= config.epochs {
            log.say("nothing to do: this run already finished \(config.epochs) epochs (raise --epochs to train further, or use another --run-dir)")
            return .finished
        }
        // The stop signal any rank has received, agreed after every step (so at the same step
        // everywhere) by the step's exchange (BENCHMARKS.md).
        var stopSignal: Int32 = 0
        while progress.epoch < config.epochs {
            let epoch = progress.epoch
            let permutation = epochPermutation(count: train.count, seed: config.seed, epoch: epoch)
            let started = Date()
            var stepsRun = 0
            reporter.epochStarted(atStep: progress.globalStep)
            while progress.stepInEpoch < stepsPerEpoch {
                if let limit = config.maxSteps, progress.globalStep >= limit {
                    try saveCheckpoint()
                    try finish()
                    log.say("stopped at --max-steps \(limit); run again without it to continue")
                    return .finished
                }
                comm.step = progress.globalStep
                let correct = trainStep(step: progress.stepInEpoch, epoch: epoch, permutation: permutation)
                let totals = stepExchange.exchange(signal: StopSignal.received, correct: correct, losses: network.sampleLosses)
                stopSignal = totals.signal
                progress.lossSum += totals.lossSum
                progress.correct += Double(totals.correct)
                progress.seen += Double(config.globalBatch)
                progress.stepInEpoch += 1
                progress.globalStep += 1
                progress.optimizerSteps = optimizer.steps
                stepsRun += 1
                reporter.stepDone(progress)
                if config.verifyEvery > 0 && progress.globalStep % config.verifyEvery == 0 {
                    try verifyReplicas(when: "at global step \(progress.globalStep)", quiet: true)
                }
                if config.checkpointEvery > 0 && progress.globalStep % config.checkpointEvery == 0
                    && progress.stepInEpoch < stepsPerEpoch {
                    try saveCheckpoint()
                }
                // At an epoch's last step the epoch ends first: its line and checkpoint as usual.
                if stopSignal != 0 && progress.stepInEpoch < stepsPerEpoch { return try stop(on: stopSignal) }
            }
            let seconds = Date().timeIntervalSince(started)
            let evaluation = evaluate()
            reporter.epochEnded()
            let seen = max(progress.seen, 1)
            try log.epoch(EpochStats(epoch: epoch + 1, epochs: config.epochs, step: progress.globalStep,
                                 trainLoss: progress.lossSum / seen, trainAccuracy: progress.correct / seen,
                                 testLoss: evaluation.loss, testAccuracy: evaluation.accuracy,
                                 imagesPerSecond: Double(stepsRun * config.globalBatch) / max(seconds, 1e-9), seconds: seconds))
            progress.epoch += 1
            progress.stepInEpoch = 0
            (progress.lossSum, progress.correct, progress.seen) = (0, 0, 0)
            try saveCheckpoint()
            if stopSignal != 0 && progress.epoch < config.epochs { return try stop(on: stopSignal) }
        }
        try finish()
        return .finished
    }

    /// Every rank calls this at the same step: the step's checkpoint is written (and waited for,
    /// so nothing is lost when the process exits), and each rank says where it stopped.
    func stop(on signal: Int32) throws -> End {
        try saveCheckpoint()
        try store?.waitForPendingSave()
        // Rank 0's live line ends (it stays on screen) before any rank prints, so that no stop
        // message runs on from it.
        log.endStatus()
        comm.barrier()
        let step = progress.globalStep
        let message = comm.isRoot
            ? "ddptrain: stopped on \(StopSignal.name(signal)) at global step \(step) (epoch \(progress.epoch + 1), step \(progress.stepInEpoch) of \(stepsPerEpoch)); its checkpoint is saved: run the same command again to continue"
            : "ddptrain: rank \(comm.rank): stopped on \(StopSignal.name(signal)) at global step \(step)"
        FileHandle.standardError.write(Data((message + "\n").utf8))
        return .stopped(signal: signal, globalStep: step)
    }

    /// One global step: next batch, forward, loss, backward, all-reduce, update. Returns this
    /// rank's correct answers; its samples' losses are in `network.sampleLosses`.
    func trainStep(step: Int, epoch: Int, permutation: [Int32]) -> Int {
        let n = shard.localBatch
        let range = shard.localRange(step: step)
        for (i, p) in range.enumerated() { sampleIDs[i] = permutation[p] }
        assembler.assemble(indices: UnsafeBufferPointer(start: sampleIDs, count: n), augment: config.augment,
                           seed: config.seed, epoch: epoch, into: network.input, labels: labels)
        network.forward(batch: n, training: DropoutKey(seed: config.seed, epoch: epoch, sampleIDs: sampleIDs))
        // Scaled by the global batch, so the sum over ranks is the gradient of the global mean loss.
        let correct = network.loss(labels: labels, batch: n, gradientScale: 1 / Float(config.globalBatch)).correct
        backwardSummingGradients(network, batch: n, reducer: reducer, comm: comm)
        optimizer.step(parameters: network.parameters, gradients: network.gradients,
                       learningRate: config.learningRate(atStep: progress.globalStep, stepsPerEpoch: stepsPerEpoch),
                       pool: network.workspace.pool)
        return correct
    }

    /// Test loss and accuracy (collective; see `Evaluation.run`).
    func evaluate() -> Evaluation {
        shareRunningStatistics()
        return Evaluation.run(network, on: testAssembler, comm: comm, batch: shard.localBatch)
    }

    /// Collective: rank 0 copies the state into its snapshot buffer and lets the background
    /// writer serialise and store it; the other ranks wait only for that copy (at their next
    /// collective).
    func saveCheckpoint() throws {
        if progress.globalStep == savedAtStep { return }
        savedAtStep = progress.globalStep
        shareRunningStatistics()
        guard let store, let snapshot else { return }
        try store.waitForPendingSave()
        snapshot.update(from: network.parameters, count: network.parameterCount)
        (snapshot + network.parameterCount).update(from: optimizer.state, count: optimizer.stateCount)
        (snapshot + network.parameterCount + optimizer.stateCount).update(from: network.buffers, count: network.bufferCount)
        let job = CheckpointJob(spec: network.spec, tensors: network.tensors, bufferTensors: network.bufferTensors, snapshot: snapshot,
                                parameterCount: network.parameterCount, optimizerStateCount: optimizer.stateCount,
                                progress: progress, config: config,
                                worldSize: comm.size, dataFingerprint: dataFingerprint, tensorBoard: log.events?.mark,
                                modelMetadata: modelMetadata)
        // The events the checkpoint marks reach the disk before the checkpoint does.
        let events = log.events
        try store.save(globalStep: progress.globalStep) { events?.sync(); return try job.encode() }
    }

    /// With per-rank batch norm every rank's running statistics drift apart; like PyTorch DDP,
    /// rank 0's are the model's, given to every rank before it evaluates or saves.
    func shareRunningStatistics() {
        if config.batchNorm == .local { comm.broadcast(network.buffers, count: network.bufferCount) }
    }

    func finish() throws {
        shareRunningStatistics()
        try store?.waitForPendingSave()
        try verifyReplicas(when: "at the end")
        if comm.isRoot { try saveWeights() }
    }

    /// Every replica must hold the same parameters; a cheap hash compared across ranks proves it.
    func verifyReplicas(when: String, quiet: Bool = false) throws {
        let hash = parameterChecksum(network.parameters, count: network.parameterCount)
        let range = comm.allReduceRange(Int64(bitPattern: hash))
        guard range.min == range.max else {
            throw UsageError("replicas differ \(when): parameter checksums range from \(range.min) to \(range.max)")
        }
        if quiet { return }
        log.say("replicas identical \(when) (parameter checksum \(String(UInt64(bitPattern: range.min), radix: 16)))")
    }

    func saveWeights() throws {
        let path = (config.runDirectory as NSString).appendingPathComponent("model.safetensors")
        let tensors = network.tensors.map { ($0.name, $0.shape, UnsafePointer(network.parameters + $0.offset)) }
            + network.bufferTensors.map { ($0.name, $0.shape, UnsafePointer(network.buffers + $0.offset)) }
        let metadata = ["format": TrainedModel.weightsFormat, "model": network.spec.name, "layers": network.spec.description,
                        "layout": "conv weights [kh][kw][in][out], dense weights [in][out], activations NHWC",
                        "seed": String(config.seed), "global_batch": String(config.globalBatch),
                        "global_step": String(progress.globalStep)].merging(modelMetadata) { own, _ in own }
        try SafeTensors.write(to: path, tensors: tensors, metadata: Checkpoint.sealed(metadata, tensors: tensors))
        log.say("wrote \(path)")
    }
}

/// FNV-1a over the parameters' bit patterns: equal iff (with overwhelming probability) bitwise equal.
public func parameterChecksum(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for i in 0..<count { h = (h ^ UInt64(p[i].bitPattern)) &* 0x100_0000_01b3 }
    return h
}
