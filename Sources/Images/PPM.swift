extension RGBImage {
    /// Netpbm's binary PPM (P6): a text header `P6 width height maxval` (whitespace-separated,
    /// `#` comments allowed), one whitespace byte, then the raster: 1 byte per sample when
    /// maxval < 256, else 2 (big-endian). Samples are scaled from 0...maxval to 0...255.
    /// The format is this simple, and fully specified, so it needs no library.
    static func decodePPM(_ bytes: [UInt8], path: String) throws -> RGBImage {
        func bad(_ why: String) -> ImageError { ImageError(path: path, problem: "not a readable binary PPM (P6) image: \(why)") }
        var at = 2  // after "P6"
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        func number(_ what: String) throws -> Int {
            while at < bytes.count && (isSpace(bytes[at]) || bytes[at] == UInt8(ascii: "#")) {
                if bytes[at] == UInt8(ascii: "#") {
                    while at < bytes.count && bytes[at] != 0x0A { at += 1 }
                } else {
                    at += 1
                }
            }
            var value = 0, digits = 0
            while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) {
                value = value * 10 + Int(bytes[at] - UInt8(ascii: "0"))
                digits += 1
                at += 1
                if value > 1 << 30 { throw bad("\(what) is too large") }
            }
            guard digits > 0 else { throw bad("the header has no \(what)") }
            return value
        }
        guard bytes.count > 2, isSpace(bytes[2]) || bytes[2] == UInt8(ascii: "#") else { throw bad("no whitespace after P6") }
        let width = try number("width"), height = try number("height"), maxValue = try number("maxval")
        guard width > 0 && height > 0 && width * height <= 1 << 28 else {
            throw bad("\(width)x\(height) pixels is outside the supported 1 to \(1 << 28) pixels")
        }
        guard (1...65535).contains(maxValue) else { throw bad("maxval \(maxValue) is outside 1...65535") }
        guard at < bytes.count, isSpace(bytes[at]) else { throw bad("the header does not end in whitespace") }
        at += 1
        let sampleBytes = maxValue < 256 ? 1 : 2
        let samples = width * height * 3
        guard bytes.count - at >= samples * sampleBytes else {
            throw bad("the raster holds \(bytes.count - at) bytes, \(width)x\(height) pixels need \(samples * sampleBytes) (truncated?)")
        }
        var pixels = [UInt8](repeating: 0, count: samples)
        for i in 0..<samples {
            let v = sampleBytes == 1 ? Int(bytes[at + i]) : Int(bytes[at + 2 * i]) << 8 | Int(bytes[at + 2 * i + 1])
            guard v <= maxValue else { throw bad("sample \(i) is \(v), above maxval \(maxValue)") }
            pixels[i] = maxValue == 255 ? UInt8(v) : UInt8((v * 255 + maxValue / 2) / maxValue)
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }
}
