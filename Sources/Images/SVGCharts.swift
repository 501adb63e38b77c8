import Foundation

/// Small self-contained SVG charts (text stays text, so class names need no font rendering):
/// a labelled heat map and line charts, for `ddptrain visualize`.
public enum SVGChart {
    /// A square matrix of counts as a heat map: each cell shaded by its share of its row (white to
    /// blue), with the count written in it and `labels` along both axes.
    ///
    ///     let svg = SVGChart.heatMap(confusion, labels: ["cat", "dog"], rowTitle: "true class", columnTitle: "predicted")
    public static func heatMap(_ matrix: [[Int]], labels: [String], rowTitle: String, columnTitle: String) -> String {
        let n = matrix.count, cell = 44, margin = 12 + 7 * (labels.map(\.count).max() ?? 0)
        let size = margin + n * cell + 10
        var svg = header(width: size + 40, height: size + 20)  // room for the last rotated label
        svg += text(x: margin + n * cell / 2, y: 14, columnTitle, anchor: "middle", bold: true)
        svg += "<text x=\"14\" y=\"\(margin + n * cell / 2)\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(margin + n * cell / 2))\">\(escaped(rowTitle))</text>\n"
        for (i, label) in labels.enumerated() {
            svg += text(x: margin - 6, y: margin + i * cell + cell / 2 + 4, label, anchor: "end")
            let x = margin + i * cell + cell / 2, y = margin - 6
            svg += "<text x=\"\(x)\" y=\"\(y)\" font-size=\"12\" text-anchor=\"start\" transform=\"rotate(-45 \(x) \(y))\">\(escaped(label))</text>\n"
        }
        for (i, row) in matrix.enumerated() {
            let total = max(row.reduce(0, +), 1)
            for (j, count) in row.enumerated() {
                let share = Double(count) / Double(total)
                let shade = { (full: Double) in Int((255 - (255 - full) * share).rounded()) }
                let fill = String(format: "#%02x%02x%02x", shade(33), shade(102), shade(172))
                svg += "<rect x=\"\(margin + j * cell)\" y=\"\(margin + i * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(fill)\" stroke=\"#ccc\"/>\n"
                svg += "<text x=\"\(margin + j * cell + cell / 2)\" y=\"\(margin + i * cell + cell / 2 + 4)\" font-size=\"12\" text-anchor=\"middle\" fill=\"\(share > 0.5 ? "white" : "black")\">\(count)</text>\n"
            }
        }
        return svg + "</svg>\n"
    }

    /// Lines over x = 1, 2, … (epochs), one per series, with axes, ticks and a legend.
    ///
    ///     let svg = SVGChart.lines([("train", [0.3, 0.5]), ("test", [0.28, 0.41])], title: "accuracy", xTitle: "epoch")
    public static func lines(_ series: [(name: String, values: [Double])], title: String, xTitle: String) -> String {
        let width = 520, height = 300, left = 60, right = 20, top = 30, bottom = 45
        let all = series.flatMap(\.values).filter(\.isFinite)
        let count = series.map(\.values.count).max() ?? 0
        var lo = all.min() ?? 0, hi = all.max() ?? 1
        if hi - lo < 1e-12 { lo -= 0.5; hi += 0.5 }
        let plotW = Double(width - left - right), plotH = Double(height - top - bottom)
        func px(_ i: Int) -> Double { Double(left) + (count > 1 ? Double(i) / Double(count - 1) : 0.5) * plotW }
        func py(_ v: Double) -> Double { Double(top) + (1 - (v - lo) / (hi - lo)) * plotH }
        var svg = header(width: width, height: height)
        svg += text(x: width / 2, y: 18, title, anchor: "middle", bold: true)
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(Int(plotW))\" height=\"\(Int(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
        for k in 0...4 {
            let v = lo + (hi - lo) * Double(k) / 4
            svg += text(x: left - 6, y: Int(py(v)) + 4, String(format: "%.3g", v), anchor: "end")
        }
        let step = max(1, count / 10)
        for i in stride(from: 0, to: count, by: step) { svg += text(x: Int(px(i)), y: height - bottom + 16, "\(i + 1)", anchor: "middle") }
        svg += text(x: left + Int(plotW) / 2, y: height - 8, xTitle, anchor: "middle")
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
        for (s, line) in series.enumerated() {
            let colour = colours[s % colours.count]
            let points = line.values.enumerated().filter { $0.element.isFinite }
                .map { String(format: "%.1f,%.1f", px($0.offset), py($0.element)) }.joined(separator: " ")
            svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            svg += "<rect x=\"\(left + 10 + s * 110)\" y=\"\(top + 8)\" width=\"14\" height=\"4\" fill=\"\(colour)\"/>\n"
            svg += text(x: left + 28 + s * 110, y: top + 14, line.name, anchor: "start")
        }
        return svg + "</svg>\n"
    }

    static func header(width: Int, height: Int) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    }

    static func text(x: Int, y: Int, _ content: String, anchor: String, bold: Bool = false) -> String {
        "<text x=\"\(x)\" y=\"\(y)\" font-size=\"12\" text-anchor=\"\(anchor)\"\(bold ? " font-weight=\"bold\"" : "")>\(escaped(content))</text>\n"
    }

    /// Text safe inside SVG or HTML.
    public static func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
