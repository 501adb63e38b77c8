import CIFAR10
import ConvCore
import Foundation

/// A fresh directory under the system temporary directory, removed when released.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("cifar10-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: file(name)))
    }
}

/// A record whose pixel bytes are a known function of (record, channel, y, x), so a test can
/// check where every byte ended up without trusting any code under test.
func knownPixel(record: Int, channel: Int, y: Int, x: Int) -> UInt8 {
    UInt8((record * 131 + channel * 71 + y * 7 + x * 3) % 256)
}

func knownRecords(labels: [UInt8], firstRecord: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    for (i, label) in labels.enumerated() {
        bytes.append(label)
        for c in 0..<3 { for y in 0..<32 { for x in 0..<32 {
            bytes.append(knownPixel(record: firstRecord + i, channel: c, y: y, x: x))
        } } }
    }
    return bytes
}

/// A complete, valid directory: two records per training file, three in the test file.
func writeKnownDataSet(in dir: TemporaryDirectory) throws {
    for (f, name) in CIFAR10.trainFiles.enumerated() {
        try dir.write(name, knownRecords(labels: [UInt8(2 * f), UInt8(2 * f + 1)], firstRecord: 2 * f))
    }
    try dir.write(CIFAR10.testFile, knownRecords(labels: [9, 0, 4], firstRecord: 100))
}

/// `count` images of random bytes with random labels.
func randomImages(count: Int, seed: UInt64) -> LabeledImages {
    var rng = KeyedRandom(seed: seed, stream: .synthetic, 42)
    let pixels = (0..<(count * CIFAR10.imageBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let labels = (0..<count).map { _ in UInt8(rng.nextInt(below: 10)) }
    return LabeledImages(pixels: pixels, labels: labels)
}
