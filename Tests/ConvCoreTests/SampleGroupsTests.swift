import ConvCore
import Testing

/// The fixed order of sums over samples: a batch's sums must be, bit for bit, the tree sum of
/// the sums of its halves (2 ranks) and of its quarters (4 ranks), for every kernel path.
@Suite struct SampleGroupsTests {
    @Test("the tree: pairs, then pairs of pairs; a power-of-two world size dividing the groups is a subtree")
    func treeShape() {
        var order: [[Int]] = []
        SampleGroups.combineInTree(8) { order.append([$0, $1]) }
        #expect(order == [[0, 1], [2, 3], [0, 2], [4, 5], [6, 7], [4, 6], [0, 4]])
        order = []
        SampleGroups.combineInTree(3) { order.append([$0, $1]) }
        #expect(order == [[0, 1], [0, 2]])
        let groups = SampleGroups(size: 2)
        for ranks in [1, 2, 4, 8] { #expect(groups.treeIsIndependent(ofWorldSize: ranks, globalBatch: 16)) }
        for ranks in [3, 6, 16] { #expect(!groups.treeIsIndependent(ofWorldSize: ranks, globalBatch: 16)) }
        #expect(SampleGroups.standard(globalBatch: 64).size == 8)
        #expect(SampleGroups.standard(globalBatch: 12).size == 3)
        #expect(SampleGroups.standard(globalBatch: 7).size == 7)
        #expect(groups.samples(3, batch: 7) == 6..<7)
    }

    static let batch = 8, groupSize = 2

    /// Direct (first layer, strided, 1x1 projection) and both Winograd variants.
    static let convShapes: [ConvShape] = [
        ConvShape(batch: batch, height: 8, width: 8, inChannels: 3, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: batch, height: 9, width: 9, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: batch, height: 8, width: 8, inChannels: 16, outChannels: 32, kernelHeight: 1, kernelWidth: 1, stride: 2),
        ConvShape(batch: batch, height: 10, width: 10, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: batch, height: 6, width: 6, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, padding: 1),
    ]

    func workspace() -> ConvWorkspace {
        let ws = ConvWorkspace(threads: 2)
        ws.pool.sampleGroups = SampleGroups(size: Self.groupSize)
        return ws
    }

    /// `sums(first, count)` over the whole batch must equal its parts' sums added as the tree
    /// over ranks adds them, for 2 and 4 parts: compared by bit pattern, so that -0 and +0 or
    /// NaNs would not pass for equal.
    func expectTreeOfParts<T: BinaryFloatingPoint>(_ sums: (_ first: Int, _ count: Int) -> [T], _ label: String) {
        func bits(_ v: [T]) -> [String] { v.map { "\($0.sign)\($0.exponentBitPattern) \($0.significandBitPattern)" } }
        let whole = sums(0, Self.batch)
        for parts in [2, 4] {
            var partial = (0..<parts).map { sums($0 * Self.batch / parts, Self.batch / parts) }
            SampleGroups.combineInTree(parts) { into, from in
                for j in partial[into].indices { partial[into][j] += partial[from][j] }
            }
            #expect(bits(partial[0]) == bits(whole), "\(label): \(parts) parts differ from the whole batch")
        }
    }

    @Test("conv weight and bias gradients of a batch are the tree sum of its parts' (2 and 4 ranks)", arguments: convShapes)
    func convolution(_ s: ConvShape) {
        let ws = workspace()
        ws.reserve(for: s)
        let perImageIn = s.height * s.width * s.inChannels, perImageOut = s.outHeight * s.outWidth * s.outChannels
        let x = randomArray(s.inputCount, seed: 1), dy = randomArray(s.outputCount, seed: 2)
        expectTreeOfParts({ first, count in
            let part = ConvShape(batch: count, height: s.height, width: s.width, inChannels: s.inChannels, outChannels: s.outChannels,
                                 kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, stride: s.stride, padding: s.padding)
            var gradient = [Float](repeating: .nan, count: s.weightCount + s.outChannels)
            gradient.withUnsafeMutableBufferPointer { g in
                conv2DBackwardWeights(part, input: Array(x[(first * perImageIn)...]), outputGradient: Array(dy[(first * perImageOut)...]),
                                      weightGradient: g.baseAddress!, biasGradient: g.baseAddress! + s.weightCount, workspace: ws)
            }
            return gradient
        }, "\(s)")
    }

    @Test("dense weight and bias gradients of a batch are the tree sum of its parts'")
    func dense() {
        let ws = workspace()
        let s = DenseShape(batch: Self.batch, inputs: 100, outputs: 37)
        let x = randomArray(s.batch * s.inputs, seed: 3), dy = randomArray(s.batch * s.outputs, seed: 4)
        expectTreeOfParts({ first, count in
            var gradient = [Float](repeating: .nan, count: s.weightCount + s.outputs)
            gradient.withUnsafeMutableBufferPointer { g in
                denseBackwardWeights(DenseShape(batch: count, inputs: s.inputs, outputs: s.outputs),
                                     input: Array(x[(first * s.inputs)...]), outputGradient: Array(dy[(first * s.outputs)...]),
                                     weightGradient: g.baseAddress!, biasGradient: g.baseAddress! + s.weightCount, workspace: ws)
            }
            return gradient
        }, "dense")
    }

    @Test("batch norm's statistics and gradient sums of a batch are the tree sum of its parts'")
    func batchNorm() {
        let pool = workspace().pool
        let pixels = 25, channels = 20, perImage = pixels * channels
        let x = randomArray(Self.batch * perImage, seed: 5), dy = randomArray(Self.batch * perImage, seed: 6)
        let mean = randomArray(channels, seed: 7), invStd = randomArray(channels, seed: 8, in: 0.5...2)
        for backward in [false, true] {
            expectTreeOfParts({ first, count in
                let s = NormShape(batch: count, pixels: pixels, channels: channels)
                var sums = [Double](repeating: .nan, count: 2 * channels)
                let xs = Array(x[(first * perImage)...]), dys = Array(dy[(first * perImage)...])
                sums.withUnsafeMutableBufferPointer { out in
                    if backward {
                        batchNormBackwardStatistics(s, input: xs, outputGradient: dys, mean: mean, invStd: invStd,
                                                    sums: out.baseAddress!, pool: pool)
                    } else {
                        batchNormStatistics(s, input: xs, sums: out.baseAddress!, pool: pool)
                    }
                }
                return sums
            }, backward ? "batch norm backward sums" : "batch norm statistics")
        }
    }
}
