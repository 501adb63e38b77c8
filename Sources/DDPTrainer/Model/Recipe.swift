/// How a model is trained when the user names only the model: every field is a `train` flag's
/// default, and any flag given overrides it.
public struct Recipe: Sendable, Equatable, Codable, CustomStringConvertible {
    public var epochs: Int
    public var globalBatch: Int
    public var optimizer: OptimizerConfig
    public var schedule: LearningRateSchedule
    /// Cross-entropy against (1 − ε)·one-hot + ε/classes (Szegedy et al. 2016; PyTorch's `label_smoothing`).
    public var labelSmoothing: Float
    public var augment: Bool

    public init(epochs: Int, globalBatch: Int = 64, optimizer: OptimizerConfig, schedule: LearningRateSchedule = .constant,
                labelSmoothing: Float = 0, augment: Bool = false) {
        self.epochs = epochs; self.globalBatch = globalBatch; self.optimizer = optimizer
        self.schedule = schedule; self.labelSmoothing = labelSmoothing; self.augment = augment
    }

    /// The reference models' recipe (PRODUCT.md): Adam 1e-3, batch 64, 30 epochs, nothing else.
    public static let adam = Recipe(epochs: 30, optimizer: OptimizerConfig(kind: .adam, learningRate: 1e-3))

    /// The CIFAR ResNet recipe: SGD Nesterov 0.9, warmup then cosine, weight decay 5e-4 on
    /// weights only, label smoothing 0.1, pad-4 crop + flip.
    public static func sgdCosine(learningRate: Float, epochs: Int, warmupEpochs: Int = 5) -> Recipe {
        Recipe(epochs: epochs,
               optimizer: OptimizerConfig(kind: .sgd, learningRate: learningRate, momentum: 0.9, nesterov: true, weightDecay: 5e-4),
               schedule: LearningRateSchedule(warmupEpochs: warmupEpochs, decay: .cosine),
               labelSmoothing: 0.1, augment: true)
    }

    public var description: String {
        let o = optimizer
        var parts = ["\(epochs) epochs", "batch \(globalBatch)"]
        switch o.kind {
        case .adam: parts.append("adam lr \(o.learningRate)")
        case .sgd: parts.append("sgd\(o.nesterov ? " nesterov" : "") \(o.momentum) lr \(o.learningRate)")
        }
        parts.append(schedule.description)
        if o.weightDecay > 0 { parts.append("weight decay \(o.weightDecay)\(o.decayAllParameters ? "" : " (weights only)")") }
        if labelSmoothing > 0 { parts.append("label smoothing \(labelSmoothing)") }
        if augment { parts.append("crop+flip") }
        return parts.joined(separator: ", ")
    }
}
