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
    /// `batch` (at most the network's `maxBatch`), in evaluation mode; one all-reduce gathers
    /// the confusion matrix, every image's loss and (with `recordPredictions`) its answer, so
    /// every rank returns the whole set's result, identical for any number of ranks (the losses
    /// are added in image order after the all-reduce, which only adds zeros to them).
    ///
    ///     let result = Evaluation.run(network, on: BatchAssembler(images: test, normalization: n), comm: comm, batch: 100)
    ///     print(result.accuracy, result.correct(ofClass: 3))
    public static func run(_ network: Network, on assembler: BatchAssembler, comm: Communicator, batch: Int,
                           recordPredictions: Bool = false) -> Evaluation {
        let count = assembler.images.count, classes = network.classes
        let lo = comm.rank * count / comm.size, hi = (comm.rank + 1) * count / comm.size
        // Confusion matrix + per image its loss, then (predicted class, its probability), as one vector.
        let losses = classes * classes, answers = losses + count
        var sums = [Double](repeating: 0, count: answers + (recordPredictions ? 2 * count : 0))
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
            _ = network.loss(labels: labels, batch: n, gradientScale: 0)
            for i in 0..<n {
                let row = UnsafeBufferPointer(start: network.logits + i * classes, count: classes)
                let predicted = ClassScores.argmax(row)
                sums[Int(labels[i]) * classes + predicted] += 1
                sums[losses + start + i] = network.sampleLosses[i]
                if recordPredictions {
                    let slot = answers + 2 * (start + i)
                    sums[slot] = Double(predicted)
                    sums[slot + 1] = ClassScores(logits: row.baseAddress!, classes: classes).probabilities[predicted]
                }
            }
            start += n
        }
        let totals = comm.allReduceSum(sums)
        let predictions = recordPredictions ? (0..<count).map { i in
            ImagePrediction(index: i, label: Int(assembler.images.labels[i]),
                            predicted: Int(totals[answers + 2 * i]),
                            probability: totals[answers + 2 * i + 1])
        } : nil
        return Evaluation(classes: classes, images: count, lossSum: totals[losses..<answers].reduce(0, +),
                          confusion: totals[..<losses].map { Int($0) }, predictions: predictions)
    }
}

/// One image's answer: the class with the largest logit and the probability the model gives it.
public struct ImagePrediction: Sendable, Codable, Equatable {
    public let index: Int
    public let label: Int
    public let predicted: Int
    public let probability: Double
}
