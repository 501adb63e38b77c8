import ConvCore
import Testing

/// Products of at most 8 output channels on the 12x8 narrow tiles (NarrowTiles.swift) and the
/// planar tiles (PlanarTiles.swift): LeNet-5's first layer, and every other path that reaches them.
@Suite struct NarrowTileTests {
    /// Each shape names the narrow products it reaches; pixel counts leave partial 12-pixel tiles.
    static let shapes: [ConvShape] = [
        // LeNet-5's second layer: patch rows forward (16 wide); input gradient direct, 16 → 6.
        ConvShape(batch: 3, height: 14, width: 14, inChannels: 6, outChannels: 16, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0),
        // Patch rows forward with 1 and 8 output channels (the partial and the whole vector).
        ConvShape(batch: 2, height: 9, width: 7, inChannels: 3, outChannels: 1, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 2, height: 9, width: 7, inChannels: 2, outChannels: 8, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 2),
        // Planar tiles with two groups of output channels (6 + 1), an odd tap count and padding.
        ConvShape(batch: 3, height: 11, width: 19, inChannels: 3, outChannels: 7, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        // Direct forward 16 → 7 with padding; its input gradient is wide.
        ConvShape(batch: 2, height: 7, width: 5, inChannels: 16, outChannels: 7, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        // A strided input gradient into 5 channels, phase by phase.
        ConvShape(batch: 2, height: 9, width: 8, inChannels: 5, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        // 1x1 with stride 2, both ways narrow: the pointwise forward and the 1x1 phase's product.
        ConvShape(batch: 3, height: 7, width: 9, inChannels: 8, outChannels: 3, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0),
    ]

    let layer = ResNetConvTests()

    @Test("products of at most 8 output channels run on the narrow tiles, wider ones do not")
    func pathChoice() {
        let kernels = ConvKernelSet.best
        #expect((1...8).allSatisfy { kernels.narrow(columns: $0) })
        #expect(!kernels.narrow(columns: 9) && !kernels.narrow(columns: 16))
        // The forward pass of a narrow stride-1 layer on patch rows runs on planar tiles.
        let lenet5 = ConvShape(batch: 1, height: 32, width: 32, inChannels: 3, outChannels: 6, kernelHeight: 5, kernelWidth: 5)
        #expect(lenet5.usesPlanarTiles && NarrowTileTests.shapes[1].usesPlanarTiles && NarrowTileTests.shapes[3].usesPlanarTiles)
        #expect(!NarrowTileTests.shapes[2].usesPlanarTiles && !NarrowTileTests.shapes[0].usesPlanarTiles)
    }

    @Test("narrow tiles match the double-precision reference in all three directions, bias included", arguments: shapes)
    func matchesReference(s: ConvShape) { layer.expectMatchesReference(s) }

    @Test("narrow tiles are bitwise identical with 1 and 3 threads, with and without bias", arguments: shapes)
    func threadCountIndependence(s: ConvShape) { layer.expectThreadCountIndependent(s) }

    @Test("the AVX2 and AVX-512 kernels give bitwise-identical narrow tiles (needs an AVX-512 CPU)",
          .enabled(if: ConvKernelSet.cpuSupportsAVX512), arguments: shapes)
    func kernelSetsAgree(s: ConvShape) { layer.expectKernelSetsAgree(s) }
}
