import CIFAR10
import Foundation

/// A model's results on a labelled set: loss, accuracy, per-class counts and the confusion
/// matrix, and optionally every image's answer. The same pass serves the per-epoch test line
/// of training and `ddptrain eval`.
public struct Evaluation: Sendable {
    public let classes: Int
    public let images: Int
    /// Summed cross-entropy (with the network's label smoothing, if any).
    public let lossSum: Double
    /// `confusion[truth * classes + predicted]`: how many images of class `truth` were called `predicted`.
    public let confusion: [Int]
    /// Every image's answer, in the set's order, when asked for.
    public let predictions: [ImagePrediction]?

    public var loss: Double { lossSum / Double(max(images, 1)) }
    public var correct: Int { (0..<classes).reduce(0) { $0 + confusion[$1 * classes + $1] } }
    public var accuracy: Double { Double(correct) / Double(max(images, 1)) }
    /// Images whose label is `c`, and how many of them were classified correctly.
    public func images(ofClass c: Int) -> Int { confusion[c * classes..<(c + 1) * classes].reduce(0, +) }
    public func correct(ofClass c: Int) -> Int { confusion[c * classes + c] }

    /// Collective: each rank scores a contiguous slice of `assembler`'s images in batches of
    /// `batch` (at most the network's `maxBatch`), in evaluation mode; one all-reduce sums the
    /// loss, the confusion matrix and (with `recordPredictions`) the per-image answers, so every
    /// rank returns the whole set's result, identical for any number of ranks.
    ///
    ///     let result = Evaluation.run(network, on: BatchAssembler(images: test, normalization: n), comm: comm, batch: 100)
    ///     print(result.accuracy, result.correct(ofClass: 3))
    public static func run(_ network: Network, on assembler: BatchAssembler, comm: Communicator, batch: Int,
                           recordPredictions: Bool = false) -> Evaluation {
        let count = assembler.images.count, classes = network.classes
        let lo = comm.rank * count / comm.size, hi = (comm.rank + 1) * count / comm.size
        // [loss sum] + confusion matrix + per image (predicted class, its probability), as one vector.
        let perImage = recordPredictions ? 2 : 0
        var sums = [Double](repeating: 0, count: 1 + classes * classes + perImage * count)
        var sampleIDs = [Int32](repeating: 0, count: batch), labels = [Int32](repeating: 0, count: batch)
        var start = lo
        while start < hi {
            let n = min(batch, hi - start)
            for i in 0..<n { sampleIDs[i] = Int32(start + i) }
            sampleIDs.withUnsafeBufferPointer { ids in
                assembler.assemble(indices: UnsafeBufferPointer(rebasing: ids[0..<n]), augment: false, seed: 0, epoch: 0,
                                   into: network.input, labels: &labels)
            }
            network.forward(batch: n, training: nil)
            sums[0] += network.loss(labels: labels, batch: n, gradientScale: 0).lossSum
            for i in 0..<n {
                let row = UnsafeBufferPointer(start: network.logits + i * classes, count: classes)
                let predicted = ClassScores.argmax(row)
                sums[1 + Int(labels[i]) * classes + predicted] += 1
                if recordPredictions {
                    let slot = 1 + classes * classes + 2 * (start + i)
                    sums[slot] = Double(predicted)
                    sums[slot + 1] = ClassScores(logits: row.baseAddress!, classes: classes).probabilities[predicted]
                }
            }
            start += n
        }
        let totals = comm.allReduceSum(sums)
        let predictions = recordPredictions ? (0..<count).map { i in
            ImagePrediction(index: i, label: Int(assembler.images.labels[i]),
                            predicted: Int(totals[1 + classes * classes + 2 * i]),
                            probability: totals[2 + classes * classes + 2 * i])
        } : nil
        return Evaluation(classes: classes, images: count, lossSum: totals[0],
                          confusion: totals[1..<(1 + classes * classes)].map { Int($0) }, predictions: predictions)
    }
}

/// One image's answer: the class with the largest logit and the probability the model gives it.
public struct ImagePrediction: Sendable, Codable, Equatable {
    public let index: Int
    public let label: Int
    public let predicted: Int
    public let probability: Double
}
