import ConvCore
import Testing

/// Each way of splitting a Winograd layer's work into tasks must give the bits of the other: the
/// same products in the same order, only kept in cache differently, so the choice between them
/// can follow speed alone. The weight gradient by blocks of channels against by sample groups;
/// the convolution (forward and input gradient) by positions against by tiles.
@Suite struct WinogradSplitTests {
    /// F(2x2) on 2x2 images (VGG-11's last layers) and on 5x5 (partial tiles), F(4x4) on 8x8 and
    /// 6x6 with padding 0; channel counts past one block (48 input × 32 output channels) with
    /// partial blocks, and 16 (an AVX2 edge tile). Batch 7 in groups of 2 leaves a short group.
    static let shapes: [ConvShape] = [
        ConvShape(batch: 7, height: 2, width: 2, inChannels: 112, outChannels: 80, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: 7, height: 5, width: 5, inChannels: 16, outChannels: 48, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: 7, height: 8, width: 8, inChannels: 64, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: 7, height: 10, width: 10, inChannels: 48, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 0),
        ConvShape(batch: 3, height: 32, width: 32, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 1),
    ]

    /// dW then dBias (when `withBias`) of `s` under `split`, on `threads` threads.
    func gradient(_ s: ConvShape, split: WinogradGradientSplit, threads: Int, withBias: Bool) -> [Float] {
        let ws = ConvWorkspace(threads: threads)
        ws.pool.sampleGroups = SampleGroups(size: 2)
        ws.winogradGradientSplit = split
        ws.reserve(for: s)
        let x = randomArray(s.inputCount, seed: 11), dy = randomArray(s.outputCount, seed: 12)
        var out = [Float](repeating: .nan, count: s.weightCount + (withBias ? s.outChannels : 0))
        out.withUnsafeMutableBufferPointer { g in
            conv2DBackwardWeights(s, input: x, outputGradient: dy, weightGradient: g.baseAddress!,
                                  biasGradient: withBias ? g.baseAddress! + s.weightCount : nil, workspace: ws)
        }
        return out
    }

    @Test("by blocks of channels, the Winograd weight and bias gradients have the bits of the split by sample groups",
          arguments: shapes, [false, true])
    func blocksEqualGroups(_ s: ConvShape, withBias: Bool) throws {
        try #require(s.winograd != nil)
        let groups = gradient(s, split: .groups, threads: 1, withBias: withBias)
        let blocks = gradient(s, split: .blocks, threads: 2, withBias: withBias)
        #expect(!groups.contains { $0.isNaN })
        #expect(differences(blocks, groups) == 0, "\(s)")
    }

    /// y (with the bias when `withBias`) and dx of `s` under `split`, on `threads` threads.
    func convolutions(_ s: ConvShape, split: WinogradConvolutionSplit, threads: Int, withBias: Bool) -> [Float] {
        let ws = ConvWorkspace(threads: threads)
        ws.winogradConvolutionSplit = split
        ws.reserve(for: s)
        let x = randomArray(s.inputCount, seed: 13), w = randomArray(s.weightCount, seed: 14)
        let bias = randomArray(s.outChannels, seed: 15), dy = randomArray(s.outputCount, seed: 16)
        var y = [Float](repeating: .nan, count: s.outputCount), dx = [Float](repeating: .nan, count: s.inputCount)
        y.withUnsafeMutableBufferPointer { out in
            conv2DForward(s, input: x, weights: w, bias: withBias ? bias : nil, output: out.baseAddress!, workspace: ws)
        }
        dx.withUnsafeMutableBufferPointer { conv2DBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        return y + dx
    }

    @Test("by positions, the Winograd forward pass and input gradient have the bits of the split by tiles",
          arguments: shapes, [false, true])
    func positionsEqualTiles(_ s: ConvShape, withBias: Bool) throws {
        try #require(s.winograd != nil)
        let tiles = convolutions(s, split: .tiles, threads: 1, withBias: withBias)
        let positions = convolutions(s, split: .positions, threads: 2, withBias: withBias)
        #expect(!tiles.contains { $0.isNaN })
        #expect(differences(positions, tiles) == 0, "\(s)")
    }

    @Test("timed phase by phase for bench --kernels, the forward pass keeps the bits of the split by tiles",
          arguments: shapes)
    func timedPhasesEqualTiles(_ s: ConvShape) throws {
        try #require(s.winograd != nil)
        let ws = ConvWorkspace(threads: 2)
        ws.winogradConvolutionSplit = .tiles
        ws.reserve(for: s)
        let x = randomArray(s.inputCount, seed: 13), w = randomArray(s.weightCount, seed: 14)
        var timed = [Float](repeating: .nan, count: s.outputCount), plain = timed
        let shares = timed.withUnsafeMutableBufferPointer { ws.winogradForwardPhases(s, input: x, weights: w, output: $0.baseAddress!) }
        plain.withUnsafeMutableBufferPointer { conv2DForward(s, input: x, weights: w, bias: nil, output: $0.baseAddress!, workspace: ws) }
        let p = try #require(shares, "\(s)")
        #expect(differences(timed, plain) == 0, "\(s)")
        #expect(!plain.contains { $0.isNaN })
        #expect(p.inputTransform > 0 && p.products > 0 && p.outputTransform > 0, "\(p)")
        #expect(abs(p.inputTransform + p.products + p.outputTransform - 1) < 1e-9, "\(p)")
        // Where the forward pass does not run tile by tile, there is nothing to time.
        ws.winogradConvolutionSplit = .positions
        #expect(ws.winogradForwardPhases(s, input: x, weights: w, output: &timed) == nil)
        let direct = ConvShape(batch: 2, height: 8, width: 8, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3,
                               stride: 2, padding: 1)
        ws.reserve(for: direct)
        #expect(ws.winogradForwardPhases(direct, input: x, weights: w, output: &timed) == nil)
    }

    @Test("a tree formed group by group in a few slots adds what combineInTree adds, in its order")
    func treeInSlots() {
        for count in 1...13 {
            // Each slot holds the set of groups summed into it; the log is the order of additions.
            var combined: [[Int]] = [], slots = [[Int]](repeating: [], count: SampleGroups.treeSlots(count))
            SampleGroups.combineInTree(count) { into, from in combined.append([into, from]) }
            var formed: [[Int]] = []
            SampleGroups.sumInTree(count, form: { group, slot in slots[slot] = [group] }, add: { into, from in
                formed.append([slots[into].min()!, slots[from].min()!])
                slots[into] += slots[from]
            })
            #expect(formed == combined, "\(count) groups")
            #expect(slots[0].sorted() == Array(0..<count), "\(count) groups")
        }
    }
}
