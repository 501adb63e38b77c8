/// A square table of counts, such as a confusion matrix, as a picture: each cell shaded by its
/// share of its row (white for none, dark blue for all of it) with its count written in it, the
/// labels along both axes and a colour scale beside it.
///
///     let picture = HeatMap(counts: [[40, 10], [5, 45]], labels: ["cat", "dog"],
///                           rowTitle: "true class", columnTitle: "predicted class").draw()
///     try picture.writePNG(to: "confusion.png")
public struct HeatMap: Sendable {
    public var counts: [[Int]]
    public var labels: [String]
    public var rowTitle: String
    public var columnTitle: String
    public var title: String?

    public init(counts: [[Int]], labels: [String], rowTitle: String, columnTitle: String, title: String? = nil) {
        precondition(!counts.isEmpty && counts.allSatisfy { $0.count == counts.count } && labels.count == counts.count,
                     "a square table with a label per row")
        self.counts = counts
        self.labels = labels
        self.rowTitle = rowTitle
        self.columnTitle = columnTitle
        self.title = title
    }

    /// Colour for a share of 0 ... 1: ColorBrewer's 9-class "Blues", light to dark, interpolated.
    public static func shade(_ share: Double) -> Color {
        let stops: [UInt32] = [0xF7FBFF, 0xDEEBF7, 0xC6DBEF, 0x9ECAE1, 0x6BAED6, 0x4292C6, 0x2171B5, 0x08519C, 0x08306B]
        let at = max(0, min(1, share)) * Double(stops.count - 1)
        let below = min(Int(at), stops.count - 2)
        return Color(stops[below]).mixed(with: Color(stops[below + 1]), amount: at - Double(below))
    }

    /// Where each part goes, in pixels; `cell(row, column)` is a cell's top-left corner.
    public struct Layout: Sendable {
        public let width: Int, height: Int
        public let gridLeft: Int, gridTop: Int, cell: Int
        /// The longest label's length in pixels.
        public let labelLength: Int
        public func cell(_ row: Int, _ column: Int) -> (x: Int, y: Int) { (gridLeft + column * cell, gridTop + row * cell) }
    }

    static let margin = 12, labelGap = 6, barWidth = 14, longestLabel = 16

    /// Labels longer than 16 characters are cut to 15 and `~`.
    var shownLabels: [String] { labels.map { $0.count > Self.longestLabel ? $0.prefix(Self.longestLabel - 1) + "~" : $0 } }

    public var layout: Layout {
        let font = BitmapFont.fixed6x13
        let labelLength = shownLabels.map { font.advance(of: $0) }.max()!
        let digits = String(counts.flatMap { $0 }.max() ?? 0).count
        let cell = max(36, font.advance(of: String(repeating: "0", count: digits)) + 12)
        let grid = counts.count * cell
        let left = Self.margin + font.height + 2 * Self.labelGap + labelLength
        let top = Self.margin + (title == nil ? 0 : font.height + 2 * Self.labelGap)
        // Right of the grid: gap, colour bar, tick labels ("100%"), its caption; below: the labels, the title.
        let right = 3 * Self.labelGap + Self.barWidth + font.advance(of: "100%") + 2 * Self.labelGap + font.height + Self.margin
        let bottom = Self.labelGap + labelLength + 2 * Self.labelGap + font.height + Self.margin
        let width = max(left + grid + right, Self.margin + font.advance(of: title ?? "") + 1 + Self.margin)
        return Layout(width: width, height: top + grid + bottom, gridLeft: left, gridTop: top, cell: cell, labelLength: labelLength)
    }

    public func draw() -> RGBImage {
        let at = layout, n = counts.count, grid = n * at.cell, ink = Color(0x222222)
        var canvas = Canvas(width: at.width, height: at.height)
        let lineMiddle = canvas.font.height / 2
        if let title { canvas.text(title, x: Self.margin, y: Self.margin + lineMiddle, ink, bold: true) }
        for (i, row) in counts.enumerated() {
            let total = max(row.reduce(0, +), 1)
            for (j, count) in row.enumerated() {
                let colour = Self.shade(Double(count) / Double(total)), corner = at.cell(i, j)
                canvas.fill(x: corner.x, y: corner.y, width: at.cell - 1, height: at.cell - 1, colour)
                canvas.text("\(count)", x: corner.x + at.cell / 2, y: corner.y + at.cell / 2, anchor: .middle,
                            count == 0 ? Color(0xA0A0A0) : colour.luma < 140 ? .white : ink)
            }
        }
        for (i, label) in shownLabels.enumerated() {
            let middle = at.gridLeft + i * at.cell + at.cell / 2
            canvas.text(label, x: at.gridLeft - Self.labelGap, y: at.gridTop + i * at.cell + at.cell / 2, anchor: .end, ink)
            canvas.text(label, x: middle, y: at.gridTop + grid + Self.labelGap, anchor: .end, ink, upward: true)
        }
        canvas.text(rowTitle, x: Self.margin + lineMiddle, y: at.gridTop + grid / 2, anchor: .middle, ink, upward: true, bold: true)
        canvas.text(columnTitle, x: at.gridLeft + grid / 2, y: at.gridTop + grid + 3 * Self.labelGap + at.labelLength + lineMiddle,
                    anchor: .middle, ink, bold: true)

        // The colour scale: full share at the top, none at the bottom, ticks every quarter.
        let barLeft = at.gridLeft + grid + 3 * Self.labelGap
        for y in 0..<grid {
            canvas.fill(x: barLeft, y: at.gridTop + y, width: Self.barWidth, height: 1, Self.shade(1 - (Double(y) + 0.5) / Double(grid)))
        }
        canvas.frame(x: barLeft - 1, y: at.gridTop - 1, width: Self.barWidth + 2, height: grid + 2, Color(0x808080))
        for quarter in 0...4 {
            let y = at.gridTop + grid - (grid - 1) * quarter / 4
            canvas.fill(x: barLeft + Self.barWidth + 1, y: y, width: 3, height: 1, Color(0x808080))
            canvas.text("\(25 * quarter)%", x: barLeft + Self.barWidth + Self.labelGap, y: y, ink)
        }
        canvas.text("share of the row", x: at.width - Self.margin - lineMiddle, y: at.gridTop + grid / 2, anchor: .middle, ink, upward: true)
        return canvas.image
    }
}
