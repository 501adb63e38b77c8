/// CRC-32C (Castagnoli), the checksum of TFRecord framing, and the "masked" form TensorFlow
/// stores so that a CRC of data that itself holds CRCs stays well distributed.
///
/// ```swift
/// CRC32C.checksum(Array("123456789".utf8))  // 0xE3069283, the standard check value
/// ```
enum CRC32C {
    /// The byte-at-a-time table of the reflected polynomial 0x82F63B78.
    static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TensorFlow's `MaskedCrc`: rotate right by 15 bits and add a constant.
    static func masked(_ bytes: some Sequence<UInt8>) -> UInt32 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
