import ConvCore

/// The random crop and flip applied to one sample in one epoch.
///
/// Keyed by `(seed, epoch, sample index)` rather than drawn from a running generator, so a
/// sample is augmented the same way whichever rank, batch position or resumed process
/// handles it. The crop is taken first, then mirrored: output pixel `(y, x)` is original
/// pixel `(y + dy, x' + dx)` with `x' = flip ? 31 - x : x`, or padding when that falls outside.
public struct Augmentation: Sendable, Equatable {
    /// Pixels of zero padding on each side before cropping back to 32x32.
    public static let padding = 4

    /// Row offset of the crop in the original image, in -4...4.
    public var dy: Int
    /// Column offset of the crop in the original image, in -4...4.
    public var dx: Int
    /// Whether the crop is mirrored left to right.
    public var flip: Bool

    public init(dy: Int, dx: Int, flip: Bool) {
        self.dy = dy
        self.dx = dx
        self.flip = flip
    }

    public static let identity = Augmentation(dy: 0, dx: 0, flip: false)

    /// Draws, in this order: crop row, crop column (each uniform over the 9 offsets), flip (p = 0.5).
    public static func draw(seed: UInt64, epoch: Int, sample: Int) -> Augmentation {
        var rng = KeyedRandom(seed: seed, stream: .augmentation, UInt64(epoch), UInt64(sample))
        let span = 2 * padding + 1
        let dy = rng.nextInt(below: span) - padding
        let dx = rng.nextInt(below: span) - padding
        let flip = rng.nextFloat() < 0.5
        return Augmentation(dy: dy, dx: dx, flip: flip)
    }
}

/// Turns sample indices into a network input batch: bytes to normalised floats, CHW planes to
/// NHWC, plus optional augmentation, in one pass over each image.
///
/// Normalisation is a 3x256 lookup table built once, so assembling a batch does no division
/// and allocates nothing; an assembler can be reused for every step of a run.
public struct BatchAssembler: Sendable {
    public let images: LabeledImages
    public let normalization: Normalization
    /// `table[c * 256 + v]` = `(v / 255 - mean[c]) / std[c]`.
    private let table: [Float]

    public init(images: LabeledImages, normalization: Normalization) {
        precondition(normalization.mean.count == CIFAR10.channels && normalization.std.count == CIFAR10.channels,
                     "normalization needs \(CIFAR10.channels) channels")
        self.images = images
        self.normalization = normalization
        var table = [Float](repeating: 0, count: CIFAR10.channels * 256)
        for c in 0..<CIFAR10.channels {
            for v in 0..<256 {
                table[c * 256 + v] = (Float(v) / 255 - normalization.mean[c]) / normalization.std[c]
            }
        }
        self.table = table
    }

    /// Writes `indices.count` images as normalised floats in NHWC order (`[n][y][x][c]`,
    /// 32*32*3 floats per image) and their labels.
    ///
    /// With `augment`, each image gets `Augmentation.draw(seed:epoch:sample:)` for its own
    /// sample index: a pad-4 random crop and a horizontal flip with p = 0.5. Padding is 0
    /// *after* normalisation, i.e. the channel mean, so it adds no bias to the first layer.
    public func assemble(indices: UnsafeBufferPointer<Int32>, augment: Bool, seed: UInt64, epoch: Int,
                         into output: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>) {
        let side = CIFAR10.side, plane = side * side, imageFloats = CIFAR10.imageBytes
        images.pixels.withUnsafeBufferPointer { pixels in
            images.labels.withUnsafeBufferPointer { sourceLabels in
                table.withUnsafeBufferPointer { table in
                    let red = table.baseAddress!, green = red + 256, blue = red + 512
                    for (n, index) in indices.enumerated() {
                        let sample = Int(index)
                        precondition(sample >= 0 && sample < images.count, "sample index \(sample) out of 0..<\(images.count)")
                        labels[n] = Int32(sourceLabels[sample])
                        let r = pixels.baseAddress! + sample * CIFAR10.imageBytes
                        let g = r + plane, b = g + plane
                        let out = output + n * imageFloats
                        let a = augment ? Augmentation.draw(seed: seed, epoch: epoch, sample: sample) : .identity
                        if a == .identity {
                            for p in 0..<plane {
                                out[3 * p] = red[Int(r[p])]
                                out[3 * p + 1] = green[Int(g[p])]
                                out[3 * p + 2] = blue[Int(b[p])]
                            }
                            continue
                        }
                        for y in 0..<side {
                            let row = out + y * side * 3
                            let sy = y + a.dy
                            guard sy >= 0 && sy < side else {
                                row.update(repeating: 0, count: side * 3)
                                continue
                            }
                            for x in 0..<side {
                                let sx = (a.flip ? side - 1 - x : x) + a.dx
                                if sx >= 0 && sx < side {
                                    let s = sy * side + sx
                                    row[3 * x] = red[Int(r[s])]
                                    row[3 * x + 1] = green[Int(g[s])]
                                    row[3 * x + 2] = blue[Int(b[s])]
                                } else {
                                    row[3 * x] = 0
                                    row[3 * x + 1] = 0
                                    row[3 * x + 2] = 0
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
