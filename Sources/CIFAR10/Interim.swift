import ConvCore
import Foundation

public enum CIFAR10 {
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"
    public static let imageBytes = 3072, recordBytes = 3073, side = 32, channels = 3
}
public enum DataError: Error, CustomStringConvertible {
    case missing(String), badSize(String, Int), badLabel(String, Int, Int), noDirectory([String])
    public var description: String {
        switch self {
        case .missing(let p): return "\(p): file not found"
        case let .badSize(p, n): return "\(p): size \(n) bytes is not a multiple of 3073"
        case let .badLabel(p, i, l): return "\(p): record \(i) has label \(l), expected 0-9"
        case .noDirectory(let t): return "no CIFAR-10 data found; tried: \(t.joined(separator: ", "))"
        }
    }
}
public struct LabeledImages: Sendable { public let count: Int; public let pixels: [UInt8]; public let labels: [UInt8] }
public enum Split { case train, test }
public func loadCIFAR10(directory: String, split: Split) throws -> LabeledImages {
    let files = split == .train ? CIFAR10.trainFiles : [CIFAR10.testFile]
    var pixels: [UInt8] = [], labels: [UInt8] = []
    for f in files {
        let p = (directory as NSString).appendingPathComponent(f)
        guard let d = FileManager.default.contents(atPath: p) else { throw DataError.missing(p) }
        guard d.count > 0, d.count % 3073 == 0 else { throw DataError.badSize(p, d.count) }
        let bytes = [UInt8](d)
        for r in 0..<(d.count / 3073) {
            let l = bytes[r * 3073]
            guard l <= 9 else { throw DataError.badLabel(p, r, Int(l)) }
            labels.append(l)
            pixels.append(contentsOf: bytes[(r * 3073 + 1)..<((r + 1) * 3073)])
        }
    }
    return LabeledImages(count: labels.count, pixels: pixels, labels: labels)
}
public func resolveDataDirectory(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
    let c = [explicit, environment["CIFAR10_DIR"], "data/cifar-10-batches-bin"].compactMap { $0 }
    if let e = explicit { if FileManager.default.fileExists(atPath: e + "/data_batch_1.bin") { return e }; throw DataError.noDirectory([e]) }
    for d in c where FileManager.default.fileExists(atPath: d + "/data_batch_1.bin") { return d }
    throw DataError.noDirectory(c)
}
public struct Normalization: Sendable, Codable, Equatable {
    public var mean: [Float]; public var std: [Float]
    public static func measure(_ images: LabeledImages) -> Normalization {
        var mean = [Float](), std = [Float]()
        for c in 0..<3 {
            var s = 0.0, s2 = 0.0
            for n in 0..<images.count { for i in 0..<1024 { let v = Double(images.pixels[n * 3072 + c * 1024 + i]) / 255; s += v; s2 += v * v } }
            let cnt = Double(images.count * 1024); let m = s / cnt
            mean.append(Float(m)); std.append(Float((s2 / cnt - m * m).squareRoot()))
        }
        return Normalization(mean: mean, std: std)
    }
}
public func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    var p = (0..<count).map { Int32($0) }
    var rng = KeyedRandom(seed: seed, stream: .permutation, UInt64(epoch))
    for i in stride(from: count - 1, to: 0, by: -1) { p.swapAt(i, rng.nextInt(below: i + 1)) }
    return p
}
public struct ShardPlan: Sendable {
    public let globalBatch: Int, worldSize: Int, rank: Int
    public init(globalBatch: Int, worldSize: Int, rank: Int) throws {
        guard globalBatch % worldSize == 0 else { throw DataError.noDirectory(["global batch \(globalBatch) is not divisible by \(worldSize) ranks"]) }
        self.globalBatch = globalBatch; self.worldSize = worldSize; self.rank = rank
    }
    public var localBatch: Int { globalBatch / worldSize }
    public func stepsPerEpoch(samples: Int) -> Int { samples / globalBatch }
    public func localRange(step: Int) -> Range<Int> { let s = step * globalBatch + rank * localBatch; return s..<(s + localBatch) }
}
public struct BatchAssembler {
    let images: LabeledImages; let norm: Normalization
    public init(images: LabeledImages, normalization: Normalization) { self.images = images; norm = normalization }
    public func assemble(indices: UnsafeBufferPointer<Int32>, augment: Bool, seed: UInt64, epoch: Int,
                         into out: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>) {
        for (b, idx) in indices.enumerated() {
            let i = Int(idx); labels[b] = Int32(images.labels[i])
            var dy = 0, dx = 0, flip = false
            if augment { var r = KeyedRandom(seed: seed, stream: .augmentation, UInt64(epoch), UInt64(i)); dy = r.nextInt(below: 9) - 4; dx = r.nextInt(below: 9) - 4; flip = r.nextFloat() < 0.5 }
            for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
                let sy = y + dy, sx0 = x + dx; let sx = flip ? 31 - sx0 : sx0
                var v: Float = 0
                if sy >= 0 && sy < 32 && sx >= 0 && sx < 32 { v = (Float(images.pixels[i * 3072 + c * 1024 + sy * 32 + sx]) / 255 - norm.mean[c]) / norm.std[c] }
                out[((b * 32 + y) * 32 + x) * 3 + c] = v
            } } }
        }
    }
}
public func writeSyntheticCIFAR10(to directory: String, trainPerFile: Int, testCount: Int, seed: UInt64) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    func file(_ name: String, _ n: Int, _ off: Int) throws {
        var d = [UInt8]()
        for k in 0..<n {
            let label = (k + off) % 10; d.append(UInt8(label))
            var r = KeyedRandom(seed: seed, stream: .synthetic, UInt64(off + k))
            for c in 0..<3 { for y in 0..<32 { for x in 0..<32 {
                let base = 128.0 + 60 * sin(Double(label + 1) * Double(x + y * (c + 1)) / 10)
                d.append(UInt8(max(0, min(255, base + Double(r.nextGaussian()) * 30))))
            } } }
        }
        try Data(d).write(to: URL(fileURLWithPath: directory + "/" + name))
    }
    for (i, f) in CIFAR10.trainFiles.enumerated() { try file(f, trainPerFile, i * trainPerFile) }
    try file(CIFAR10.testFile, testCount, 1_000_000)
}
