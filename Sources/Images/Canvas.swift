/// An sRGB colour.
public struct Color: Sendable, Equatable {
    public var red: UInt8, green: UInt8, blue: UInt8

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// From a 0xRRGGBB literal: `Color(0x1f77b4)`.
    public init(_ hex: UInt32) {
        self.init(red: UInt8(hex >> 16 & 0xFF), green: UInt8(hex >> 8 & 0xFF), blue: UInt8(hex & 0xFF))
    }

    public static let white = Color(0xFFFFFF), black = Color(0x000000)

    /// Rec. 601 luma, 0 (black) to 255 (white).
    public var luma: Double { 0.299 * Double(red) + 0.587 * Double(green) + 0.114 * Double(blue) }

    /// This colour moved `amount` (0 ... 1) of the way towards `other`.
    public func mixed(with other: Color, amount: Double) -> Color {
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) + (Double(b) - Double(a)) * amount).rounded()) }
        return Color(red: mix(red, other.red), green: mix(green, other.green), blue: mix(blue, other.blue))
    }
}

/// Where a line of text sits relative to the point it is drawn at, along its reading direction.
public enum TextAnchor: Sendable { case start, middle, end }

/// A picture being drawn: filled rectangles, anti-aliased lines and bitmap text on an RGB raster.
/// Coordinates are pixels from the top-left corner; whatever falls outside is clipped.
///
///     var canvas = Canvas(width: 200, height: 100)
///     canvas.fill(x: 10, y: 10, width: 50, height: 20, Color(0x1f77b4))
///     canvas.stroke([(10, 90), (190, 40)], width: 2, Color(0xd62728))
///     canvas.text("loss", x: 100, y: 50, anchor: .middle)
///     try canvas.image.writePNG(to: "sketch.png")
public struct Canvas: Sendable {
    public let width: Int
    public let height: Int
    private var pixels: [UInt8]
    public var font = BitmapFont.fixed6x13

    public init(width: Int, height: Int, background: Color = .white) {
        precondition(width > 0 && height > 0)
        self.width = width
        self.height = height
        pixels = [UInt8](unsafeUninitializedCapacity: width * height * 3) { buffer, count in
            for p in 0..<(width * height) {
                buffer[3 * p] = background.red; buffer[3 * p + 1] = background.green; buffer[3 * p + 2] = background.blue
            }
            count = width * height * 3
        }
    }

    public var image: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    /// Mixes `color` into the pixel at (`x`, `y`) with opacity `alpha` (0 ... 1).
    private mutating func blend(x: Int, y: Int, _ color: Color, alpha: Double = 1) {
        guard x >= 0 && x < width && y >= 0 && y < height && alpha > 0 else { return }
        let p = (y * width + x) * 3
        if alpha >= 1 {
            pixels[p] = color.red; pixels[p + 1] = color.green; pixels[p + 2] = color.blue
            return
        }
        func mix(_ old: UInt8, _ new: UInt8) -> UInt8 { UInt8((Double(old) + (Double(new) - Double(old)) * alpha).rounded()) }
        pixels[p] = mix(pixels[p], color.red); pixels[p + 1] = mix(pixels[p + 1], color.green); pixels[p + 2] = mix(pixels[p + 2], color.blue)
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ color: Color) {
        for row in max(0, y)..<max(max(0, y), min(height, y + h)) {
            for column in max(0, x)..<max(max(0, x), min(width, x + w)) { blend(x: column, y: row, color) }
        }
    }

    /// A one-pixel outline just inside the rectangle.
    public mutating func frame(x: Int, y: Int, width w: Int, height h: Int, _ color: Color) {
        fill(x: x, y: y, width: w, height: 1, color)
        fill(x: x, y: y + h - 1, width: w, height: 1, color)
        fill(x: x, y: y, width: 1, height: h, color)
        fill(x: x + w - 1, y: y, width: 1, height: h, color)
    }

    /// A polyline `lineWidth` pixels wide through `points` (pixel edges are whole numbers, so a
    /// pixel's centre is at +0.5), with round joins and ends. Each pixel's coverage is its
    /// centre's distance to the nearest segment, so edges are anti-aliased and the joins, covered
    /// by two segments, are not drawn twice.
    public mutating func stroke(_ points: [(x: Double, y: Double)], width lineWidth: Double, _ color: Color) {
        guard let first = points.first else { return }
        let radius = lineWidth / 2, reach = radius + 1
        let left = max(0, Int((points.map(\.x).min()! - reach).rounded(.down)))
        let right = min(width - 1, Int((points.map(\.x).max()! + reach).rounded(.up)))
        let top = max(0, Int((points.map(\.y).min()! - reach).rounded(.down)))
        let bottom = min(height - 1, Int((points.map(\.y).max()! + reach).rounded(.up)))
        guard left <= right && top <= bottom else { return }
        let columns = right - left + 1
        var coverage = [Double](repeating: 0, count: columns * (bottom - top + 1))
        for (a, b) in zip([first] + points.dropLast(), points) {
            let (dx, dy) = (b.x - a.x, b.y - a.y)
            let length2 = dx * dx + dy * dy
            func pixels(_ u: Double, _ v: Double, within low: Int, _ high: Int) -> Range<Int> {
                let from = max(low, Int((min(u, v) - reach).rounded(.down)))
                return from..<max(from, min(high, Int((max(u, v) + reach).rounded(.up))) + 1)
            }
            for y in pixels(a.y, b.y, within: top, bottom) {
                for x in pixels(a.x, b.x, within: left, right) {
                    let (px, py) = (Double(x) + 0.5 - a.x, Double(y) + 0.5 - a.y)
                    let t = length2 > 0 ? max(0, min(1, (px * dx + py * dy) / length2)) : 0
                    let (ex, ey) = (px - t * dx, py - t * dy)
                    let covered = max(0, min(1, radius + 0.5 - (ex * ex + ey * ey).squareRoot()))
                    let i = (y - top) * columns + x - left
                    coverage[i] = max(coverage[i], covered)
                }
            }
        }
        for (i, alpha) in coverage.enumerated() where alpha > 0 {
            blend(x: left + i % columns, y: top + i / columns, color, alpha: alpha)
        }
    }

    /// A filled, anti-aliased disc.
    public mutating func disc(x: Double, y: Double, radius: Double, _ color: Color) {
        stroke([(x, y)], width: 2 * radius, color)
    }

    /// `text` in the canvas's font, each font pixel a `scale` x `scale` block, centred vertically
    /// on `y` (its cell's middle) and placed along the line by `anchor` at `x`. `upward` turns it
    /// a quarter turn anticlockwise, read from bottom to top: then `y` is the position along the
    /// line and the cell is centred on `x`. `bold` draws each glyph twice, one pixel apart.
    public mutating func text(_ text: String, x: Int, y: Int, anchor: TextAnchor = .start, scale: Int = 1,
                              _ color: Color = .black, upward: Bool = false, bold: Bool = false) {
        let length = font.advance(of: text, scale: scale) + (bold ? 1 : 0)
        let start = anchor == .start ? 0 : anchor == .middle ? -length / 2 : -length
        let across = -font.height * scale / 2
        for (i, character) in text.enumerated() {
            let rows = font.rows(of: character)
            for gy in 0..<font.height {
                for gx in 0..<font.width where font.isSet(rows, x: gx, y: gy) {
                    for extra in 0...(bold ? 1 : 0) {
                        // Along the line and across it, in canvas pixels from (x, y).
                        let along = start + (i * font.width + gx) * scale + extra, down = across + gy * scale
                        if upward {
                            fill(x: x + down, y: y - along - scale, width: scale, height: scale, color)
                        } else {
                            fill(x: x + along, y: y + down, width: scale, height: scale, color)
                        }
                    }
                }
            }
        }
    }
}
