/// An 8-bit RGB image: what every decoder produces and the resizer and PNG encoder take.
///
///     let photo = try RGBImage(contentsOf: "cat.jpg")          // PNG, JPEG or binary PPM
///     let input = photo.resizedToFill(width: 32, height: 32)    // shorter side to 32, centre crop
///     try input.writePNG(to: "cat-32.png")
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `height` rows of `width` pixels, each R, G, B; no padding.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3,
                     "\(pixels.count) bytes for a \(width)x\(height) RGB image")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Channel `c` (0 red, 1 green, 2 blue) of the pixel in row `y`, column `x`.
    public subscript(x x: Int, y y: Int, c c: Int) -> UInt8 {
        pixels[(y * width + x) * 3 + c]
    }
}

/// Why an image could not be read or written; one line that starts with the file.
public struct ImageError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { "\(path): \(problem)" }
}
