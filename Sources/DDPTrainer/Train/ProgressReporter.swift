import Foundation

/// Progress between epoch lines, with the numbers of the whole global batch: the console's
/// live or plain progress line and TensorBoard's training scalars, both on rank 0.
///
/// Every rank calls `stepDone` after each step. At a *sync step* all ranks join one all-reduce
/// of four doubles: the epoch's loss sum, correct answers and images so far (rank 0 also carries
/// a resumed epoch's earlier sums), and, from rank 0 alone, the next sync step, so that every
/// rank learns it from the same message. Sync steps are the *logged* steps, every `--log-every`-th
/// global step and each epoch's last (TensorBoard scalars; a plain line), and in live mode
/// enough in between for a redraw about every 0.2 s, spaced by rank 0 from the measured step
/// time; the live line is redrawn at most every 0.2 s (and at each epoch's last step). Any other
/// step costs two comparisons (one of them an atomic load: a pending stop signal) and no
/// allocation; a sync step costs an all-reduce of 32 bytes, every step only when a step takes
/// longer than 0.2 s or with `--log-every 1`.
///
/// ```swift
/// reporter.epochStarted(atStep: progress.globalStep)
/// // each step: train, update `progress`, then
/// reporter.stepDone(progress)
/// // after the evaluation:
/// reporter.epochEnded()
/// ```
final class ProgressReporter {
    static let redrawSeconds = 0.2

    let config: TrainingConfig
    let comm: Communicator
    let log: RunLog
    let stepsPerEpoch: Int
    /// The next global step at which every rank joins the all-reduce.
    private var nextSync = 0
    /// The all-reduce's buffer, kept so that no sync step allocates.
    private var sums = [Double](repeating: 0, count: 4)

    // Rank 0's clocks, all of this session (a resumed run starts them afresh).
    private let sessionStarted = Date()
    private var epochStarted = Date(), epochStartStep = 0
    private var lastSync = (step: 0, time: Date())
    private var lastLogged = (step: 0, time: Date())
    /// Time in the training loop and steps run, over this session's finished epochs.
    private var trainingSeconds = 0.0, trainingSteps = 0
    private var loopEnded: Date?
    private var lastRedraw = Date.distantPast
    private var evaluationSeconds = 0.0

    init(config: TrainingConfig, comm: Communicator, log: RunLog, stepsPerEpoch: Int) {
        self.config = config
        self.comm = comm
        self.log = log
        self.stepsPerEpoch = stepsPerEpoch
    }

    func epochStarted(atStep step: Int) {
        let now = Date()
        // The session's first step syncs, to show the line at once; every rank decides this alike.
        if nextSync <= step { nextSync = step + 1 }
        (epochStarted, epochStartStep) = (now, step)
        lastSync = (step, now)
        lastLogged = lastSync
    }

    /// After the evaluation: its time enters the run's remaining-time estimate.
    func epochEnded() {
        guard let loopEnded else { return }
        trainingSeconds += loopEnded.timeIntervalSince(epochStarted)
        trainingSteps += lastSync.step - epochStartStep
        evaluationSeconds = Date().timeIntervalSince(loopEnded)
        self.loopEnded = nil
    }

    @inline(__always)
    func stepDone(_ progress: TrainingProgress) {
        if progress.globalStep == nextSync { sync(progress) }
        // A stop signal here means the ranks stop at this step's agreement, and the others print
        // at once: the live line ends first, so that their lines do not run on from it.
        if StopSignal.received != 0 { log.endStatus() }
    }

    private func isLogged(_ step: Int) -> Bool { step % config.logEvery == 0 || step % stepsPerEpoch == 0 }

    private func sync(_ progress: TrainingProgress) {
        let step = progress.globalStep, now = Date()
        (sums[0], sums[1], sums[2]) = (progress.lossSum, progress.correct, progress.seen)
        sums[3] = comm.isRoot ? Double(chooseNextSync(after: step, now: now)) : 0
        comm.allReduceSum(&sums)
        nextSync = Int(sums[3])
        guard comm.isRoot else { return }
        report(progress, now: now)
        lastSync = (step, now)
    }

    /// The next logged step, or sooner in live mode: as many steps as fill `redrawSeconds`.
    private func chooseNextSync(after step: Int, now: Date) -> Int {
        let logged = min((step / config.logEvery + 1) * config.logEvery, (step / stepsPerEpoch + 1) * stepsPerEpoch)
        guard case .live = log.console else { return logged }
        let secondsPerStep = now.timeIntervalSince(lastSync.time) / Double(max(step - lastSync.step, 1))
        let steps = secondsPerStep > 0 ? Int(Self.redrawSeconds / secondsPerStep) : 1
        return min(logged, step + max(1, steps))
    }

    private func report(_ progress: TrainingProgress, now: Date) {
        let step = progress.globalStep
        let seen = max(sums[2], 1)
        let (loss, accuracy) = (sums[0] / seen, sums[1] / seen)
        let imagesPerSecond = Double((step - lastLogged.step) * config.globalBatch) / max(now.timeIntervalSince(lastLogged.time), 1e-9)
        let epochEnds = step % stepsPerEpoch == 0
        if epochEnds { loopEnded = now }
        if isLogged(step) {
            log.scalars([("train/loss", Float(loss)), ("train/accuracy", Float(accuracy)),
                         ("train/learning_rate", config.learningRate(atStep: step - 1, stepsPerEpoch: stepsPerEpoch)),
                         ("train/images_per_second", Float(imagesPerSecond))], step: step)
            lastLogged = (step, now)
        }
        let epochElapsed = now.timeIntervalSince(epochStarted)
        let stepsRun = trainingSteps + step - epochStartStep
        let secondsPerStep = stepsRun > 0 ? (trainingSeconds + epochElapsed) / Double(stepsRun) : nil
        // The run ends at the last epoch's end or at --max-steps; each epoch end still ahead
        // (this step's included) costs an evaluation.
        let end = min(config.epochs * stepsPerEpoch, config.maxSteps ?? .max)
        let evaluations = max(0, end / stepsPerEpoch - (step - 1) / stepsPerEpoch)
        let line = ProgressLine(step: progress.stepInEpoch, steps: stepsPerEpoch, epoch: progress.epoch + 1, epochs: config.epochs,
                                loss: loss, accuracy: accuracy, imagesPerSecond: imagesPerSecond,
                                epochElapsed: epochElapsed,
                                epochRemaining: secondsPerStep.map { $0 * Double(stepsPerEpoch - progress.stepInEpoch) },
                                runElapsed: now.timeIntervalSince(sessionStarted),
                                runRemaining: secondsPerStep.map { $0 * Double(max(0, end - step)) + Double(evaluations) * evaluationSeconds })
        switch log.console {
        case .live where epochEnds || now.timeIntervalSince(lastRedraw) >= 0.9 * Self.redrawSeconds:
            // Logged steps may come faster than redraws should (--log-every 1).
            log.status(line.text)
            lastRedraw = now
        case .plain where step % config.logEvery == 0 && !epochEnds: log.say(line.text)
        default: break
        }
    }
}
