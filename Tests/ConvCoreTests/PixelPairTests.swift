import ConvCore
import Foundation
import Testing

/// Convolutions of outputs of at most 4 pixels (PixelPairs.swift): VGG-11's last layers.
@Suite struct PixelPairTests {
    /// VGG-11's 2x2 layers (narrower), a 1x1 image that only the centre tap reaches, a 2x1
    /// image, a 5x5 kernel (no Winograd), and a batch of 100, past the GEMM's unpacked rows.
    static let shapes: [ConvShape] = [
        ConvShape(batch: 3, height: 2, width: 2, inChannels: 32, outChannels: 64, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 2, height: 1, width: 1, inChannels: 64, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 5, height: 2, width: 1, inChannels: 32, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 2, height: 2, width: 2, inChannels: 32, outChannels: 32, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 2),
        ConvShape(batch: 100, height: 2, width: 2, inChannels: 32, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
    ]

    let layer = ResNetConvTests()

    @Test("outputs of at most 4 pixels with whole 32-channel slivers run on pixel pairs; larger or narrower ones do not")
    func pathChoice() {
        #expect(PixelPairTests.shapes.allSatisfy { $0.usesPixelPairs })
        let fourByFour = ConvShape(batch: 1, height: 4, width: 4, inChannels: 32, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
        let narrow = ConvShape(batch: 1, height: 2, width: 2, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
        let strided = ConvShape(batch: 1, height: 4, width: 4, inChannels: 32, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1)
        #expect(!fourByFour.usesPixelPairs && !narrow.usesPixelPairs && !strided.usesPixelPairs)
    }

    @Test("pixel pairs match the double-precision reference in all three directions, bias included", arguments: shapes)
    func matchesReference(s: ConvShape) { layer.expectMatchesReference(s) }

    @Test("pixel pairs are bitwise identical with 1 and 3 threads, with and without bias", arguments: [shapes[0], shapes[4]])
    func threadCountIndependence(s: ConvShape) { layer.expectThreadCountIndependent(s) }

    @Test("the AVX2 and AVX-512 kernels give bitwise-identical pixel-pair convolutions (needs an AVX-512 CPU)",
          .enabled(if: ConvKernelSet.cpuSupportsAVX512), arguments: shapes)
    func kernelSetsAgree(s: ConvShape) { layer.expectKernelSetsAgree(s) }
}
