import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation
import Images

struct Visualize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a trained model: first-layer filters, feature maps, confusion heat map, training curves, as an HTML page.",
        discussion: """
            Writes PNG pictures: filters.png, input.png and features-convN.png (with --image or \
            --index), confusion.png (with test data), loss.png and accuracy.png (from the run's \
            metrics.jsonl), and index.html, which shows them all. Under mpirun the ranks share the \
            test set's evaluation and rank 0 draws. Examples:
              ddptrain visualize --run-dir runs/tf-tutorial --out viz --data ../shared/cifar10-sample --index 3
              ddptrain visualize --checkpoint runs/r1/model.safetensors --out viz --image cat.jpg
            """)

    @OptionGroup var source: TrainedModelOptions

    @OptionGroup var compute: InferenceThreads

    @Option(help: "Directory to write the pictures and index.html into (created if missing).")
    var out: String

    @Option(help: "CIFAR-10 binary directory, for the confusion matrix and --index (default: $CIFAR10_DIR, else data/cifar-10-batches-bin, if present).")
    var data: String?

    @Option(help: "Feature maps of this image file (PNG, JPEG or PPM; resized as by predict).")
    var image: String?

    @Option(help: "Feature maps of this test image (0-based index into test_batch.bin).")
    var index: Int?

    func validate() throws {
        if image != nil && index != nil { throw ValidationError("--image and --index both choose the image for the feature maps; give one of them") }
        if let index, index < 0 { throw ValidationError("--index must not be negative") }
    }

    /// Everything that can fail on bad input, checked on every rank before the one collective.
    struct Setup {
        let model: TrainedModel
        let dataDirectory: String?
        let test: LabeledImages?
        let normalization: Normalization
        let names: [String]
        /// The image whose feature maps are drawn, and what to call it.
        let chosen: (picture: RGBImage, caption: String)?
    }

    /// Under mpirun the test set's evaluation is shared by the ranks, as in `eval`; rank 0 draws.
    func run() throws {
        let comm = Communicator()
        defer { comm.finish() }
        let setup = try exitingOnSetupFailure { try comm.agreeOnSetup(Result { try prepare(creatingOut: comm.isRoot) }) }
        let network = setup.model.makeNetwork(maxBatch: 100, threads: compute.threads(sharing: comm))
        let evaluation = setup.test.map {
            Evaluation.run(network, on: BatchAssembler(images: $0, normalization: setup.normalization), comm: comm, batch: 100)
        }
        guard comm.isRoot else { return }
        try exitingOnError { try draw(setup, network, evaluation) }
    }

    func prepare(creatingOut: Bool) throws -> Setup {
        let model = try source.load()
        // Test data is optional unless asked for: the confusion matrix is drawn when it is found.
        let directory: String? = data != nil || index != nil ? try resolveDataDirectory(explicit: data)
                                                             : try? resolveDataDirectory(explicit: nil)
        let test = try directory.map { try loadCIFAR10(directory: $0, split: .test) }
        let (normalization, _) = try normalization(of: model, dataDirectory: directory)
        let names = classNames(of: model, dataDirectory: directory)
        var chosen: (picture: RGBImage, caption: String)?
        if let image {
            chosen = (try RGBImage(contentsOf: image).resizedToFill(width: CIFAR10.side, height: CIFAR10.side), image)
        } else if let index, let test {
            guard index < test.count else { throw UsageError("--index \(index): the test set has \(test.count) images (0...\(test.count - 1))") }
            chosen = (rgbImage(cifarPlanes: Array(test.pixels[index * CIFAR10.imageBytes..<(index + 1) * CIFAR10.imageBytes])),
                      "test image \(index) (label: \(names[Int(test.labels[index])]))")
        }
        if creatingOut {
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw UsageError("--out \(out): cannot create the directory: \(error.localizedDescription)")
            }
        }
        return Setup(model: model, dataDirectory: directory, test: test, normalization: normalization, names: names, chosen: chosen)
    }

    func draw(_ setup: Setup, _ network: Network, _ evaluation: Evaluation?) throws {
        let (model, names) = (setup.model, setup.names)
        func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
        var page = VisualizationPage(title: describe(model))
        if let filters = filterGrid(network) {
            try filters.writePNG(to: path("filters.png"))
            page.add("First-layer filters", image: "filters.png",
                     note: "each conv1 filter as an RGB patch; weights mapped from −max|w| (black) through 0 (grey) to +max|w| (white)")
        } else {
            page.note("No filters: model '\(network.spec.name)' has no convolution.")
        }

        if let chosen = setup.chosen {
            try chosen.picture.writePNG(to: path("input.png"))
            let one = LabeledImages(pixels: cifarPlanes(chosen.picture), labels: [0])
            let scores = classify(network, BatchAssembler(images: one, normalization: setup.normalization))[0]
            let answer = scores.top(3).map { String(format: "%@ %.1f%%", names[$0.class], 100 * $0.probability) }.joined(separator: ", ")
            page.add("Input", image: "input.png", note: "\(chosen.caption); the model says \(answer)", pixelated: 4)
            for maps in network.convolutionOutputs(image: 0) {
                let file = "features-\(maps.name).png"
                try featureGrid(maps).writePNG(to: path(file))
                page.add("\(maps.name): \(maps.channels) maps of \(maps.height)x\(maps.width)", image: file,
                         note: "after the layer's batch norm (if any) and activation; black is the layer's smallest value, white its largest")
            }
        }
        if let result = evaluation, let directory = setup.dataDirectory {
            let matrix = (0..<result.classes).map { Array(result.confusion[$0 * result.classes..<($0 + 1) * result.classes]) }
            let title = String(format: "%d test images, accuracy %.2f%%", result.images, 100 * result.accuracy)
            try HeatMap(counts: matrix, labels: names, rowTitle: "true class", columnTitle: "predicted class", title: title)
                .draw().writePNG(to: path("confusion.png"))
            page.add("Confusion matrix", image: "confusion.png", note: String(format: "%d test images from %@: accuracy %.2f%%, loss %.4f; each row is a true class, each cell shaded by its share of the row",
                                                                            result.images, directory, 100 * result.accuracy, result.loss))
        } else {
            page.note("No confusion matrix: no test data found (pass --data DIR).")
        }
        let metrics = (model.runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        if let epochs = try? trainingCurves(metrics), !epochs.isEmpty {
            try trainingChart(epochs, "loss", yTitle: "cross-entropy", train: \.trainLoss, test: \.testLoss).draw().writePNG(to: path("loss.png"))
            var accuracy = trainingChart(epochs, "accuracy", yTitle: "images classified correctly", train: { 100 * $0.trainAccuracy }, test: { 100 * $0.testAccuracy })
            accuracy.unit = "%"
            try accuracy.draw().writePNG(to: path("accuracy.png"))
            page.add("Training curves", image: "loss.png",
                     note: "from \(metrics), \(epochs.count) epochs; both losses are against the label-smoothed targets when the recipe smooths labels; train is the average over the epoch's steps as the model learned (with the recipe's augmentation and dropout)")
            page.add("", image: "accuracy.png", note: "")
        } else {
            page.note("No training curves: \(metrics) was not found or holds no epochs.")
        }
        try write(page.html, to: path("index.html"))
        print("wrote \(path("index.html")) and its pictures")
    }

    /// conv1's filters as RGB patches on one symmetric scale, so their strengths compare.
    func filterGrid(_ network: Network) -> RGBImage? {
        guard let conv1 = network.tensors.first(where: { $0.name == "conv1.weight" }) else { return nil }
        let (k, inputs, outputs) = (conv1.shape[0], conv1.shape[2], conv1.shape[3])
        let weights = Array(UnsafeBufferPointer(start: network.parameters + conv1.offset, count: conv1.count))
        let bound = max(weights.map(abs).max() ?? 1, 1e-12)
        let tiles = (0..<outputs).map { o in
            // [kh][kw][in][out] → one k x k patch per output channel.
            let patch = (0..<(k * k)).flatMap { p in (0..<inputs).map { c in weights[(p * inputs + c) * outputs + o] } }
            return RGBImage(mapping: inputs == 3 ? patch : stride(from: 0, to: patch.count, by: inputs).map { patch[$0] },
                            width: k, height: k, channels: inputs == 3 ? 3 : 1, range: -bound...bound)
        }
        return RGBImage.grid(tiles, columns: 8, scale: max(1, 48 / k), gap: 2)
    }

    /// A layer's channels as grey tiles on the layer's own range.
    func featureGrid(_ maps: FeatureMaps) -> RGBImage {
        let lo = maps.values.min() ?? 0, hi = maps.values.max() ?? 1
        let tiles = (0..<maps.channels).map { c in
            RGBImage(mapping: stride(from: c, to: maps.values.count, by: maps.channels).map { maps.values[$0] },
                     width: maps.width, height: maps.height, channels: 1, range: lo...hi)
        }
        return RGBImage.grid(tiles, columns: min(16, maps.channels), scale: max(1, 64 / maps.height), gap: 2)
    }

    /// One quantity of each epoch, on the training set (measured while it trained) and the test set.
    func trainingChart(_ epochs: [EpochStats], _ title: String, yTitle: String,
                       train: (EpochStats) -> Double, test: (EpochStats) -> Double) -> LineChart {
        LineChart(title: title, xTitle: "epoch", yTitle: yTitle, series: [
            .init(name: "train", color: LineChart.palette[0], points: epochs.map { (Double($0.epoch), train($0)) }),
            .init(name: "test", color: LineChart.palette[1], points: epochs.map { (Double($0.epoch), test($0)) }),
        ])
    }

    func write(_ text: String, to path: String) throws {
        try writeAtomically(Data(text.utf8), to: path)
    }
}

/// The epochs of a run's metrics.jsonl in order, each once (an epoch logged again after a resume
/// counts as its last line says).
func trainingCurves(_ path: String) throws -> [EpochStats] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let lines = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(EpochStats.self, from: Data($0.utf8)) }
    return Dictionary(lines.map { ($0.epoch, $0) }, uniquingKeysWith: { $1 }).values.sorted { $0.epoch < $1.epoch }
}

/// A 32x32 CIFAR-10 record's planes as an RGB image (the inverse of `cifarPlanes`).
func rgbImage(cifarPlanes planes: [UInt8]) -> RGBImage {
    let plane = planes.count / 3
    var pixels = [UInt8](repeating: 0, count: planes.count)
    for p in 0..<plane {
        for c in 0..<3 { pixels[3 * p + c] = planes[c * plane + p] }
    }
    return RGBImage(width: CIFAR10.side, height: CIFAR10.side, pixels: pixels)
}

/// index.html: a heading and a figure per picture.
struct VisualizationPage {
    let title: String
    private var body: [String] = []

    init(title: String) { self.title = title }

    mutating func add(_ heading: String, image: String, note: String, pixelated scale: Int? = nil) {
        let esc = escaped
        let style = scale.map { " style=\"image-rendering: pixelated; width: \(32 * $0)px\"" } ?? ""
        body.append((heading.isEmpty ? "" : "<h2>\(esc(heading))</h2>\n") + "<figure><img src=\"\(esc(image))\" alt=\"\(esc(heading))\"\(style)>"
                    + (note.isEmpty ? "" : "<figcaption>\(esc(note))</figcaption>") + "</figure>")
    }

    mutating func note(_ text: String) { body.append("<p>\(escaped(text))</p>") }

    var html: String {
        """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>\(escaped(title))</title>
        <style>body { font-family: sans-serif; margin: 2em; } figcaption { color: #555; font-size: 90%; } figure { margin: 0 0 1.5em 0; }</style>
        </head><body>
        <h1>\(escaped(title))</h1>
        \(body.joined(separator: "\n"))
        </body></html>

        """
    }
}

/// Text safe inside HTML.
func escaped(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
