import ConvKernels
import ConvKernelsAVX512
import Foundation

/// The forward pass and weight gradient of layers on patch rows with at most 8 output channels
/// and stride 1 (LeNet-5's first layer) on planar tiles (ConvKernels/PlanarTiles.swift): each
/// image turned into zero-padded planes, one per input channel, in the worker's scratch, and
/// read from them in place. The forward pass gives the same bits as the patch-row product; the
/// weight gradient sums 8 pixels apart in its lanes, so its bits are its own.

private let planarTilesEnabled = ProcessInfo.processInfo.environment["DDPTRAIN_PLANAR_TILES"] != "0"

extension ConvShape {
    /// Whether the forward pass and weight gradient run on planar tiles. `DDPTRAIN_PLANAR_TILES=0`
    /// keeps them on patch rows, for comparison.
    public var usesPlanarTiles: Bool { planarTilesEnabled && usesPatchRows && stride == 1 && outChannels <= 8 }

    /// Columns of one padded plane: the padded width, and room for a whole tile past the last
    /// output column.
    var planeRowStride: Int { (outWidth + 31) / 32 * 32 + kernelWidth - 1 }
    var planeSize: Int { (height + 2 * padding) * planeRowStride }

    /// Columns of one plane of dY in the weight gradient: whole 8-pixel vectors, zero past the
    /// last output column.
    var gradientPlaneRowStride: Int { (outWidth + 7) / 8 * 8 }
    var gradientPlanesCount: Int { outChannels * outHeight * gradientPlaneRowStride }
    /// 8-wide running sums of the weight gradient (6 channels × 2 taps per group and pair of
    /// taps), then of the bias gradient (one per channel).
    var planarPartialCount: Int {
        let tile = ConvKernels.planarTileChannels
        return 8 * (2 * tile * ((outChannels + tile - 1) / tile) * ((patchSize + 1) / 2) + outChannels)
    }

    /// Floats of planar scratch one worker needs: the planes; then a tile turned round, or dY's
    /// planes and the running sums (with room to align them to 32 bytes).
    var planarScratchPerWorker: Int {
        inChannels * planeSize + max(ConvKernels.planarTileChannels * 32, gradientPlanesCount + planarPartialCount + 8)
    }
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

extension ConvWorkspace {
    /// dW = Σ X shifted by each tap · dY and dBias = Σ dY: per sample group, image by image, the
    /// image's planes and dY's planes in the worker's scratch, summed into 8-wide running sums
    /// whose lanes are added at the group's end (then `sumOverImageGroups` adds the groups).
    func weightGradientByPlanarTiles(_ s: ConvShape, input x: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                     weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>?) {
        let k = s.patchSize, cout = s.outChannels, kernels = self.kernels
        let scratch = patchScratch, perWorker = s.patchScratchPerWorker
        let imageSize = s.height * s.width * s.inChannels, outputs = s.outHeight * s.outWidth
        let tile = ConvKernels.planarTileChannels, pairs = (k + 1) / 2, groups = (cout + tile - 1) / tile
        sumOverImageGroups(s, weightGradient: dw, biasGradient: db) { images, worker, out in
            let planes = scratch + worker * perWorker, gradients = planes + s.inChannels * s.planeSize
            let sums = UnsafeMutableRawPointer(gradients + s.gradientPlanesCount).alignedUp(toMultipleOf: 32)
                .bindMemory(to: SIMD8<Float>.self, capacity: s.planarPartialCount / 8)
            sums.initialize(repeating: SIMD8(), count: s.planarPartialCount / 8)
            // The bias gradient from dY's planes, 8 pixels apart in the lanes like the weights'.
            let biasSums = sums + s.planarPartialCount / 8 - cout
            for n in images {
                writePlanes(s, image: x + n * imageSize, into: planes)
                writeGradientPlanes(s, dy + n * outputs * cout, into: gradients)
                if db != nil {
                    for c in 0..<cout {
                        var row = UnsafeRawPointer(gradients + c * s.outHeight * s.gradientPlaneRowStride)
                        for _ in 0..<(s.outHeight * s.gradientPlaneRowStride / 8) {
                            biasSums[c] += row.loadUnaligned(as: SIMD8<Float>.self)
                            row += 32
                        }
                    }
                }
                switch kernels {
                case .avx2:
                    ConvKernels.accumulatePlanarWeightGradient(
                        planes: planes, planeSize: s.planeSize, rowStride: s.planeRowStride, inChannels: s.inChannels,
                        kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, gradients: gradients,
                        gradientRowStride: s.gradientPlaneRowStride, outHeight: s.outHeight, outChannels: cout, partials: sums)
                case .avx512:
                    ConvKernelsAVX512.accumulatePlanarWeightGradient(
                        planes: planes, planeSize: s.planeSize, rowStride: s.planeRowStride, inChannels: s.inChannels,
                        kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, gradients: gradients,
                        gradientRowStride: s.gradientPlaneRowStride, outHeight: s.outHeight, outChannels: cout, partials: sums)
                }
            }
            for group in 0..<groups {
                for pair in 0..<pairs {
                    for r in 0..<tile where group * tile + r < cout {
                        for t in 0..<2 where 2 * pair + t < k {
                            out[(2 * pair + t) * cout + group * tile + r] = sums[((group * pairs + pair) * tile + r) * 2 + t].sum()
                        }
                    }
                }
            }
            if db != nil {
                for c in 0..<cout { out[k * cout + c] = biasSums[c].sum() }
            }
        }
    }
}

/// One image's dY as planes, one per output channel, `s.gradientPlaneRowStride` floats per row.
private func writeGradientPlanes(_ s: ConvShape, _ dy: UnsafePointer<Float>, into planes: UnsafeMutablePointer<Float>) {
    let cout = s.outChannels, stride = s.gradientPlaneRowStride, plane = s.outHeight * stride, width = s.outWidth
    for oy in 0..<s.outHeight {
        for c in 0..<cout {
            let row = planes + c * plane + oy * stride
            var source = dy + oy * width * cout + c
            for ox in 0..<width {
                row[ox] = source[0]
                source += cout
            }
            for ox in width..<stride { row[ox] = 0 }
        }
    }
}

/// One NHWC image as zero-padded planes, one per channel, `s.planeRowStride` floats per row.
private func writePlanes(_ s: ConvShape, image x: UnsafePointer<Float>, into planes: UnsafeMutablePointer<Float>) {
    let cin = s.inChannels, p = s.padding, stride = s.planeRowStride, planeSize = s.planeSize, width = s.width
    for ci in 0..<cin {
        let plane = planes + ci * planeSize
        plane.update(repeating: 0, count: p * stride)
        (plane + (p + s.height) * stride).update(repeating: 0, count: planeSize - (p + s.height) * stride)
        for iy in 0..<s.height {
            let row = plane + (iy + p) * stride
            row.update(repeating: 0, count: p)
            (row + p + width).update(repeating: 0, count: stride - p - width)
        }
    }
    for iy in 0..<s.height {
        var source = x + iy * width * cin
        let row = planes + (iy + p) * stride + p
        for ix in 0..<width {
            for ci in 0..<cin { row[ci * planeSize + ix] = source[ci] }
            source += cin
        }
    }
}
