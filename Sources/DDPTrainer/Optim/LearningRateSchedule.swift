import Foundation

/// The learning rate as a function of the global step: an optional linear warmup, then a decay.
/// A pure function of the step, so a resumed run continues the schedule exactly.
///
///     let s = LearningRateSchedule(warmupEpochs: 5, decay: .cosine)
///     s.factor(step: 0, stepsPerEpoch: 79, epochs: 60)      // 1/395: warmup starts low
///     s.factor(step: 395, stepsPerEpoch: 79, epochs: 60)    // 1.0: warmup done, cosine starts
public struct LearningRateSchedule: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Decay: Sendable, Equatable, Codable {
        case constant
        /// Half a cosine from the base rate (after warmup) to zero at the last step.
        case cosine
        /// Multiply by `factor` at each of these epochs (0-based epoch at which it takes effect).
        case step(epochs: [Int], factor: Float)
    }
    /// Epochs over which the rate rises linearly from base/warmupSteps to base (0: none).
    public var warmupEpochs: Int
    public var decay: Decay

    public init(warmupEpochs: Int = 0, decay: Decay = .constant) {
        self.warmupEpochs = warmupEpochs; self.decay = decay
    }

    public static let constant = LearningRateSchedule()

    /// Multiplier of the base learning rate for the update made at global `step` (0-based).
    public func factor(step: Int, stepsPerEpoch: Int, epochs: Int) -> Float {
        let warmupSteps = warmupEpochs * stepsPerEpoch
        if step < warmupSteps { return Float(step + 1) / Float(warmupSteps) }
        switch decay {
        case .constant:
            return 1
        case .cosine:
            let total = max(epochs * stepsPerEpoch - warmupSteps, 1)
            let t = Double(min(step - warmupSteps, total)) / Double(total)
            return Float(0.5 * (1 + cos(Double.pi * t)))
        case let .step(milestones, factor):
            let epoch = step / max(stepsPerEpoch, 1)
            return milestones.filter { epoch >= $0 }.reduce(Float(1)) { r, _ in r * factor }
        }
    }

    public var description: String {
        let warmup = warmupEpochs > 0 ? "warmup \(warmupEpochs) epoch\(warmupEpochs == 1 ? "" : "s"), then " : ""
        switch decay {
        case .constant: return warmup + "constant"
        case .cosine: return warmup + "cosine"
        case let .step(epochs, factor): return warmup + "×\(factor) at epochs \(epochs.map(String.init).joined(separator: ","))"
        }
    }
}
