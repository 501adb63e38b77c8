import Foundation
import Images
import Testing

/// The pixels of `image` inside the rectangle that differ from `background`.
private func ink(_ image: RGBImage, x: Range<Int>, y: Range<Int>, background: Color = .white) -> [(x: Int, y: Int)] {
    y.flatMap { row in
        x.compactMap { column in
            let pixel = Color(red: image[x: column, y: row, c: 0], green: image[x: column, y: row, c: 1], blue: image[x: column, y: row, c: 2])
            return pixel == background ? nil : (column, row)
        }
    }
}

private func pixel(_ image: RGBImage, _ x: Int, _ y: Int) -> Color {
    Color(red: image[x: x, y: y, c: 0], green: image[x: x, y: y, c: 1], blue: image[x: x, y: y, c: 2])
}

@Suite struct CanvasTests {
    @Test("text covers exactly its cells: 6x13 per character, scaled; upward text is the same turned a quarter")
    func text() {
        var canvas = Canvas(width: 80, height: 60)
        canvas.text("Hg", x: 10, y: 20)
        let flat = ink(canvas.image, x: 0..<80, y: 0..<60)
        #expect(!flat.isEmpty)
        // Cells from x 10 to 21, rows 20 - 6 = 14 to 26; "H" reaches the cap height, "g" the descender.
        #expect(flat.allSatisfy { (10..<22).contains($0.x) && (14..<27).contains($0.y) }, "\(flat)")
        #expect(flat.contains { $0.y >= 25 } && flat.contains { $0.y <= 16 })

        var turned = Canvas(width: 80, height: 60)
        turned.text("Hg", x: 30, y: 50, upward: true)
        let up = ink(turned.image, x: 0..<80, y: 0..<60)
        #expect(up.count == flat.count)
        // Turned anticlockwise: the line runs up from y 50, the glyphs' tops face left.
        #expect(up.allSatisfy { (24..<37).contains($0.x) && (38..<50).contains($0.y) }, "\(up)")
        #expect(Set(up.map { "\($0.x - 24),\(49 - $0.y)" }) == Set(flat.map { "\($0.y - 14),\($0.x - 10)" }))

        var big = Canvas(width: 80, height: 60)
        big.text("Hg", x: 40, y: 30, anchor: .middle, scale: 2)
        let scaled = ink(big.image, x: 0..<80, y: 0..<60)
        #expect(scaled.count == 4 * flat.count)
        #expect(scaled.allSatisfy { (28..<52).contains($0.x) && (17..<43).contains($0.y) })
        #expect(BitmapFont.fixed6x13.advance(of: "Hg", scale: 2) == 24)
    }

    @Test("characters outside printable ASCII are drawn as '?'")
    func unknownCharacters() {
        var a = Canvas(width: 20, height: 20), b = Canvas(width: 20, height: 20)
        a.text("é", x: 2, y: 10)
        b.text("?", x: 2, y: 10)
        #expect(a.image == b.image && !ink(a.image, x: 0..<20, y: 0..<20).isEmpty)
    }

    @Test("a horizontal line 2 wide on pixel edges covers two whole rows and nothing else")
    func horizontalLine() {
        var canvas = Canvas(width: 40, height: 20)
        canvas.stroke([(5, 10), (35, 10)], width: 2, .black)
        let image = canvas.image
        for x in 5..<35 {
            #expect(pixel(image, x, 9) == .black && pixel(image, x, 10) == .black)
            #expect(pixel(image, x, 8) == .white && pixel(image, x, 11) == .white)
        }
        // Round ends: the pixels beyond each end are partly covered.
        #expect(pixel(image, 35, 9) != .white && pixel(image, 35, 9) != .black)
    }

    @Test("a diagonal line is anti-aliased, and a polyline's join is not drawn twice")
    func antiAliasing() {
        var diagonal = Canvas(width: 40, height: 40)
        diagonal.stroke([(5, 5), (35, 28)], width: 2, .black)
        let greys = Set(ink(diagonal.image, x: 0..<40, y: 0..<40).map { pixel(diagonal.image, $0.x, $0.y).red })
        #expect(greys.count > 5, "edge pixels take intermediate values: \(greys.sorted())")

        var one = Canvas(width: 40, height: 40), two = Canvas(width: 40, height: 40)
        let colour = Color(0x1F77B4)
        one.stroke([(5, 5), (35, 35)], width: 3, colour)
        two.stroke([(5, 5), (20, 20), (35, 35)], width: 3, colour)
        #expect(one.image == two.image, "a straight polyline in two segments is the same as one segment")
    }

    @Test("rectangles are clipped to the canvas")
    func clipping() {
        var canvas = Canvas(width: 10, height: 10)
        canvas.fill(x: -5, y: 8, width: 100, height: 100, .black)
        canvas.stroke([(-50, -50), (-40, -40)], width: 2, .black)
        canvas.text("far away", x: 500, y: 500)
        #expect(ink(canvas.image, x: 0..<10, y: 0..<10).count == 20)
    }
}

@Suite struct ChartTests {
    let counts = [[40, 3, 7], [12, 30, 8], [2, 25, 23]]
    var heatMap: HeatMap {
        HeatMap(counts: counts, labels: ["airplane", "automobile", "bird"], rowTitle: "true class", columnTitle: "predicted class", title: "3 classes")
    }

    @Test("heat map: in each row the largest count's cell is the darkest, counts and labels are written")
    func heatMapCells() throws {
        let image = heatMap.draw(), at = heatMap.layout
        #expect(image.width == at.width && image.height == at.height)
        for (i, row) in counts.enumerated() {
            let shades = row.indices.map { j in pixel(image, at.cell(i, j).x + 2, at.cell(i, j).y + 2).luma }
            #expect(shades.indices.max { shades[$0] > shades[$1] } == row.indices.max { row[$0] < row[$1] },
                    "row \(i): luma \(shades) for counts \(row)")
            for j in row.indices {
                let corner = at.cell(i, j), background = pixel(image, corner.x + 2, corner.y + 2)
                let written = ink(image, x: corner.x..<(corner.x + at.cell - 1), y: corner.y..<(corner.y + at.cell - 1), background: background)
                #expect(written.count > 10, "cell \(i),\(j) should show its count")
            }
        }
        #expect(HeatMap.shade(1).luma < HeatMap.shade(0.5).luma && HeatMap.shade(0.5).luma < HeatMap.shade(0).luma)
        // Row labels left of the grid, column labels below it.
        #expect(ink(image, x: 0..<at.gridLeft, y: at.gridTop..<(at.gridTop + 3 * at.cell)).count > 100)
        #expect(ink(image, x: at.gridLeft..<(at.gridLeft + 3 * at.cell), y: (at.gridTop + 3 * at.cell)..<at.height).count > 100)
    }

    @Test("the same heat map gives the same PNG bytes, and they decode to the drawn pixels")
    func heatMapDeterministic() throws {
        let a = temporaryFile("a.png"), b = temporaryFile("b.png")
        try heatMap.draw().writePNG(to: a)
        try heatMap.draw().writePNG(to: b)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: a))
        #expect(bytes == (try Data(contentsOf: URL(fileURLWithPath: b))))
        #expect(try RGBImage(contentsOf: a) == heatMap.draw())
    }

    @Test("line chart: each series' colour is at its points, the legend and tick labels are written")
    func lineChart() throws {
        let train = (1...12).map { (x: Double($0), y: 2.3 / Double($0)) }
        let test = (1...12).map { (x: Double($0), y: 1.5 + 0.02 * Double($0)) }
        let chart = LineChart(title: "loss", xTitle: "epoch", yTitle: "cross-entropy", series: [
            .init(name: "train", color: LineChart.palette[0], points: train),
            .init(name: "test", color: LineChart.palette[1], points: test),
        ])
        let image = chart.draw(), at = chart.layout
        #expect(image.width == 560 && image.height == 340)
        // The last series drawn wins where lines cross, so look at points where they are apart.
        for (series, points) in [(0, train), (1, test)] {
            for point in points where abs(train[Int(point.x) - 1].y - test[Int(point.x) - 1].y) > 0.3 {
                let p = at.position(point.x, point.y)
                #expect(pixel(image, Int(p.x), Int(p.y)) == LineChart.palette[series], "series \(series) at epoch \(point.x)")
            }
        }
        // Higher values are higher up.
        #expect(at.position(1, train[0].y).y < at.position(12, train[11].y).y)
        #expect(at.y.low <= 0.19 && at.y.high >= 2.3 && at.y.step == 0.5)
        #expect(ink(image, x: 0..<at.left, y: at.top..<at.bottom).count > 100, "y tick labels and title")
        #expect(ink(image, x: at.left..<at.right, y: (at.bottom + 2)..<image.height).count > 100, "x tick labels and title")
        #expect(ink(image, x: (at.right - 120)..<at.right, y: 0..<at.top).contains { pixel(image, $0.x, $0.y) == LineChart.palette[1] },
                "the legend shows the test colour")
    }

    @Test("ticks fall on round numbers around the data")
    func ticks() {
        let chart = { (ys: [Double]) in
            LineChart(title: "", xTitle: "", yTitle: "", series: [.init(name: "a", color: .black, points: ys.enumerated().map { (Double($0.offset + 1), $0.element) })]).layout
        }
        let accuracy = chart([31, 55, 87])
        #expect(accuracy.y.values == [20, 40, 60, 80, 100] && accuracy.y.label(40) == "40")
        #expect(accuracy.x.values == [1, 2, 3])
        let small = chart([0.012, 0.043])
        #expect(abs(small.y.step - 0.01) < 1e-12 && small.y.values.count == 5 && small.y.label(0.03) == "0.03")
        let long = chart((1...30).map(Double.init))
        #expect(long.x.values == [5, 10, 15, 20, 25, 30])
        let one = chart([0.5])
        #expect(one.x.values == [1] && !one.y.values.isEmpty)
    }
}
