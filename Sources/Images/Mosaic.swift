extension RGBImage {
    /// Real values as a picture, for weights and activations: `values` holds `height` rows of
    /// `width` pixels of `channels` values (1: grey, 3: RGB), mapped linearly from `range` to
    /// 0...255 (values outside are clamped).
    ///
    ///     let filter = RGBImage(mapping: weights, width: 3, height: 3, channels: 3, range: -0.5...0.5)
    public init(mapping values: [Float], width: Int, height: Int, channels: Int, range: ClosedRange<Float>) {
        precondition((channels == 1 || channels == 3) && values.count == width * height * channels)
        let span = range.upperBound > range.lowerBound ? range.upperBound - range.lowerBound : 1
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for p in 0..<(width * height) {
            for c in 0..<3 {
                let v = values[p * channels + (channels == 1 ? 0 : c)]
                pixels[3 * p + c] = UInt8(max(0, min(255, ((v - range.lowerBound) / span * 255).rounded())))
            }
        }
        self.init(width: width, height: height, pixels: pixels)
    }

    /// Equal-sized tiles in rows of `columns`, each enlarged `scale` times (nearest neighbour, so
    /// pixels stay sharp), with `gap` pixels of `background` around and between them.
    ///
    ///     let sheet = RGBImage.grid(filters, columns: 8, scale: 8, gap: 2)
    public static func grid(_ tiles: [RGBImage], columns: Int, scale: Int, gap: Int,
                            background: [UInt8] = [255, 255, 255]) -> RGBImage {
        precondition(!tiles.isEmpty && columns > 0 && scale > 0 && gap >= 0 && background.count == 3)
        let tileWidth = tiles[0].width * scale, tileHeight = tiles[0].height * scale
        precondition(tiles.allSatisfy { $0.width * scale == tileWidth && $0.height * scale == tileHeight }, "tiles differ in size")
        let rows = (tiles.count + columns - 1) / columns, across = min(columns, tiles.count)
        let width = gap + across * (tileWidth + gap), height = gap + rows * (tileHeight + gap)
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for p in 0..<(width * height) { pixels[3 * p] = background[0]; pixels[3 * p + 1] = background[1]; pixels[3 * p + 2] = background[2] }
        for (t, tile) in tiles.enumerated() {
            let left = gap + (t % columns) * (tileWidth + gap), top = gap + (t / columns) * (tileHeight + gap)
            for y in 0..<tileHeight {
                for x in 0..<tileWidth {
                    for c in 0..<3 { pixels[((top + y) * width + left + x) * 3 + c] = tile[x: x / scale, y: y / scale, c: c] }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }
}
