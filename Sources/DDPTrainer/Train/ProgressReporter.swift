import Foundation

/// Progress between epoch lines, with the numbers of the whole global batch: the console's
/// live or plain progress line and TensorBoard's training scalars, both on rank 0.
///
/// Every rank calls `stepDone` after each step, with the epoch's sums so far (every rank holds
/// the global batch's totals: `StepExchange`); rank 0 alone reports, with no collective. A
/// *logged* step, every `--log-every`-th global step and each epoch's last, writes TensorBoard
/// scalars and, in plain mode, a line; in live mode the line is redrawn about every 0.2 s (and
/// at each epoch's last step). Any other step costs an integer comparison and, in live mode, a
/// clock read.
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
    let isRoot: Bool
    let log: RunLog
    let stepsPerEpoch: Int

    // Rank 0's clocks, all of this session (a resumed run starts them afresh).
    private let sessionStarted = Date()
    private var epochStarted = Date(), epochStartStep = 0
    private var lastLogged = (step: 0, time: Date())
    /// Time in the training loop and steps run, over this session's finished epochs.
    private var trainingSeconds = 0.0, trainingSteps = 0
    /// The step and time at which the epoch's training loop ended, until `epochEnded`.
    private var loopEnded: (step: Int, time: Date)?
    private var lastRedraw = Date.distantPast
    private var evaluationSeconds = 0.0

    init(config: TrainingConfig, isRoot: Bool, log: RunLog, stepsPerEpoch: Int) {
        self.config = config
        self.isRoot = isRoot
        self.log = log
        self.stepsPerEpoch = stepsPerEpoch
    }

    func epochStarted(atStep step: Int) {
        let now = Date()
        (epochStarted, epochStartStep) = (now, step)
        lastLogged = (step, now)
    }

    /// After the evaluation: its time enters the run's remaining-time estimate.
    func epochEnded() {
        guard let loopEnded else { return }
        trainingSeconds += loopEnded.time.timeIntervalSince(epochStarted)
        trainingSteps += loopEnded.step - epochStartStep
        evaluationSeconds = Date().timeIntervalSince(loopEnded.time)
        self.loopEnded = nil
    }

    @inline(__always)
    func stepDone(_ progress: TrainingProgress) {
        guard isRoot else { return }
        let step = progress.globalStep
        if case .live = log.console {
            let now = Date()
            if isLogged(step) || redrawIsDue(now) { report(progress, now: now) }
        } else if isLogged(step) {
            report(progress, now: Date())
        }
    }

    private func isLogged(_ step: Int) -> Bool { step % config.logEvery == 0 || step % stepsPerEpoch == 0 }

    private func redrawIsDue(_ now: Date) -> Bool { now.timeIntervalSince(lastRedraw) >= 0.9 * Self.redrawSeconds }

    private func report(_ progress: TrainingProgress, now: Date) {
        let step = progress.globalStep
        let seen = max(progress.seen, 1)
        let (loss, accuracy) = (progress.lossSum / seen, progress.correct / seen)
        let imagesPerSecond = Double((step - lastLogged.step) * config.globalBatch) / max(now.timeIntervalSince(lastLogged.time), 1e-9)
        let epochEnds = step % stepsPerEpoch == 0
        if epochEnds { loopEnded = (step, now) }
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
        case .live where epochEnds || redrawIsDue(now):
            // Logged steps may come faster than redraws should (--log-every 1).
            log.status(line.text)
            lastRedraw = now
        case .plain where step % config.logEvery == 0 && !epochEnds: log.say(line.text)
        default: break
        }
    }
}
