/// The forward pass of a stride-1 convolution with few input and output channels (LeNet-5's
/// first layer, 3 → 6), compiled into both kernel modules like ConvTiles.swift. The image is
/// read as zero-padded planes, one per input channel, and a tile is 6 output channels ×
/// `sliverWidth` consecutive pixels of one output row: the 6x16 (6x32) tile turned round, so
/// that its rows are the few output channels and each tap's pixels are one unaligned load from
/// a plane. Nothing is copied per pixel (patch rows cost LeNet-5 as much as their products),
/// and every column of the tile is a pixel.
///
/// Each output sums its taps in the patch rows' [ky][kx][ci] order and adds the bias last, as
/// the patch-row product does, so the results are the same bits.

/// Output channels per planar tile.
public let planarTileChannels = 6

/// Packs weights [ky][kx][ci][co] (K × `outChannels`) as groups of 6 output channels, each K
/// rows of 6 floats, zero-padded: the broadcast operands of `convolvePlanes`.
public func packPlanarWeights(k: Int, outChannels: Int, weights w: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
    let groups = (outChannels + planarTileChannels - 1) / planarTileChannels
    for group in 0..<groups {
        for p in 0..<k {
            for r in 0..<planarTileChannels {
                let co = group * planarTileChannels + r
                dst[(group * k + p) * planarTileChannels + r] = co < outChannels ? w[p * outChannels + co] : 0
            }
        }
    }
}

/// One image's outputs, y[oy][ox][co] (NHWC, `outChannels` per pixel) = Σ taps + bias, from
/// `planes`: input channel ci's plane at planes + ci·planeSize, row iy at + iy·rowStride, the
/// image already padded (output pixel (oy, ox) reads rows oy… and columns ox…) and readable
/// `sliverWidth` − 1 columns past the last output column. `tile` is scratch of 6 × sliverWidth floats.
public func convolvePlanes(_ planes: UnsafePointer<Float>, planeSize: Int, rowStride: Int, inChannels: Int,
                           kernelHeight: Int, kernelWidth: Int, outHeight: Int, outWidth: Int, outChannels: Int,
                           packedWeights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                           output y: UnsafeMutablePointer<Float>, tile: UnsafeMutablePointer<Float>) {
    let k = kernelHeight * kernelWidth * inChannels
    // Each tap's offset from the tile's first pixel, in the taps' order: one flat loop over
    // them keeps the 12 accumulators in registers (nested ky/kx/ci loops spilled them).
    withUnsafeTemporaryAllocation(of: Int.self, capacity: k) { offsets in
        var p = 0
        for ky in 0..<kernelHeight {
            for kx in 0..<kernelWidth {
                for ci in 0..<inChannels {
                    offsets[p] = ci * planeSize + ky * rowStride + kx
                    p += 1
                }
            }
        }
        for oy in 0..<outHeight {
            for ox0 in stride(from: 0, to: outWidth, by: sliverWidth) {
                let pixels = min(sliverWidth, outWidth - ox0), first = planes + oy * rowStride + ox0
                for group in stride(from: 0, to: outChannels, by: planarTileChannels) {
                    var acc = Accumulators()
                    var wp = w + group * k
                    for p in 0..<k {
                        acc.add(wp[0], wp[1], wp[2], wp[3], wp[4], wp[5], first + offsets[p])
                        wp += planarTileChannels
                    }
                    acc.write(to: tile, ldc: sliverWidth, rows: planarTileChannels, columns: sliverWidth)
                    // Turned back to channels-last: pixel j's channels are contiguous in y.
                    let channels = min(planarTileChannels, outChannels - group)
                    var out = y + (oy * outWidth + ox0) * outChannels + group
                    for j in 0..<pixels {
                        if let bias {
                            for r in 0..<channels { out[r] = tile[r * sliverWidth + j] + bias[group + r] }
                        } else {
                            for r in 0..<channels { out[r] = tile[r * sliverWidth + j] }
                        }
                        out += outChannels
                    }
                }
            }
        }
    }
}
