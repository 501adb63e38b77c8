import DDPTrainer
import Foundation
import Testing

@Suite struct RecipeTests {
    @Test("warmup rises linearly to the base rate; cosine then falls to zero at the last step")
    func warmupCosine() {
        let s = LearningRateSchedule(warmupEpochs: 5, decay: .cosine)
        let perEpoch = 10, epochs = 60
        #expect(s.factor(step: 0, stepsPerEpoch: perEpoch, epochs: epochs) == Float(1) / 50)
        #expect(s.factor(step: 24, stepsPerEpoch: perEpoch, epochs: epochs) == Float(25) / 50)
        #expect(s.factor(step: 49, stepsPerEpoch: perEpoch, epochs: epochs) == 1)
        #expect(s.factor(step: 50, stepsPerEpoch: perEpoch, epochs: epochs) == 1)
        #expect(abs(s.factor(step: 50 + 275, stepsPerEpoch: perEpoch, epochs: epochs) - 0.5) < 1e-6)  // half way
        let last = s.factor(step: 599, stepsPerEpoch: perEpoch, epochs: epochs)
        #expect(last > 0 && last < 1e-4)
    }

    @Test("step decay multiplies at each given epoch; constant stays")
    func stepDecay() {
        let s = LearningRateSchedule(decay: .step(epochs: [3, 5], factor: 0.1))
        #expect(s.factor(step: 29, stepsPerEpoch: 10, epochs: 8) == 1)
        #expect(abs(s.factor(step: 30, stepsPerEpoch: 10, epochs: 8) - 0.1) < 1e-7)
        #expect(abs(s.factor(step: 79, stepsPerEpoch: 10, epochs: 8) - 0.01) < 1e-8)
        #expect(LearningRateSchedule.constant.factor(step: 1000, stepsPerEpoch: 10, epochs: 8) == 1)
    }

    @Test("the reference models keep their recipe; the zoo's BN networks use the ResNet recipe")
    func recipes() {
        #expect(ModelSpec.tfTutorial.recipe == .adam && ModelSpec.kerasCNN.recipe == .adam)
        let r = ModelSpec.resnet20.recipe
        #expect(r.epochs == 60 && r.globalBatch == 64 && r.optimizer.kind == .sgd && r.optimizer.nesterov)
        #expect(r.optimizer.learningRate == 0.1 && r.optimizer.weightDecay == 5e-4 && !r.optimizer.decayAllParameters)
        #expect(r.schedule == LearningRateSchedule(warmupEpochs: 5, decay: .cosine) && r.labelSmoothing == 0.1 && r.augment)
        #expect(ModelSpec.resnet20.recipe.description.contains("cosine"))
    }

    @Test("the configuration takes the recipe; the learning rate follows the schedule")
    func configuration() {
        var c = TrainingConfig(dataDirectory: "d", runDirectory: "r")
        c.apply(ModelSpec.resnet20.recipe)
        #expect(c.epochs == 60 && c.labelSmoothing == 0.1 && c.augment)
        #expect(abs(c.learningRate(atStep: 0, stepsPerEpoch: 79) - 0.1 / 395) < 1e-9)
        #expect(c.learningRate(atStep: 395, stepsPerEpoch: 79) == 0.1)
        var other = c
        other.schedule = .constant
        other.batchNorm = .local
        #expect(c.conflicts(with: other).count == 2)
    }

    @Test("a checkpoint written before recipes existed still resumes with the same flags")
    func olderCheckpointConfiguration() throws {
        let today = TrainingConfig(dataDirectory: "d", runDirectory: "r")  // tf-tutorial's defaults: Adam, no decay
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(today)) as? [String: Any])
        for key in ["schedule", "labelSmoothing", "batchNorm"] { object.removeValue(forKey: key) }
        var optimizer = try #require(object["optimizer"] as? [String: Any])
        optimizer.removeValue(forKey: "decayAllParameters")
        object["optimizer"] = optimizer
        let saved = try JSONDecoder().decode(TrainingConfig.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(saved.optimizer.decayAllParameters)  // what those checkpoints did
        #expect(today.conflicts(with: saved).isEmpty, "\(today.conflicts(with: saved))")
        var decaying = today
        decaying.optimizer.weightDecay = 1e-4
        var savedDecaying = saved
        savedDecaying.optimizer.weightDecay = 1e-4
        #expect(decaying.conflicts(with: savedDecaying).count == 1)  // now it changes the trajectory
    }
}
