import CImageCodecs
import Foundation

/// PNG and JPEG through the C libraries (see `Sources/CImageCodecs/shim.h`).
extension RGBImage {
    /// The shim's calling convention: 1 and a malloc'ed RGB buffer, or 0 and a reason.
    private typealias Decoder = (UnsafePointer<CChar>, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>,
                                 UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>,
                                 UnsafeMutablePointer<CChar>, Int) -> Int32

    private static func decode(path: String, format: Format, with decoder: Decoder) throws -> RGBImage {
        var buffer: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let ok = decoder(path, &buffer, &width, &height, &message, message.count)
        guard ok == 1, let buffer else {
            throw ImageError(path: path, problem: "not a readable \(format.rawValue) image: \(text(message))")
        }
        defer { free(buffer) }
        let count = Int(width) * Int(height) * 3
        return RGBImage(width: Int(width), height: Int(height), pixels: Array(UnsafeBufferPointer(start: buffer, count: count)))
    }

    static func decodePNG(path: String) throws -> RGBImage {
        try decode(path: path, format: .png) { ddp_png_read($0, $1, $2, $3, $4, $5) }
    }

    static func decodeJPEG(path: String) throws -> RGBImage {
        try decode(path: path, format: .jpeg) { ddp_jpeg_read($0, $1, $2, $3, $4, $5) }
    }

    /// Writes the image as an 8-bit RGB PNG (libpng, default compression).
    ///
    ///     try RGBImage(width: 2, height: 1, pixels: [255, 0, 0, 0, 0, 255]).writePNG(to: "red-blue.png")
    public func writePNG(to path: String) throws {
        try RGBImage.writePNG(to: path, pixels: pixels, width: width, height: height, channels: 3)
    }

    /// Writes `height` rows of `width` pixels of `channels` bytes each (1 grey, 3 RGB, 4 RGBA) as
    /// a PNG; for pictures that are not RGB, such as a greyscale feature map.
    public static func writePNG(to path: String, pixels: [UInt8], width: Int, height: Int, channels: Int) throws {
        precondition([1, 3, 4].contains(channels) && width > 0 && height > 0 && pixels.count == width * height * channels,
                     "\(pixels.count) bytes for a \(width)x\(height) image of \(channels) channels")
        var message = [CChar](repeating: 0, count: 256)
        let ok = ddp_png_write(path, pixels, Int32(width), Int32(height), Int32(channels), &message, message.count)
        guard ok == 1 else { throw ImageError(path: path, problem: "cannot write the PNG: \(text(message))") }
    }
}

/// The shim's NUL-terminated message.
private func text(_ message: [CChar]) -> String {
    String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
