import CIFAR10
import Foundation

/// The part of starting a run that can fail on bad input: checking the configuration, reading
/// and validating the data, preparing the run directory, and (rank 0) finding the checkpoint to
/// resume from. It makes no MPI calls, so a failure on some ranks cannot leave the others
/// waiting in a collective; the caller agrees on success (`Communicator.agreeOnSetup`) first.
public struct TrainingSetup {
    public let config: TrainingConfig
    let spec: ModelSpec
    let shard: ShardPlan
    let train: LabeledImages, test: LabeledImages
    let normalization: Normalization
    let dataFingerprint: String
    let log: RunLog
    /// Rank 0 only: where to write checkpoints, and the checkpoint this run continues.
    let store: CheckpointStore?
    let resume: Checkpoint?

    public init(config: TrainingConfig, rank: Int, worldSize: Int) throws {
        let spec = try ModelSpec.resolve(config.model)
        guard config.epochs >= 1 else { throw UsageError("--epochs must be at least 1 (got \(config.epochs))") }
        if let group = config.reduceGroup, group < 1 || config.globalBatch % group != 0 {
            throw UsageError("--reduce-group \(group) must divide the global batch \(config.globalBatch)")
        }
        do {
            shard = try ShardPlan(globalBatch: config.globalBatch, worldSize: worldSize, rank: rank)
        } catch {
            throw UsageError("\(error)")
        }
        train = try loadCIFAR10(directory: config.dataDirectory, split: .train)
        test = try loadCIFAR10(directory: config.dataDirectory, split: .test)
        guard shard.stepsPerEpoch(samples: train.count) >= 1 else {
            throw UsageError("global batch \(config.globalBatch) is larger than the \(train.count) training images")
        }
        // Statistics of the training set only, so the test set never leaks into training.
        normalization = Normalization.measure(train)
        dataFingerprint = fingerprint(of: train, directory: config.dataDirectory)
        self.config = config
        self.spec = spec
        log = try RunLog(directory: config.runDirectory, enabled: rank == 0, progress: config.progress, quiet: config.quiet)
        if rank == 0 {
            let store = try CheckpointStore(runDirectory: config.runDirectory, keep: config.keep)
            self.store = store
            resume = try findResumePoint(config: config, spec: spec, store: store, fingerprint: dataFingerprint, log: log)
            log.events = try TensorBoardDirectory.open((config.runDirectory as NSString).appendingPathComponent("tb"),
                                                       resuming: resume.map { .checkpoint($0.tensorBoard) } ?? .fresh, warn: log.warn)
            try log.saveConfig(config)
        } else {
            store = nil
            resume = nil
        }
    }
}

/// Rank 0's choice of checkpoint, following `--resume`.
private func findResumePoint(config: TrainingConfig, spec: ModelSpec, store: CheckpointStore,
                             fingerprint: String, log: RunLog) throws -> Checkpoint? {
    // A throwaway single-sample network gives the tensor table to validate against.
    let probe = Network(spec: spec, maxBatch: 1, threads: 1)
    var chosen: Checkpoint?
    switch config.resume {
    case .none:
        return nil
    case .path(let path):
        chosen = try Checkpoint.load(path, for: probe, optimizer: config.optimizer.kind)
    case .auto:
        for path in store.resumeCandidates() {
            do {
                chosen = try Checkpoint.load(path, for: probe, optimizer: config.optimizer.kind)
                break
            } catch let error as CheckpointError where error.kind == .damaged {
                // Moved aside, so that rotation never keeps it in place of a good one.
                let aside = path + ".bad"
                try? FileManager.default.moveItem(atPath: path, toPath: aside)
                log.warn("\(error); moved it to \(aside) and trying an older checkpoint")
            }
        }
    }
    guard let checkpoint = chosen else { return nil }
    let conflicts = config.conflicts(with: checkpoint.config)
    if !conflicts.isEmpty {
        throw UsageError("""
            cannot resume from \(checkpoint.path): \(conflicts.joined(separator: "; ")). \
            Use another --run-dir, or --resume none to start over.
            """)
    }
    if let saved = checkpoint.metadata["data_fingerprint"], saved != fingerprint {
        throw UsageError("cannot resume from \(checkpoint.path): the training data differ (checkpoint: \(saved); now: \(fingerprint))")
    }
    return checkpoint
}

/// File names and sizes plus a hash of every training record: other data cannot pass for it.
func fingerprint(of images: LabeledImages, directory: String) -> String {
    let files = CIFAR10.trainFiles.map { name -> String in
        let path = (directory as NSString).appendingPathComponent(name)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        return "\(name):\(size ?? -1)"
    }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    images.labels.withUnsafeBytes { for b in $0 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
    images.pixels.withUnsafeBytes { raw in
        for i in 0..<(raw.count / 8) { h = (h ^ raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) &* 0x100_0000_01b3 }
    }
    return files.joined(separator: ",") + String(format: ",records:%d,hash:%016llx", images.count, h)
}
