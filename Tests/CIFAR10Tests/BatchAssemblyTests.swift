import CIFAR10
import Testing

/// Assembles `indices` into fresh arrays.
private func assemble(_ assembler: BatchAssembler, _ indices: [Int32], augment: Bool, epoch: Int = 0) -> ([Float], [Int32]) {
    var images = [Float](repeating: .nan, count: indices.count * 3072)
    var labels = [Int32](repeating: -1, count: indices.count)
    indices.withUnsafeBufferPointer { idx in
        images.withUnsafeMutableBufferPointer { out in
            labels.withUnsafeMutableBufferPointer { lab in
                assembler.assemble(indices: idx, augment: augment, seed: 11, epoch: epoch,
                                   into: out.baseAddress!, labels: lab.baseAddress!)
            }
        }
    }
    return (images, labels)
}

private func image(_ batch: [Float], _ n: Int) -> ArraySlice<Float> {
    batch[n * 3072..<(n + 1) * 3072]
}

@Suite struct BatchAssemblyTests {
    static let data = randomImages(count: 2000, seed: 4)
    static let assembler = BatchAssembler(images: data, normalization: Normalization.measure(data))
    var data: LabeledImages { Self.data }
    var assembler: BatchAssembler { Self.assembler }

    @Test func plainBatchIsNormalisedNHWC() {
        let norm = Normalization.measure(data)
        let indices: [Int32] = [5, 2, 1999, 5]
        let (out, labels) = assemble(assembler, indices, augment: false)
        #expect(labels == indices.map { Int32(data.labels[Int($0)]) })
        var worst: Float = 0
        for (n, sample) in indices.enumerated() {
            for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
                let byte = data.pixels[Int(sample) * 3072 + c * 1024 + y * 32 + x]
                let expected = (Float(byte) / 255 - norm.mean[c]) / norm.std[c]
                worst = max(worst, abs(out[((n * 32 + y) * 32 + x) * 3 + c] - expected))
            } } }
        }
        #expect(worst <= 1e-6)
    }

    @Test func augmentationFollowsTheSampleNotItsPosition() {
        let a = assemble(assembler, [0, 1, 2, 3, 4, 5, 6, 7], augment: true, epoch: 2).0
        let order: [Int32] = [7, 3, 0, 6, 1, 5, 2, 4]
        let b = assemble(assembler, order, augment: true, epoch: 2).0
        for (n, sample) in order.enumerated() {
            #expect(image(b, n) == image(a, Int(sample)))
        }
        // A single-sample batch (as on another rank) agrees too.
        #expect(assemble(assembler, [6], augment: true, epoch: 2).0[...] == image(a, 6))
    }

    @Test func augmentationChangesAcrossEpochs() {
        let indices = (0..<16).map { Int32($0) }
        let e0 = assemble(assembler, indices, augment: true, epoch: 0).0
        let e1 = assemble(assembler, indices, augment: true, epoch: 1).0
        let differing = (0..<16).filter { image(e0, $0) != image(e1, $0) }.count
        #expect(differing >= 8)
    }

    /// Pads the normalised image with 4 zeros on every side, crops 32x32 at (4 + dy, 4 + dx),
    /// then mirrors: built independently of `Augmentation.source`.
    private func reference(_ plain: ArraySlice<Float>, _ a: Augmentation) -> [Float] {
        var padded = [Float](repeating: 0, count: 40 * 40 * 3)
        let base = plain.startIndex
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
            padded[((y + 4) * 40 + x + 4) * 3 + c] = plain[base + (y * 32 + x) * 3 + c]
        } } }
        var crop = [Float](repeating: 0, count: 3072)
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
            crop[(y * 32 + x) * 3 + c] = padded[((y + 4 + a.dy) * 40 + x + 4 + a.dx) * 3 + c]
        } } }
        guard a.flip else { return crop }
        var mirrored = crop
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
            mirrored[(y * 32 + x) * 3 + c] = crop[(y * 32 + 31 - x) * 3 + c]
        } } }
        return mirrored
    }

    @Test func augmentedImagesAreShiftedMirroredCopies() {
        let indices = (0..<64).map { Int32($0) }
        let plain = assemble(assembler, indices, augment: false).0
        let augmented = assemble(assembler, indices, augment: true, epoch: 5).0
        for n in 0..<64 {
            let a = Augmentation.draw(seed: 11, epoch: 5, sample: n)
            #expect(Array(image(augmented, n)) == reference(image(plain, n), a), "sample \(n), \(a)")
        }
    }

    @Test func specificCropAndFlipCases() throws {
        // Find samples whose draw is a pure mirror and a pure shift, and check them by hand.
        let draws = (0..<data.count).map { Augmentation.draw(seed: 11, epoch: 0, sample: $0) }
        let mirror = try #require(draws.firstIndex(of: Augmentation(dy: 0, dx: 0, flip: true)))
        let shift = try #require(draws.firstIndex(of: Augmentation(dy: 2, dx: -3, flip: false)))
        let plain = assemble(assembler, [Int32(mirror), Int32(shift)], augment: false).0
        let aug = assemble(assembler, [Int32(mirror), Int32(shift)], augment: true).0
        func at(_ b: [Float], _ n: Int, _ y: Int, _ x: Int, _ c: Int) -> Float { b[((n * 32 + y) * 32 + x) * 3 + c] }
        var mirrored = true, shifted = true, paddingValues: Set<Float> = []
        for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
            mirrored = mirrored && at(aug, 0, y, x, c) == at(plain, 0, y, 31 - x, c)
            // Output (y, x) shows original (y + 2, x - 3): the bottom two rows and left three columns are padding.
            if y + 2 < 32 && x - 3 >= 0 {
                shifted = shifted && at(aug, 1, y, x, c) == at(plain, 1, y + 2, x - 3, c)
            } else {
                paddingValues.insert(at(aug, 1, y, x, c))
            }
        } } }
        #expect(mirrored)
        #expect(shifted)
        #expect(paddingValues == [0])
    }

    @Test func drawsCoverEveryOffsetAndFlipHalfTheTime() {
        let draws = (0..<4000).map { Augmentation.draw(seed: 3, epoch: 1, sample: $0) }
        #expect(Set(draws.map(\.dy)) == Set(-4...4))
        #expect(Set(draws.map(\.dx)) == Set(-4...4))
        let flips = draws.filter(\.flip).count
        #expect(flips > 1800 && flips < 2200)
    }
}
