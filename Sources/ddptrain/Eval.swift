import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained model on the test set: loss, accuracy, per-class accuracy, confusion matrix.",
        discussion: """
            The test set is test_batch.bin of --data. Runs under mpirun too: each rank scores a \
            contiguous slice and the counts are summed, as in training. Examples:
              ddptrain eval --run-dir runs/tf-tutorial --data ../shared/cifar10-sample
              cluster/ddprun -n 2 ddptrain eval --checkpoint runs/r1/model.safetensors --json
            """)

    @OptionGroup var source: TrainedModelOptions

    @OptionGroup var compute: InferenceThreads

    @Option(help: "CIFAR-10 binary directory (default: $CIFAR10_DIR, else data/cifar-10-batches-bin).")
    var data: String?

    @Option(help: "Images per forward pass on each rank.")
    var batchSize = 100

    @Flag(help: "Print the results as JSON.")
    var json = false

    @Option(help: "Also write every test image's answer to this file, as JSON Lines: index, label, predicted, probability.")
    var predictions: String?

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    /// Everything that can fail on bad input, done before any collective beyond agreeing on it.
    struct Setup {
        let model: TrainedModel
        let test: LabeledImages
        let normalization: Normalization
        let normalizationSource: String
        let dataDirectory: String
        let classNames: [String]
    }

    func run() throws {
        let comm = Communicator()
        defer { comm.finish() }
        let setup = try exitingOnSetupFailure {
            try comm.agreeOnSetup(Result { () throws -> Setup in
                let model = try source.load()
                let directory = try resolveDataDirectory(explicit: data)
                let test = try loadCIFAR10(directory: directory, split: .test)
                let (normalization, origin) = try normalization(of: model, dataDirectory: directory)
                return Setup(model: model, test: test, normalization: normalization, normalizationSource: origin,
                             dataDirectory: directory, classNames: classNames(of: model, dataDirectory: directory))
            })
        }
        let network = setup.model.makeNetwork(maxBatch: batchSize, threads: compute.threads(sharing: comm))
        let result = Evaluation.run(network, on: BatchAssembler(images: setup.test, normalization: setup.normalization),
                                    comm: comm, batch: batchSize, recordPredictions: predictions != nil)
        guard comm.isRoot else { return }
        if let predictions, let answers = result.predictions {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let lines = try answers.map { String(decoding: try encoder.encode($0), as: UTF8.self) + "\n" }.joined()
            try writeAtomically(Data(lines.utf8), to: predictions)
        }
        let report = EvalReport(setup, result, ranks: comm.size)
        print(json ? String(decoding: try JSONEncoder.report.encode(report), as: UTF8.self) : report.text(describing: setup.model))
    }
}

/// `eval`'s results, as text for people and JSON for scripts.
struct EvalReport: Encodable {
    struct ClassResult: Encodable {
        let index: Int, name: String, images: Int, correct: Int, accuracy: Double
    }
    let model: String, file: String, globalStep: Int?
    let data: String, normalization: String, ranks: Int
    let images: Int, correct: Int, loss: Double, accuracy: Double
    let classes: [ClassResult]
    /// Rows: true class; columns: predicted class.
    let confusion: [[Int]]

    init(_ setup: Eval.Setup, _ result: Evaluation, ranks: Int) {
        model = setup.model.spec.name
        file = setup.model.path
        globalStep = setup.model.globalStep
        data = setup.dataDirectory
        normalization = setup.normalizationSource
        self.ranks = ranks
        images = result.images
        correct = result.correct
        loss = result.loss
        accuracy = result.accuracy
        classes = (0..<result.classes).map { c in
            ClassResult(index: c, name: setup.classNames[c], images: result.images(ofClass: c), correct: result.correct(ofClass: c),
                        accuracy: Double(result.correct(ofClass: c)) / Double(max(result.images(ofClass: c), 1)))
        }
        confusion = (0..<result.classes).map { t in Array(result.confusion[t * result.classes..<(t + 1) * result.classes]) }
    }

    func text(describing trained: TrainedModel) -> String {
        let nameWidth = max(5, classes.map(\.name.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func left(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        var lines = [
            "\(describe(trained)), \(images) test images from \(data), \(ranks) rank\(ranks == 1 ? "" : "s")",
            String(format: "test loss %.4f  accuracy %.2f%% (%d/%d)", loss, 100 * accuracy, correct, images),
            "",
            "\(pad("class", nameWidth))  accuracy  correct/images",
        ]
        for c in classes {
            lines.append("\(pad(c.name, nameWidth))  \(left(String(format: "%.2f%%", 100 * c.accuracy), 8))  \(left("\(c.correct)/\(c.images)", 14))")
        }
        let cell = max(5, String(confusion.flatMap { $0 }.max() ?? 0).count + 2)
        let rowName = nameWidth + 3
        lines += ["", "confusion matrix (rows: true class, columns: predicted class, by number)",
                  pad("", rowName) + classes.map { left(String($0.index), cell) }.joined()]
        for (c, row) in zip(classes, confusion) {
            lines.append(pad("\(c.index) \(c.name)", rowName) + row.map { left(String($0), cell) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
