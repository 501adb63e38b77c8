/// The forward pass and weight gradient of a stride-1 convolution with few input and output
/// channels (LeNet-5's first layer, 3 → 6), compiled into both kernel modules like
/// ConvTiles.swift. The image is read as zero-padded planes, one per input channel. A forward
/// tile is 6 output channels × `sliverWidth` consecutive pixels of one output row: the 6x16
/// (6x32) tile turned round, so that its rows are the few output channels and each tap's pixels
/// are one unaligned load from a plane. Nothing is copied per pixel (patch rows cost LeNet-5 as
/// much as their products), and every column of the tile is a pixel.
///
/// Each forward output sums its taps in the patch rows' [ky][kx][ci] order and adds the bias
/// last, as the patch-row product does, so the results are the same bits.

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
    // One flat loop over the taps keeps the 12 accumulators in registers (nested ky/kx/ci
    // loops spilled them).
    withTapOffsets(planeSize: planeSize, rowStride: rowStride, inChannels: inChannels, kernelHeight: kernelHeight,
                   kernelWidth: kernelWidth) { offsets in
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

/// Calls `body` with each tap's offset from a pixel's first plane value, in the taps' [ky][kx][ci] order.
@inline(__always)
func withTapOffsets(planeSize: Int, rowStride: Int, inChannels: Int, kernelHeight: Int, kernelWidth: Int,
                    _ body: (UnsafeMutablePointer<Int>) -> Void) {
    withUnsafeTemporaryAllocation(of: Int.self, capacity: kernelHeight * kernelWidth * inChannels) { buffer in
        let offsets = buffer.baseAddress!
        var p = 0
        for ky in 0..<kernelHeight {
            for kx in 0..<kernelWidth {
                for ci in 0..<inChannels {
                    offsets[p] = ci * planeSize + ky * rowStride + kx
                    p += 1
                }
            }
        }
        body(offsets)
    }
}

/// Adds one image's terms of a planar layer's weight gradient, dW[p][c] = Σ_pixels X[pixel
/// shifted by tap p] · dY[pixel][c], to running sums kept 8 pixels wide: `partials` holds, per
/// group of 6 output channels and pair of taps, 6 × 2 vectors (channel r, tap t at index
/// (pair · 6 + r) · 2 + t). X is read from `planes` as `convolvePlanes` reads it; dY from
/// `gradients`, channel c's plane at c · outHeight · gradientRowStride, zero past the last output
/// column. A tile is 6 channels × 2 taps: per 8 pixels, 8 loads and 12 multiply-adds, nothing
/// copied per pixel.
public func accumulatePlanarWeightGradient(planes: UnsafePointer<Float>, planeSize: Int, rowStride: Int, inChannels: Int,
                                           kernelHeight: Int, kernelWidth: Int,
                                           gradients: UnsafePointer<Float>, gradientRowStride: Int, outHeight: Int, outChannels: Int,
                                           partials: UnsafeMutablePointer<SIMD8<Float>>) {
    let k = kernelHeight * kernelWidth * inChannels
    let pairs = (k + 1) / 2, vectors = gradientRowStride / 8, plane = outHeight * gradientRowStride
    withTapOffsets(planeSize: planeSize, rowStride: rowStride, inChannels: inChannels, kernelHeight: kernelHeight,
                   kernelWidth: kernelWidth) { offsets in
        for group in stride(from: 0, to: outChannels, by: planarTileChannels) {
            // Channels past the last read the last one again; their sums are never read.
            @inline(__always) func channel(_ r: Int) -> UnsafePointer<Float> { gradients + min(group + r, outChannels - 1) * plane }
            let (d0, d1, d2, d3, d4, d5) = (channel(0), channel(1), channel(2), channel(3), channel(4), channel(5))
            for pair in 0..<pairs {
                let sums = partials + ((group / planarTileChannels) * pairs + pair) * 12
                var (a0, b0, a1, b1, a2, b2) = (sums[0], sums[1], sums[2], sums[3], sums[4], sums[5])
                var (a3, b3, a4, b4, a5, b5) = (sums[6], sums[7], sums[8], sums[9], sums[10], sums[11])
                let x0 = planes + offsets[2 * pair], x1 = planes + offsets[min(2 * pair + 1, k - 1)]
                for oy in 0..<outHeight {
                    let row = oy * rowStride, drow = oy * gradientRowStride
                    for v in 0..<vectors {
                        let q = 8 * v
                        let u = load8(x0 + row + q), w = load8(x1 + row + q)
                        var g = load8(d0 + drow + q)
                        a0 = a0.addingProduct(g, u); b0 = b0.addingProduct(g, w)
                        g = load8(d1 + drow + q)
                        a1 = a1.addingProduct(g, u); b1 = b1.addingProduct(g, w)
                        g = load8(d2 + drow + q)
                        a2 = a2.addingProduct(g, u); b2 = b2.addingProduct(g, w)
                        g = load8(d3 + drow + q)
                        a3 = a3.addingProduct(g, u); b3 = b3.addingProduct(g, w)
                        g = load8(d4 + drow + q)
                        a4 = a4.addingProduct(g, u); b4 = b4.addingProduct(g, w)
                        g = load8(d5 + drow + q)
                        a5 = a5.addingProduct(g, u); b5 = b5.addingProduct(g, w)
                    }
                }
                (sums[0], sums[1], sums[2], sums[3], sums[4], sums[5]) = (a0, b0, a1, b1, a2, b2)
                (sums[6], sums[7], sums[8], sums[9], sums[10], sums[11]) = (a3, b3, a4, b4, a5, b5)
            }
        }
    }
}
