import ConvKernels
import ConvKernelsAVX512
import Foundation

/// The forward pass of layers on patch rows with at most 8 output channels and stride 1
/// (LeNet-5's first layer) on planar tiles (ConvKernels/PlanarTiles.swift): each image turned
/// into zero-padded planes, one per input channel, in the worker's scratch, and its outputs
/// computed from them in place. The same bits as the patch-row product.

private let planarTilesEnabled = ProcessInfo.processInfo.environment["DDPTRAIN_PLANAR_TILES"] != "0"

extension ConvShape {
    /// Whether the forward pass runs on planar tiles. `DDPTRAIN_PLANAR_TILES=0` keeps it on
    /// patch rows, for comparison.
    public var usesPlanarTiles: Bool { planarTilesEnabled && usesPatchRows && stride == 1 && outChannels <= 8 }

    /// Columns of one padded plane: the padded width, and room for a whole tile past the last
    /// output column.
    var planeRowStride: Int { (outWidth + 31) / 32 * 32 + kernelWidth - 1 }
    var planeSize: Int { (height + 2 * padding) * planeRowStride }

    /// Floats of planar scratch one worker needs: the planes, and a tile turned round.
    var planarScratchPerWorker: Int { inChannels * planeSize + ConvKernels.planarTileChannels * 32 }
}

extension ConvWorkspace {
    /// Y = conv(X, W) + bias, one task per image.
    func convolveByPlanarTiles(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>) {
        let k = s.patchSize, kernels = self.kernels
        ConvKernels.packPlanarWeights(k: k, outChannels: s.outChannels, weights: w, into: packedWeights)
        let weights = UnsafePointer(packedWeights), scratch = patchScratch, perWorker = s.patchScratchPerWorker
        let imageSize = s.height * s.width * s.inChannels, outputs = s.outHeight * s.outWidth * s.outChannels
        pool.run(tasks: s.batch) { n, worker in
            let planes = scratch + worker * perWorker, tile = planes + s.inChannels * s.planeSize
            writePlanes(s, image: x + n * imageSize, into: planes)
            switch kernels {
            case .avx2:
                ConvKernels.convolvePlanes(planes, planeSize: s.planeSize, rowStride: s.planeRowStride, inChannels: s.inChannels,
                                           kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, outHeight: s.outHeight,
                                           outWidth: s.outWidth, outChannels: s.outChannels, packedWeights: weights, bias: bias,
                                           output: y + n * outputs, tile: tile)
            case .avx512:
                ConvKernelsAVX512.convolvePlanes(planes, planeSize: s.planeSize, rowStride: s.planeRowStride, inChannels: s.inChannels,
                                                 kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, outHeight: s.outHeight,
                                                 outWidth: s.outWidth, outChannels: s.outChannels, packedWeights: weights, bias: bias,
                                                 output: y + n * outputs, tile: tile)
            }
        }
    }
}

/// One NHWC image as zero-padded planes, one per channel, `s.planeRowStride` floats per row.
private func writePlanes(_ s: ConvShape, image x: UnsafePointer<Float>, into planes: UnsafeMutablePointer<Float>) {
    let cin = s.inChannels, p = s.padding, stride = s.planeRowStride
    planes.update(repeating: 0, count: cin * s.planeSize)
    for iy in 0..<s.height {
        var source = x + iy * s.width * cin
        let row = planes + (iy + p) * stride + p
        for ix in 0..<s.width {
            for ci in 0..<cin { row[ci * s.planeSize + ix] = source[ci] }
            source += cin
        }
    }
}
