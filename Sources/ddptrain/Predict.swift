import ArgumentParser
import CIFAR10
import DDPTrainer
import Foundation
import Images

struct Predict: SingleProcessCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify image files (PNG, JPEG or binary PPM, any size) with a trained model.",
        discussion: """
            Each image is scaled so that its shorter side is 32 pixels and the centre 32x32 is \
            cropped (one resampling, with a tent filter whose support grows with the reduction: \
            area-weighted when shrinking, bilinear when enlarging), then normalised exactly as in \
            training. Prints the most likely classes with their probabilities. Examples:
              ddptrain predict --run-dir runs/tf-tutorial cat.jpg ship.png
              ddptrain predict --checkpoint runs/r1/model.safetensors --top 5 --json photos/*.jpg
            """)

    @OptionGroup var source: TrainedModelOptions

    @OptionGroup var compute: InferenceThreads

    @Argument(help: "PNG, JPEG or binary PPM (P6) files.")
    var images: [String] = []

    @Option(help: "How many of the most likely classes to show per image.")
    var top = 3

    @Option(help: "A CIFAR-10 directory whose batches.meta.txt names the classes (default: the names saved with the model); for models saved before their input normalisation was, the training data to measure it on.")
    var data: String?

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one image file to classify") }
        if !(1...CIFAR10.classCount).contains(top) { throw ValidationError("--top must be between 1 and \(CIFAR10.classCount) (got \(top))") }
    }

    func run() throws { try exitingOnError(predict) }

    func predict() throws {
        let model = try source.load()
        let (normalization, _) = try normalization(of: model, dataDirectory: data)
        let names = classNames(of: model, dataDirectory: data)
        // Every file is decoded before the model runs, so a bad one stops the command at once.
        let decoded = try images.map { try RGBImage(contentsOf: $0) }
        let side = model.spec.inputHeight
        var planes: [UInt8] = []
        for image in decoded { planes += cifarPlanes(image.resizedToFill(width: side, height: side)) }
        let batch = LabeledImages(pixels: planes, labels: [UInt8](repeating: 0, count: decoded.count))
        let network = model.makeNetwork(maxBatch: min(decoded.count, 64), threads: compute.alone)
        let scores = classify(network, BatchAssembler(images: batch, normalization: normalization))

        let results = zip(zip(images, decoded), scores).map { item, score in
            ImageResult(image: item.0, width: item.1.width, height: item.1.height,
                        top: score.top(top).map { ClassProbability(class: $0.class, name: names[$0.class], probability: $0.probability) })
        }
        if json {
            let report = PredictReport(model: model.spec.name, file: model.path, globalStep: model.globalStep,
                                       resize: PredictReport.resizeMethod, predictions: results)
            print(String(decoding: try JSONEncoder.report.encode(report), as: UTF8.self))
            return
        }
        print("\(describe(model)); \(PredictReport.resizeMethod)")
        for r in results {
            let answers = r.top.map { String(format: "%@ %.2f%%", $0.name, 100 * $0.probability) }.joined(separator: "  ")
            print("\(r.image)  \(r.width)x\(r.height)  \(answers)")
        }
    }
}

/// CIFAR-10's layout of an image: the red plane, then green, then blue, each row by row.
func cifarPlanes(_ image: RGBImage) -> [UInt8] {
    let plane = image.width * image.height
    var out = [UInt8](repeating: 0, count: plane * 3)
    for p in 0..<plane {
        for c in 0..<3 { out[c * plane + p] = image.pixels[3 * p + c] }
    }
    return out
}

struct ClassProbability: Encodable {
    let `class`: Int
    let name: String
    let probability: Double
}

struct ImageResult: Encodable {
    let image: String
    let width: Int, height: Int
    let top: [ClassProbability]
}

/// `predict --json`.
struct PredictReport: Encodable {
    static let resizeMethod = "images: shorter side scaled to 32 with a tent filter (area-weighted when shrinking), centre 32x32 cropped"
    let model: String, file: String, globalStep: Int?
    let resize: String
    let predictions: [ImageResult]
}
