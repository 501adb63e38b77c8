import CIFAR10
import DDPTrainer
import Foundation
import Images
import Testing

/// `ddptrain eval` and `ddptrain predict` on a small trained model, run as a user would.
@Suite(.serialized) struct EvalPredictTests {
    /// tf-tutorial trained for 12 whole epochs (144 steps of 16) on the synthetic set: far
    /// better than chance (38 % of the 50 test images), so its answers differ from image to image
    /// and the comparisons below mean something.
    struct Trained: Sendable {
        let data: String
        let runDir: String
        var weights: String { runDir + "/model.safetensors" }
    }

    static let trained: Result<Trained, any Error> = Result {
        let data = try CLI.makeData()
        let runDir = CLI.temporaryDirectory()
        let r = try CLI.run([CLI.binary, "--data", data, "--run-dir", runDir, "--epochs", "12", "--batch-size", "16",
                             "--threads", "1"])
        guard r.status == 0 else { throw UsageError("training failed:\n\(r.output)") }
        return Trained(data: data, runDir: runDir)
    }

    static let testImages = 50

    /// `eval --json` output, decoded.
    func evalJSON(_ arguments: [String]) throws -> [String: Any] {
        let r = try CLI.run(arguments)
        #expect(r.status == 0, "\(arguments.joined(separator: " ")):\n\(r.output)")
        let object = try JSONSerialization.jsonObject(with: Data(r.output.utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(r.output)")
    }

    /// Every test image's answer from `eval --predictions`.
    func evalPredictions(_ model: Trained) throws -> [(label: Int, predicted: Int, probability: Double)] {
        let file = CLI.temporaryDirectory() + "/predictions.jsonl"
        let r = try CLI.run([CLI.binary, "eval", "--run-dir", model.runDir, "--data", model.data, "--predictions", file])
        #expect(r.status == 0, "\(r.output)")
        return try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map { line in
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return (try #require(o["label"] as? Int), try #require(o["predicted"] as? Int), try #require(o["probability"] as? Double))
        }
    }

    /// `predict --json` on `files`: each file's classes, most likely first, with probabilities.
    func predict(_ model: Trained, _ files: [String]) throws -> [[(class: Int, probability: Double)]] {
        let r = try CLI.run([CLI.binary, "predict", "--checkpoint", model.weights, "--json", "--top", "10"] + files)
        #expect(r.status == 0, "\(r.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], "\(r.output)")
        let predictions = try #require(object["predictions"] as? [[String: Any]])
        #expect(predictions.map { $0["image"] as? String } == files)
        return try predictions.map { p in
            try #require(p["top"] as? [[String: Any]]).map { (try #require($0["class"] as? Int), try #require($0["probability"] as? Double)) }
        }
    }

    /// The first `count` test images, decoded from test_batch.bin.
    func testImages(_ data: String, count: Int) throws -> [RGBImage] {
        let test = try loadCIFAR10(directory: data, split: .test)
        return (0..<count).map { i in
            var pixels = [UInt8](repeating: 0, count: 3072)
            for p in 0..<1024 {
                for c in 0..<3 { pixels[3 * p + c] = test.pixels[i * 3072 + c * 1024 + p] }
            }
            return RGBImage(width: 32, height: 32, pixels: pixels)
        }
    }

    @Test("predict on PNG, PPM and JPEG renderings of test images answers as eval does on the binary file")
    func predictMatchesEval() throws {
        let model = try Self.trained.get()
        let expected = try evalPredictions(model)
        #expect(expected.count == Self.testImages)
        let accuracy = Double(expected.filter { $0.label == $0.predicted }.count) / Double(expected.count)
        #expect(accuracy >= 0.3, "the model should have learnt something: chance is 0.1, it has \(accuracy)")

        let dir = CLI.temporaryDirectory()
        let images = try testImages(model.data, count: Self.testImages)
        var png: [String] = [], ppm: [String] = [], wide: [String] = []
        for (i, image) in images.enumerated() {
            png.append("\(dir)/\(i).png")
            try image.writePNG(to: png[i])
            ppm.append("\(dir)/\(i).ppm")
            _ = FileManager.default.createFile(atPath: ppm[i], contents: Data("P6\n32 32\n255\n".utf8) + Data(image.pixels))
            // The image in the middle of a 64x32 canvas: scale 1, so the centre crop is the image itself.
            var canvas = [UInt8](repeating: 90, count: 64 * 32 * 3)
            for y in 0..<32 { canvas.replaceSubrange((y * 64 + 16) * 3..<(y * 64 + 48) * 3, with: image.pixels[(y * 96)..<(y * 96 + 96)]) }
            wide.append("\(dir)/\(i)-wide.png")
            try RGBImage(width: 64, height: 32, pixels: canvas).writePNG(to: wide[i])
        }
        // JPEG from another encoder (libjpeg through Pillow), quality 95 without chroma subsampling.
        let jpeg = (0..<images.count).map { "\(dir)/\($0).jpg" }
        let script = "import sys; from PIL import Image\nfor a in sys.argv[1:]: Image.open(a).save(a[:-4] + '.jpg', quality=95, subsampling=0)"
        let py = try CLI.run(["python3", "-c", script] + png)
        try #require(py.status == 0, "Pillow (installed by scripts/install-deps.sh --tests) failed: \(py.output)")

        // Lossless renderings: the same input floats, so the same class and probability.
        for (name, files) in [("PNG", png), ("PPM", ppm), ("PNG centred on a wider canvas", wide)] {
            let answers = try predict(model, files)
            for (i, (answer, truth)) in zip(answers, expected).enumerated() {
                #expect(answer.first?.class == truth.predicted, "\(name) image \(i): predict says \(answer.first?.class ?? -1), eval \(truth.predicted)")
                #expect(abs((answer.first?.probability ?? 0) - truth.probability) < 1e-9, "\(name) image \(i)")
            }
            #expect(answers.allSatisfy { abs($0.reduce(0) { $0 + $1.probability } - 1) < 1e-9 }, "\(name): probabilities should sum to 1")
        }
        let jpegAnswers = try predict(model, jpeg)
        let agree = zip(jpegAnswers, expected).filter { $0.0.first?.class == $0.1.predicted }.count
        #expect(Double(agree) >= 0.9 * Double(expected.count), "JPEG q95: only \(agree) of \(expected.count) agree with eval")
    }

    @Test("eval under 2 ranks reports what 1 process does, and matches training's last test line")
    func evalDistributed() throws {
        let model = try Self.trained.get()
        let one = try evalJSON([CLI.binary, "eval", "--run-dir", model.runDir, "--data", model.data, "--json", "--batch-size", "7"])
        let two = try evalJSON([CLI.launcher, "-n", "2", CLI.binary, "eval", "--checkpoint", model.weights, "--data", model.data,
                                "--json", "--threads", "1"])
        #expect(one["ranks"] as? Int == 1 && two["ranks"] as? Int == 2)
        #expect(one["images"] as? Int == Self.testImages)
        #expect((one["confusion"] as? [[Int]]) == (two["confusion"] as? [[Int]]))
        #expect(one["correct"] as? Int == two["correct"] as? Int)
        let loss1 = try #require(one["loss"] as? Double), loss2 = try #require(two["loss"] as? Double)
        #expect(abs(loss1 - loss2) <= 1e-6 * loss1, "loss \(loss1) vs \(loss2)")

        // The table adds up: rows are the classes' images, the diagonal their correct answers.
        let confusion = try #require(one["confusion"] as? [[Int]])
        let classes = try #require(one["classes"] as? [[String: Any]])
        #expect(classes.map { $0["name"] as? String } == (0..<10).map { "synthetic-\($0)" })  // batches.meta.txt
        for (c, row) in confusion.enumerated() {
            #expect(row.reduce(0, +) == classes[c]["images"] as? Int)
            #expect(row[c] == classes[c]["correct"] as? Int)
        }
        #expect(confusion.flatMap { $0 }.reduce(0, +) == Self.testImages)

        // Training's per-epoch evaluation is the same code on the same weights.
        let metrics = try String(contentsOfFile: model.runDir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let lastLine = try #require(metrics.last)
        let last = try #require(try JSONSerialization.jsonObject(with: Data(lastLine.utf8)) as? [String: Any])
        #expect(last["testAccuracy"] as? Double == one["accuracy"] as? Double)
        let trainingLoss = try #require(last["testLoss"] as? Double)
        #expect(abs(trainingLoss - loss1) <= 1e-6 * loss1, "training's test loss \(trainingLoss), eval's \(loss1)")

        let text = try CLI.run([CLI.binary, "eval", "--run-dir", model.runDir, "--data", model.data])
        #expect(text.status == 0)
        #expect(text.output.contains("test loss ") && text.output.contains("confusion matrix (rows: true class"), "\(text.output)")
        #expect(text.output.contains("synthetic-3"))
    }

    @Test("a model trained from a model file evaluates after the file is gone: the checkpoint records it")
    func modelFileRecorded() throws {
        let model = try Self.trained.get()
        let dir = CLI.temporaryDirectory()
        let file = dir + "/tiny.json"
        try #"{"name": "tiny", "layers": [{"conv": 8, "kernel": 3, "padding": 1}, "relu", "globalavgpool", "flatten", {"dense": 10}]}"#
            .write(toFile: file, atomically: true, encoding: .utf8)
        let r = try CLI.run([CLI.binary, "--data", model.data, "--run-dir", dir + "/run", "--model", file, "--max-steps", "3",
                             "--batch-size", "16", "--threads", "1"])
        #expect(r.status == 0, "\(r.output)")
        try FileManager.default.removeItem(atPath: file)
        let report = try evalJSON([CLI.binary, "eval", "--run-dir", dir + "/run", "--data", model.data, "--json"])
        #expect(report["model"] as? String == "tiny")
        #expect((report["file"] as? String)?.hasSuffix("checkpoints/step-00000003.safetensors") == true)
    }

    /// One line naming the problem, a non-zero exit, no crash.
    func expectFailure(_ arguments: [String], mentions: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try CLI.run(arguments)
        #expect(r.status != 0, "should fail: \(arguments.joined(separator: " "))\n\(r.output)", sourceLocation: sourceLocation)
        let first = r.output.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.lowercased().hasPrefix("error: ") && first.contains(mentions),
                "expected one line about \(mentions), got:\n\(r.output)", sourceLocation: sourceLocation)
        #expect(!r.output.contains("Fatal error") && !r.output.contains("Stack dump"), "\(r.output)", sourceLocation: sourceLocation)
    }

    @Test("bad input: a missing or non-image file, another model's weights, a damaged file, bad flags")
    func badInput() throws {
        let model = try Self.trained.get()
        let dir = CLI.temporaryDirectory()
        let png = dir + "/ok.png"
        try RGBImage(width: 40, height: 30, pixels: [UInt8](repeating: 128, count: 40 * 30 * 3)).writePNG(to: png)
        let predict = [CLI.binary, "predict", "--checkpoint", model.weights]

        try expectFailure(predict + [png, dir + "/missing.jpg"], mentions: "\(dir)/missing.jpg: no such file")
        let text = dir + "/notes.jpg"
        try "not an image\n".write(toFile: text, atomically: true, encoding: .utf8)
        try expectFailure(predict + [text], mentions: "\(text): not a PNG, JPEG or binary PPM")
        let truncated = dir + "/cut.png"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        _ = FileManager.default.createFile(atPath: truncated, contents: bytes.prefix(bytes.count - 20))
        try expectFailure(predict + [truncated], mentions: "\(truncated): not a readable PNG image")

        // tf-tutorial's weights in a file that says it holds lenet5.
        let weights = try SafeTensors.read(model.weights)
        let lenet = ModelSpec.lenet5
        let foreign = dir + "/foreign.safetensors"
        try weights.tensors.map(\.values).withUnsafeBufferPointers { pointers in
            try SafeTensors.write(to: foreign, tensors: zip(weights.tensors, pointers).map { ($0.name, $0.shape, $1) },
                                  metadata: ["model": lenet.name, "layers": lenet.description])
        }
        try expectFailure([CLI.binary, "predict", "--checkpoint", foreign, png], mentions: "expected")
        try expectFailure([CLI.binary, "eval", "--checkpoint", foreign, "--data", model.data], mentions: "foreign.safetensors")

        // A checkpoint with one byte flipped fails its checksum.
        let checkpoint = try #require(CheckpointStore.checkpoints(inRunDirectory: model.runDir).first)
        var damaged = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        damaged[damaged.count - 5] ^= 0x40
        let damagedPath = dir + "/damaged.safetensors"
        try damaged.write(to: URL(fileURLWithPath: damagedPath))
        try expectFailure([CLI.binary, "eval", "--checkpoint", damagedPath, "--data", model.data], mentions: "checksum mismatch")
        try expectFailure([CLI.binary, "eval", "--run-dir", dir, "--data", model.data], mentions: "no model.safetensors")

        try expectFailure([CLI.binary, "predict", "--checkpoint", model.weights, "--run-dir", model.runDir, png], mentions: "give one of them")
        try expectFailure([CLI.binary, "predict", png], mentions: "--checkpoint PATH or --run-dir DIR")
        try expectFailure(predict + ["--top", "11", png], mentions: "--top must be between 1 and 10")
        try expectFailure(predict, mentions: "at least one image")
        try expectFailure([CLI.binary, "eval", "--checkpoint", model.weights, "--data", dir], mentions: dir)
    }

    @Test("visualize draws the filters, the feature maps of every conv, the confusion matrix and the curves, linked from index.html")
    func visualize() throws {
        let model = try Self.trained.get()
        let out = CLI.temporaryDirectory() + "/viz"
        let r = try CLI.run([CLI.binary, "visualize", "--run-dir", model.runDir, "--data", model.data, "--index", "3", "--out", out])
        #expect(r.status == 0, "\(r.output)")
        // tf-tutorial's conv1 has 32 3x3 filters: 8 columns of 48-pixel tiles (scale 16) with 2-pixel gaps.
        let filters = try RGBImage(contentsOf: out + "/filters.png")
        #expect(filters.width == 2 + 8 * 50 && filters.height == 2 + 4 * 50)
        #expect(try RGBImage(contentsOf: out + "/input.png") == testImages(model.data, count: 4)[3])
        // conv1..3 give 32 maps of 30x30, 64 of 13x13 and 64 of 4x4.
        for (name, channels, side) in [("conv1", 32, 30), ("conv2", 64, 13), ("conv3", 64, 4)] {
            let maps = try RGBImage(contentsOf: "\(out)/features-\(name).png")
            let tile = side * max(1, 64 / side)
            #expect(maps.width == 2 + 16 * (tile + 2) && maps.height == 2 + channels / 16 * (tile + 2), "\(name): \(maps.width)x\(maps.height)")
        }
        let html = try String(contentsOfFile: out + "/index.html", encoding: .utf8)
        let pictures = ["filters.png", "input.png", "features-conv1.png", "features-conv2.png", "features-conv3.png",
                        "confusion.png", "loss.png", "accuracy.png"]
        for file in pictures { #expect(html.contains("src=\"\(file)\""), "index.html lacks \(file)") }
        #expect(!html.contains(".svg"))

        // Every picture is a valid PNG to Pillow too (it checks the chunks' CRCs), with the pixels libpng gives.
        let script = "import sys; from PIL import Image\nfor a in sys.argv[1:]:\n im = Image.open(a); im.verify(); Image.open(a).convert('RGB').save(a + '.ppm')"
        let py = try CLI.run(["python3", "-c", script] + pictures.map { "\(out)/\($0)" })
        try #require(py.status == 0, "Pillow (installed by scripts/install-deps.sh --tests) refused a picture: \(py.output)")
        for file in pictures {
            #expect(try RGBImage(contentsOf: "\(out)/\(file).ppm") == RGBImage(contentsOf: "\(out)/\(file)"), "\(file)")
        }

        // The heat map shows eval's confusion matrix with the data's class names: in each row the
        // cell of the largest count is the darkest.
        let report = try evalJSON([CLI.binary, "eval", "--run-dir", model.runDir, "--data", model.data, "--json"])
        let counts = try #require(report["confusion"] as? [[Int]])
        let accuracy = try #require(report["accuracy"] as? Double)
        let expected = HeatMap(counts: counts, labels: (0..<10).map { "synthetic-\($0)" }, rowTitle: "true class",
                               columnTitle: "predicted class", title: String(format: "50 test images, accuracy %.2f%%", 100 * accuracy))
        let heatMap = try RGBImage(contentsOf: out + "/confusion.png"), at = expected.layout
        #expect(heatMap.width == at.width && heatMap.height == at.height)
        #expect(heatMap == expected.draw(), "confusion.png should be the heat map of eval's matrix")
        for (i, row) in counts.enumerated() where row.contains(where: { $0 > 0 }) {
            let luma = row.indices.map { j in
                (0..<3).map { Double(heatMap[x: at.cell(i, j).x + 2, y: at.cell(i, j).y + 2, c: $0]) }.reduce(0, +)
            }
            let darkest = Set(row.indices.filter { luma[$0] == luma.min() }), largest = Set(row.indices.filter { row[$0] == row.max() })
            #expect(darkest == largest, "row \(i): counts \(row), brightness \(luma)")
        }

        // The curves: train and test lines in their colours; accuracy rose and loss fell over the
        // 12 epochs, so the train line ends higher up (accuracy) or lower down (loss) than it starts.
        let epochs = try String(contentsOfFile: model.runDir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(EpochStats.self, from: Data($0.utf8)) }
        try #require(epochs.count == 12 && epochs[11].trainAccuracy > epochs[0].trainAccuracy && epochs[11].trainLoss < epochs[0].trainLoss)
        for (file, rises) in [("accuracy.png", true), ("loss.png", false)] {
            let chart = try RGBImage(contentsOf: "\(out)/\(file)")
            #expect(chart.width == 560 && chart.height == 340)
            let plot = { (colour: Color) in
                (40..<chart.height).flatMap { y in (0..<chart.width).map { (x: $0, y: y) } }.filter { p in
                    (0..<3).allSatisfy { chart[x: p.x, y: p.y, c: $0] == [colour.red, colour.green, colour.blue][$0] }
                }
            }
            let train = plot(LineChart.palette[0]), test = plot(LineChart.palette[1])
            #expect(train.count > 300 && test.count > 300, "\(file): \(train.count) train and \(test.count) test pixels")
            let left = train.filter { $0.x < train.map(\.x).min()! + 10 }, right = train.filter { $0.x > train.map(\.x).max()! - 10 }
            let mean = { (points: [(x: Int, y: Int)]) in Double(points.map(\.y).reduce(0, +)) / Double(max(points.count, 1)) }
            #expect(rises ? mean(right) < mean(left) : mean(right) > mean(left), "\(file): the train line starts at y \(mean(left)), ends at \(mean(right))")
        }

        // The same model draws the same bytes, also when 2 ranks share the evaluation (rank 0 draws).
        let again = CLI.temporaryDirectory() + "/viz"
        let second = try CLI.run([CLI.launcher, "-n", "2", CLI.binary, "visualize", "--run-dir", model.runDir, "--data", model.data,
                                  "--index", "3", "--out", again, "--threads", "1"])
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.components(separatedBy: "wrote ").count == 2, "rank 0 alone reports:\n\(second.output)")
        for file in pictures + ["index.html"] {
            #expect(FileManager.default.contents(atPath: "\(out)/\(file)") == FileManager.default.contents(atPath: "\(again)/\(file)"), "\(file) differs")
        }
        #expect(html.contains("12 epochs"), "the curves come from the run's 12 epochs")

        try expectFailure([CLI.binary, "visualize", "--run-dir", model.runDir, "--data", model.data, "--index", "50", "--out", out],
                          mentions: "--index 50: the test set has 50 images")
    }

    @Test("visualize a model without convolutions: no filter grid, a note saying why, the other pictures")
    func visualizeDenseModel() throws {
        let model = try Self.trained.get()
        let dir = CLI.temporaryDirectory()
        try #"{"name": "dense-only", "layers": ["flatten", {"dense": 16}, "relu", {"dense": 10}]}"#
            .write(toFile: dir + "/dense.json", atomically: true, encoding: .utf8)
        let train = try CLI.run([CLI.binary, "--data", model.data, "--run-dir", dir + "/run", "--model", dir + "/dense.json",
                                 "--epochs", "1", "--batch-size", "16", "--threads", "1"])
        try #require(train.status == 0, "\(train.output)")
        let r = try CLI.run([CLI.binary, "visualize", "--run-dir", dir + "/run", "--data", model.data, "--index", "0", "--out", dir + "/viz"])
        #expect(r.status == 0, "\(r.output)")
        let html = try String(contentsOfFile: dir + "/viz/index.html", encoding: .utf8)
        #expect(html.contains("No filters: model 'dense-only' has no convolution.") && !html.contains("filters.png"))
        for file in ["input.png", "confusion.png", "loss.png", "accuracy.png"] {
            #expect(html.contains("src=\"\(file)\"") && (try? RGBImage(contentsOf: "\(dir)/viz/\(file)")) != nil, "\(file)")
        }
    }

    @Test("every subcommand's --help shows an example")
    func helpExamples() throws {
        for command in ["train", "eval", "predict", "visualize", "bench", "inspect", "export", "synth", "models"] {
            let r = try CLI.run([CLI.binary, command, "--help"])
            #expect(r.status == 0)
            #expect(r.output.contains("ddptrain \(command == "train" ? "--" : command + " ")"), "\(command):\n\(r.output)")
        }
    }

    @Test("under mpirun, --help and help print the help once (rank 0), not once per rank")
    func helpOnce() throws {
        for arguments in [["eval", "--help"], ["--help"], ["help", "visualize"]] {
            let r = try CLI.run([CLI.launcher, "-n", "4", CLI.binary] + arguments, timeout: 120)
            #expect(r.status == 0, "\(arguments): \(r.output)")
            #expect(r.output.components(separatedBy: "USAGE:").count == 2, "\(arguments): the help should appear once:\n\(r.output)")
        }
    }

    @Test("under mpirun, a one-process command (predict) answers once, and reports a bad file once")
    func singleProcessOnce() throws {
        let model = try Self.trained.get()
        let png = CLI.temporaryDirectory() + "/one.png"
        try testImages(model.data, count: 1)[0].writePNG(to: png)
        let r = try CLI.run([CLI.launcher, "-n", "3", CLI.binary, "predict", "--checkpoint", model.weights, "--json", png], timeout: 120)
        #expect(r.status == 0, "\(r.output)")
        let object = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
        #expect((object?["predictions"] as? [Any])?.count == 1, "one JSON document from rank 0:\n\(r.output)")
        let missing = try CLI.run([CLI.launcher, "-n", "3", CLI.binary, "predict", "--checkpoint", model.weights, png + ".gone"], timeout: 120)
        #expect(missing.status != 0)
        #expect(missing.output.components(separatedBy: "no such file").count == 2, "the error should appear once:\n\(missing.output)")
    }
}

extension Array where Element == [Float] {
    /// Pointers to every array's storage, valid inside `body`.
    func withUnsafeBufferPointers<R>(_ body: ([UnsafePointer<Float>]) throws -> R) rethrows -> R {
        var pointers: [UnsafePointer<Float>] = []
        func nest(_ i: Int) throws -> R {
            if i == count { return try body(pointers) }
            return try self[i].withUnsafeBufferPointer { p in
                pointers.append(p.baseAddress!)
                return try nest(i + 1)
            }
        }
        return try nest(0)
    }
}
