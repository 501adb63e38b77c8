extension RGBImage {
    /// Scales the image so that it covers `width`x`height` (its shorter side, relative to the
    /// target's, becomes the target's), then crops the centre: the aspect ratio is kept and
    /// nothing is stretched.
    ///
    ///     let input = try RGBImage(contentsOf: "cat-640x480.jpg").resizedToFill(width: 32, height: 32)
    ///     // scale 480 → 32 (a factor of 15), crop the middle 480x480 of the 640 columns
    ///
    /// The filter is a separable triangle (tent) filter in sRGB values, centre-aligned, whose
    /// support grows with the reduction factor: a downscale by `s` averages every source pixel
    /// within `s` of the output pixel's centre, weighted by 1 − distance/s (so no source pixel is
    /// skipped and there is no aliasing), and an enlargement is plain bilinear interpolation.
    /// This is Pillow's `Image.resize(..., BILINEAR)`. Crop and scale are one resampling, done in
    /// continuous coordinates, so the crop is exact even when the margin is a fraction of a pixel.
    /// An image already of the target size comes back unchanged, bit for bit.
    public func resizedToFill(width targetWidth: Int, height targetHeight: Int) -> RGBImage {
        precondition(targetWidth > 0 && targetHeight > 0)
        // Source pixels per output pixel, the same along both axes.
        let scale = min(Double(width) / Double(targetWidth), Double(height) / Double(targetHeight))
        let columns = ResamplingTaps(source: width, target: targetWidth, scale: scale)
        let rows = ResamplingTaps(source: height, target: targetHeight, scale: scale)
        // Horizontal pass over the source rows the vertical pass reads, then the vertical pass.
        let firstRow = rows.start.first!, lastRow = rows.start.last! + rows.weights.last!.count
        var across = [Float](repeating: 0, count: (lastRow - firstRow) * targetWidth * 3)
        for y in firstRow..<lastRow {
            let rowBase = y * width * 3, outBase = (y - firstRow) * targetWidth * 3
            for x in 0..<targetWidth {
                var r: Float = 0, g: Float = 0, b: Float = 0
                for (k, w) in columns.weights[x].enumerated() {
                    let p = rowBase + (columns.start[x] + k) * 3
                    r += w * Float(pixels[p]); g += w * Float(pixels[p + 1]); b += w * Float(pixels[p + 2])
                }
                across[outBase + 3 * x] = r; across[outBase + 3 * x + 1] = g; across[outBase + 3 * x + 2] = b
            }
        }
        var out = [UInt8](repeating: 0, count: targetWidth * targetHeight * 3)
        for y in 0..<targetHeight {
            for i in 0..<(targetWidth * 3) {
                var v: Float = 0
                for (k, w) in rows.weights[y].enumerated() {
                    v += w * across[(rows.start[y] + k - firstRow) * targetWidth * 3 + i]
                }
                out[y * targetWidth * 3 + i] = UInt8(max(0, min(255, v.rounded())))
            }
        }
        return RGBImage(width: targetWidth, height: targetHeight, pixels: out)
    }
}

/// For each output pixel along one axis: the first source pixel it reads and the normalised
/// weights of the source pixels from there on.
struct ResamplingTaps {
    var start: [Int] = []
    var weights: [[Float]] = []

    /// `scale` source pixels per output pixel; the `target * scale` source pixels used are
    /// centred in the `source` available.
    init(source: Int, target: Int, scale: Double) {
        let radius = max(scale, 1)
        let offset = (Double(source) - Double(target) * scale) / 2
        for i in 0..<target {
            let centre = offset + (Double(i) + 0.5) * scale
            let lo = max(0, Int((centre - radius).rounded(.down)))
            let hi = min(source - 1, Int((centre + radius).rounded(.up)))
            var w = (lo...hi).map { j in max(0, 1 - abs(Double(j) + 0.5 - centre) / radius) }
            // Trim zero weights at the ends (the tent's edges), so an exact fit reads one pixel.
            var first = lo
            while w.count > 1 && w.first == 0 { w.removeFirst(); first += 1 }
            while w.count > 1 && w.last == 0 { w.removeLast() }
            let sum = w.reduce(0, +)
            start.append(first)
            weights.append(w.map { Float($0 / sum) })
        }
    }
}
