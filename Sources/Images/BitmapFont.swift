/// A fixed-width bitmap font for labelling pictures without a font library: every glyph is a cell
/// of `width` x `height` pixels, `ascent` of them above the baseline. Characters outside
/// printable ASCII are drawn as `?`.
///
///     let font = BitmapFont.fixed6x13
///     font.advance(of: "cat", scale: 2)   // 36 pixels
public struct BitmapFont: Sendable {
    public let width: Int
    public let height: Int
    public let ascent: Int
    /// For each printable ASCII character (32 ... 126), its rows, top first; bit 7 is the left column.
    private let glyphs: [[UInt8]]

    /// X11's public-domain misc-fixed 6x13 ("fixed"): clear at 1x, and at 2x for titles.
    public static let fixed6x13 = BitmapFont(width: 6, height: 13, ascent: 11, hexRows: fixed6x13Rows)

    init(width: Int, height: Int, ascent: Int, hexRows: [String]) {
        precondition(hexRows.count == 95 && hexRows.allSatisfy { $0.count == 2 * height })
        self.width = width
        self.height = height
        self.ascent = ascent
        glyphs = hexRows.map { hex in
            let digits = Array(hex.utf8)
            return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
        }
    }

    /// The rows of `character`'s glyph.
    func rows(of character: Character) -> [UInt8] {
        guard let ascii = character.asciiValue, (32...126).contains(ascii) else { return glyphs[Int(UInt8(ascii: "?")) - 32] }
        return glyphs[Int(ascii) - 32]
    }

    /// Whether the glyph of `character` has its pixel in column `x`, row `y` set.
    func isSet(_ rows: [UInt8], x: Int, y: Int) -> Bool { rows[y] & (0x80 >> UInt8(x)) != 0 }

    /// How far `text` reaches along its line, in pixels.
    public func advance(of text: String, scale: Int = 1) -> Int { text.count * width * scale }
}
