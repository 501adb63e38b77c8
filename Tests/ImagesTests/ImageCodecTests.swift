import Foundation
import Images
import Testing

/// A deterministic image with every channel varying, so a swapped channel or row shows.
private func pattern(width: Int, height: Int) -> RGBImage {
    var pixels: [UInt8] = []
    for y in 0..<height {
        for x in 0..<width { pixels += [UInt8((x * 37 + y * 11) % 256), UInt8((x * 5 + y * 73) % 256), UInt8((x * y + 19) % 256)] }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
}

@Suite struct ImageCodecTests {
    @Test("a PNG written by writePNG decodes to the same pixels (libpng both ways)")
    func pngRoundTrip() throws {
        let path = temporaryFile("p.png")
        let image = pattern(width: 45, height: 17)
        try image.writePNG(to: path)
        #expect(try RGBImage(contentsOf: path) == image)
    }

    @Test("a greyscale PNG decodes to RGB with equal channels")
    func greyPNG() throws {
        let path = temporaryFile("g.png")
        try RGBImage.writePNG(to: path, pixels: [0, 128, 255, 7], width: 2, height: 2, channels: 1)
        #expect(try RGBImage(contentsOf: path).pixels == [0, 0, 0, 128, 128, 128, 255, 255, 255, 7, 7, 7])
    }

    @Test("binary PPM: comments, 8-bit and 16-bit samples; truncated rasters are refused")
    func ppm() throws {
        let path = temporaryFile("a.ppm")
        _ = FileManager.default.createFile(atPath: path, contents: Data("P6\n# made by hand\n2 1\n255\n".utf8) + Data([1, 2, 3, 250, 251, 252]))
        #expect(try RGBImage(contentsOf: path) == RGBImage(width: 2, height: 1, pixels: [1, 2, 3, 250, 251, 252]))
        _ = FileManager.default.createFile(atPath: path, contents: Data("P6 1 1 65535 ".utf8) + Data([0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00]))
        #expect(try RGBImage(contentsOf: path).pixels == [255, 128, 0])
        _ = FileManager.default.createFile(atPath: path, contents: Data("P6 4 4 255\n".utf8) + Data([1, 2, 3]))
        let error = #expect(throws: ImageError.self) { try RGBImage(contentsOf: path) }
        #expect(error?.description.contains("truncated") == true, "\(String(describing: error))")
    }

    @Test("a file that is not an image, a truncated PNG and a missing file are refused with the reason")
    func badFiles() throws {
        let text = temporaryFile("notes.png")
        _ = FileManager.default.createFile(atPath: text, contents: Data("hello, world\n".utf8))
        let notImage = #expect(throws: ImageError.self) { try RGBImage(contentsOf: text) }
        #expect(notImage?.description == "\(text): not a PNG, JPEG or binary PPM (P6) image (it starts with bytes 68 65 6c 6c)")

        let png = temporaryFile("cut.png")
        try pattern(width: 64, height: 64).writePNG(to: png)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        _ = FileManager.default.createFile(atPath: png, contents: bytes.prefix(bytes.count / 2))
        let truncated = #expect(throws: ImageError.self) { try RGBImage(contentsOf: png) }
        #expect(truncated?.description.hasPrefix("\(png): not a readable PNG image: ") == true, "\(String(describing: truncated))")

        let jpeg = temporaryFile("fake.jpg")
        _ = FileManager.default.createFile(atPath: jpeg, contents: Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 1, 2]))
        let badJPEG = #expect(throws: ImageError.self) { try RGBImage(contentsOf: jpeg) }
        #expect(badJPEG?.description.hasPrefix("\(jpeg): not a readable JPEG image: ") == true, "\(String(describing: badJPEG))")

        let missing = #expect(throws: ImageError.self) { try RGBImage(contentsOf: "/nonexistent/cat.png") }
        #expect(missing?.description == "/nonexistent/cat.png: no such file")
    }
}

@Suite struct ResizeTests {
    @Test("an image already of the target size comes back bit for bit")
    func identity() {
        let image = pattern(width: 32, height: 32)
        #expect(image.resizedToFill(width: 32, height: 32) == image)
    }

    @Test("an exact 2x reduction is the tent filter over each 2x2 block's neighbourhood; constants stay constant")
    func reduction() {
        let flat = RGBImage(width: 64, height: 48, pixels: [UInt8](repeating: 77, count: 64 * 48 * 3))
        #expect(flat.resizedToFill(width: 32, height: 32).pixels.allSatisfy { $0 == 77 })
        // A vertical stripe pattern (columns alternate 0, 200) averages to 100 when halved:
        // each output pixel weighs the two columns it covers equally, and its neighbours symmetrically.
        var stripes: [UInt8] = []
        for _ in 0..<64 { for x in 0..<64 { stripes += [UInt8(x % 2 * 200), 0, 0] } }
        let half = RGBImage(width: 64, height: 64, pixels: stripes).resizedToFill(width: 32, height: 32)
        for x in 1..<31 { #expect(half[x: x, y: 16, c: 0] == 100, "column \(x): \(half[x: x, y: 16, c: 0])") }
    }

    @Test("the centre is cropped: a wide image keeps its middle columns")
    func centreCrop() {
        // 96x32: left third red, middle green, right blue. Scale 1, so the crop is the middle 32 columns.
        var pixels: [UInt8] = []
        for _ in 0..<32 { for x in 0..<96 { pixels += x < 32 ? [255, 0, 0] : x < 64 ? [0, 255, 0] : [0, 0, 255] } }
        let out = RGBImage(width: 96, height: 32, pixels: pixels).resizedToFill(width: 32, height: 32)
        #expect(out.pixels == [UInt8]((0..<(32 * 32)).flatMap { _ in [UInt8(0), 255, 0] }))
    }

    @Test("enlarging is bilinear interpolation between pixel centres")
    func enlargement() {
        let image = RGBImage(width: 2, height: 2, pixels: [0, 0, 0, 200, 0, 0, 0, 0, 0, 200, 0, 0])
        let out = image.resizedToFill(width: 4, height: 4)
        // Output centres at source x = 0.25, 0.75, 1.25, 1.75 (in pixel units from the left edge):
        // weights 1, 0.75/0.25, 0.25/0.75, 1 between the two source centres at 0.5 and 1.5.
        #expect((0..<4).map { out[x: $0, y: 1, c: 0] } == [0, 50, 150, 200])
    }
}
