/// bfloat16: the top 16 bits of a Float (8-bit exponent, 7-bit mantissa), for halving the bytes
/// of a gradient all-reduce. Rounding is to nearest, ties to even; NaN stays NaN.
@inline(__always) public func bfloat16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
    return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
}

@inline(__always) public func float(bfloat16 h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

/// dst[i] = bfloat16(src[i]).
public func convertToBFloat16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0..<count { dst[i] = bfloat16(src[i]) }
}

/// dst[i] = Float(src[i]).
public func convertFromBFloat16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { dst[i] = float(bfloat16: src[i]) }
}
