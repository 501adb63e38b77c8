/// Per-channel mean and standard deviation of `pixels / 255`, the statistics the network
/// inputs are normalised with. Stored in checkpoints (hence `Codable`) so evaluation and
/// prediction use the statistics the model was trained with.
public struct Normalization: Sendable, Codable, Equatable {
    /// R, G, B.
    public var mean: [Float]
    /// R, G, B; population standard deviation (divide by N, as NumPy and torchvision do).
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// Measures the statistics of a data set.
    ///
    /// The sums are exact integers, so the result does not depend on summation order, thread
    /// count or platform: every rank measures the same `Float`s bit for bit, which replicas
    /// must agree on. A channel with no variance gets std 1 so it normalises to 0 instead of
    /// NaN; an empty set gives mean 0, std 1.
    public static func measure(_ images: LabeledImages) -> Normalization {
        let plane = CIFAR10.side * CIFAR10.side
        var sums = [UInt64](repeating: 0, count: CIFAR10.channels)
        var squares = [UInt64](repeating: 0, count: CIFAR10.channels)
        images.pixels.withUnsafeBufferPointer { pixels in
            for n in 0..<images.count {
                for c in 0..<CIFAR10.channels {
                    let p = pixels.baseAddress! + n * CIFAR10.imageBytes + c * plane
                    // Per image 1024 * 255^2 < 2^32, so 32-bit lanes cannot overflow and vectorise.
                    var s: UInt32 = 0, q: UInt32 = 0
                    for i in 0..<plane {
                        let v = UInt32(p[i])
                        s &+= v
                        q &+= v &* v
                    }
                    sums[c] += UInt64(s)
                    squares[c] += UInt64(q)
                }
            }
        }
        var mean: [Float] = [], std: [Float] = []
        let n = Double(images.count * plane)
        for c in 0..<CIFAR10.channels {
            guard n > 0 else {
                mean.append(0)
                std.append(1)
                continue
            }
            let m = Double(sums[c]) / n
            let variance = max(0, Double(squares[c]) / n - m * m)
            let s = variance.squareRoot() / 255
            mean.append(Float(m / 255))
            std.append(s > 0 ? Float(s) : 1)
        }
        return Normalization(mean: mean, std: std)
    }
}
