import Foundation

extension RGBImage {
    /// The formats `init(contentsOf:)` reads, told apart by their first bytes (never by the
    /// file name, which may lie).
    public enum Format: String, Sendable {
        case png = "PNG", jpeg = "JPEG", ppm = "PPM"

        static func sniff(_ head: [UInt8]) -> Format? {
            if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
            if head.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
            if head.starts(with: Array("P6".utf8)) { return .ppm }
            return nil
        }
    }

    /// Decodes a PNG (through libpng), a JPEG (through libjpeg-turbo) or a binary PPM (P6) file
    /// to 8-bit RGB. Grey and palette images become RGB, 16-bit samples are scaled to 8 bits,
    /// transparency is composited on white.
    ///
    ///     let image = try RGBImage(contentsOf: "photos/cat.jpg")
    ///
    /// Throws `ImageError`: no such file, not one of these formats, or a damaged file.
    public init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ImageError(path: path, problem: "no such file")
        }
        guard !isDirectory.boolValue else { throw ImageError(path: path, problem: "is a directory, not an image") }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ImageError(path: path, problem: "cannot open the file (permissions?)")
        }
        let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        try? handle.close()
        switch Format.sniff(head) {
        case .png: self = try RGBImage.decodePNG(path: path)
        case .jpeg: self = try RGBImage.decodeJPEG(path: path)
        case .ppm:
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ImageError(path: path, problem: "cannot read the file")
            }
            self = try RGBImage.decodePPM([UInt8](data), path: path)
        case nil:
            let shown = head.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw ImageError(path: path, problem: "not a PNG, JPEG or binary PPM (P6) image (it starts with bytes \(head.isEmpty ? "nothing: the file is empty" : shown))")
        }
    }
}
