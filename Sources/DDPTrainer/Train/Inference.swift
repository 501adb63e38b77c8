import CIFAR10
import Foundation

/// One image's class scores from a network in evaluation mode.
public struct ClassScores: Sendable, Equatable {
    public let logits: [Float]
    /// Softmax of the logits, computed in double precision.
    public let probabilities: [Double]

    public init(logits: UnsafePointer<Float>, classes: Int) {
        self.logits = Array(UnsafeBufferPointer(start: logits, count: classes))
        let top = self.logits.max() ?? 0
        let exponentials = self.logits.map { exp(Double($0 - top)) }
        let sum = exponentials.reduce(0, +)
        probabilities = exponentials.map { $0 / sum }
    }

    /// The class with the largest logit, the first on a tie: the answer the loss counts as
    /// correct or not (`softmaxCrossEntropy`).
    public var predicted: Int { logits.withUnsafeBufferPointer(ClassScores.argmax) }

    static func argmax(_ row: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for j in 1..<row.count where row[j] > row[best] { best = j }
        return best
    }

    /// The `k` most likely classes, most likely first (the first of equal logits first).
    ///
    ///     scores.top(3)   // [(class: 3, probability: 0.71), (class: 5, probability: 0.15), (class: 4, probability: 0.04)]
    public func top(_ k: Int) -> [(class: Int, probability: Double)] {
        logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            .prefix(k).map { ($0, probabilities[$0]) }
    }
}

/// Scores every image of `assembler` (in batches of the network's `maxBatch`, evaluation mode,
/// no augmentation): what `predict` prints.
///
///     let assembler = BatchAssembler(images: resized, normalization: model.normalization!)
///     let best = classify(network, assembler).map(\.predicted)
public func classify(_ network: Network, _ assembler: BatchAssembler) -> [ClassScores] {
    var scores: [ClassScores] = []
    var labels = [Int32](repeating: 0, count: network.maxBatch)
    var start = 0
    while start < assembler.images.count {
        let n = min(network.maxBatch, assembler.images.count - start)
        let indices = (start..<start + n).map { Int32($0) }
        indices.withUnsafeBufferPointer { ids in
            assembler.assemble(indices: ids, augment: false, seed: 0, epoch: 0, into: network.input, labels: &labels)
        }
        network.forward(batch: n, training: nil)
        for i in 0..<n { scores.append(ClassScores(logits: network.logits + i * network.classes, classes: network.classes)) }
        start += n
    }
    return scores
}
