import Foundation

/// Lines of (x, y) points, such as loss against epoch, as a picture: a framed plot with tick
/// labels on round numbers, light grid lines, axis titles and a legend above the plot.
///
///     let chart = LineChart(title: "loss", xTitle: "epoch", yTitle: "cross-entropy", series: [
///         .init(name: "train", color: LineChart.palette[0], points: [(1, 2.1), (2, 1.7), (3, 1.5)]),
///         .init(name: "test", color: LineChart.palette[1], points: [(1, 1.9), (2, 1.8), (3, 1.8)])])
///     try chart.draw().writePNG(to: "loss.png")
public struct LineChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var color: Color
        /// Points in drawing order; a non-finite y breaks the line.
        public var points: [(x: Double, y: Double)]

        public init(name: String, color: Color, points: [(x: Double, y: Double)]) {
            self.name = name
            self.color = color
            self.points = points
        }
    }

    /// Blue and orange first (Tableau's order): told apart by most colour-blind readers.
    public static let palette = [Color(0x1F77B4), Color(0xFF7F0E), Color(0x2CA02C), Color(0xD62728)]

    public var title: String, xTitle: String, yTitle: String
    public var series: [Series]
    /// Written after each y tick label, such as "%".
    public var unit = ""
    /// x ticks only on whole numbers (epochs).
    public var wholeX = true
    public var width = 560, height = 340

    public init(title: String, xTitle: String, yTitle: String, series: [Series]) {
        self.title = title
        self.xTitle = xTitle
        self.yTitle = yTitle
        self.series = series
    }

    static let margin = 12, gap = 6, inset = 8.0

    /// The plot's frame in pixels and the data ranges it shows, with `inset` pixels inside the
    /// frame so no point sits on it.
    public struct Layout: Sendable {
        public let left: Int, top: Int, right: Int, bottom: Int
        public let x: Ticks, y: Ticks

        /// Where the data point (`x`, `y`) lands.
        public func position(_ x: Double, _ y: Double) -> (x: Double, y: Double) {
            (Double(left) + LineChart.inset + (x - self.x.low) / (self.x.high - self.x.low) * (Double(right - left) - 2 * LineChart.inset),
             Double(bottom) - LineChart.inset - (y - self.y.low) / (self.y.high - self.y.low) * (Double(bottom - top) - 2 * LineChart.inset))
        }
    }

    public var layout: Layout {
        let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let x = Ticks(covering: points.map(\.x), about: 8, whole: wholeX)
        let y = Ticks(covering: points.map(\.y), about: 5, whole: false)
        let font = BitmapFont.fixed6x13
        let tickLabels = y.values.map { font.advance(of: y.label($0) + unit) }.max() ?? 0
        let left = Self.margin + font.height + 2 * Self.gap + tickLabels
        let top = Self.margin + font.height + 2 * Self.gap
        let bottom = height - (Self.margin + font.height + 2 * Self.gap + font.height + Self.gap)
        return Layout(left: left, top: top, right: width - Self.margin - Self.gap, bottom: bottom, x: x, y: y)
    }

    public func draw() -> RGBImage {
        let at = layout, ink = Color(0x222222), axis = Color(0x808080)
        var canvas = Canvas(width: width, height: height)
        let half = canvas.font.height / 2
        canvas.text(title, x: Self.margin, y: Self.margin + half, ink, bold: true)
        for value in at.y.values {
            let y = Int(at.position(at.x.low, value).y)
            canvas.fill(x: at.left, y: y, width: at.right - at.left, height: 1, Color(0xEBEBEB))
            canvas.fill(x: at.left - 4, y: y, width: 4, height: 1, axis)
            canvas.text(at.y.label(value) + unit, x: at.left - Self.gap, y: y, anchor: .end, ink)
        }
        for value in at.x.values {
            let x = Int(at.position(value, at.y.low).x)
            canvas.fill(x: x, y: at.bottom, width: 1, height: 4, axis)
            canvas.text(at.x.label(value), x: x, y: at.bottom + Self.gap + half, anchor: .middle, ink)
        }
        canvas.frame(x: at.left, y: at.top, width: at.right - at.left + 1, height: at.bottom - at.top + 1, axis)
        canvas.text(xTitle, x: (at.left + at.right) / 2, y: height - Self.margin - half, anchor: .middle, ink)
        canvas.text(yTitle, x: Self.margin + half, y: (at.top + at.bottom) / 2, anchor: .middle, ink, upward: true)

        for line in series {
            // Runs of finite points, each one stroke; dots mark the points while they are few.
            var run: [(x: Double, y: Double)] = []
            for point in line.points + [(x: .nan, y: .nan)] {
                if point.x.isFinite && point.y.isFinite {
                    run.append(at.position(point.x, point.y))
                } else if !run.isEmpty {
                    canvas.stroke(run, width: 2, line.color)
                    run = []
                }
            }
            if line.points.count <= 60 {
                for point in line.points where point.x.isFinite && point.y.isFinite {
                    let p = at.position(point.x, point.y)
                    canvas.disc(x: p.x, y: p.y, radius: 2.5, line.color)
                }
            }
        }
        // The legend, right-aligned above the plot: a stroke of each colour and the series' name.
        var x = at.right
        for line in series.reversed() {
            x -= canvas.font.advance(of: line.name)
            canvas.text(line.name, x: x, y: Self.margin + half, ink)
            x -= Self.gap + 20
            canvas.stroke([(Double(x), Double(Self.margin + half) + 0.5), (Double(x + 20), Double(Self.margin + half) + 0.5)], width: 2, line.color)
            x -= 3 * Self.gap
        }
        return canvas.image
    }
}

/// Round numbers along an axis: a step of 1, 2 or 5 times a power of ten, the range widened to
/// whole steps around the data, and the tick values in it.
public struct Ticks: Sendable {
    public let low: Double, high: Double, step: Double

    /// About `count` steps over `data`; `whole` keeps steps whole numbers (at least 1).
    init(covering data: [Double], about count: Int, whole: Bool) {
        var low = data.min() ?? 0, high = data.max() ?? 1
        if high - low < 1e-12 { (low, high) = whole ? (low - 0.5, high + 0.5) : (low - max(0.5, abs(low) / 10), high + max(0.5, abs(high) / 10)) }
        let rough = (high - low) / Double(count)
        let power = pow(10, (log10(rough)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= rough * 0.999 }!
        self.step = whole ? max(1, step.rounded()) : step
        self.low = whole ? low : (low / self.step).rounded(.down) * self.step
        self.high = whole ? high : (high / self.step).rounded(.up) * self.step
    }

    public var values: [Double] {
        let first = (low / step).rounded(.up), last = (high / step + 1e-9).rounded(.down)
        return first <= last ? (0...Int(last - first)).map { (first + Double($0)) * step } : []
    }

    /// A tick value with as many decimals as the step needs.
    public func label(_ value: Double) -> String {
        let decimals = max(0, Int((-log10(step) - 1e-9).rounded(.up)))
        return String(format: "%.\(decimals)f", abs(value) < step / 1e6 ? 0 : value)
    }
}
