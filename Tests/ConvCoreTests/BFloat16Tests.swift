import ConvCore
import Testing

@Suite struct BFloat16Tests {
    @Test("bfloat16 keeps the top 16 bits, rounding to nearest with ties to even; NaN and infinities survive")
    func rounding() {
        #expect(bfloat16(1.0) == 0x3F80)
        #expect(bfloat16(-2.5) == 0xC020)
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        #expect(bfloat16(1 + 0x1p-8) == 0x3F80)
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to the even one, 1 + 2^-6.
        #expect(bfloat16(1 + 3 * 0x1p-8) == 0x3F82)
        #expect(bfloat16(1 + 0x1p-8 + 0x1p-12) == 0x3F81)
        #expect(float(bfloat16: bfloat16(.infinity)) == .infinity)
        #expect(float(bfloat16: bfloat16(-.infinity)) == -.infinity)
        #expect(float(bfloat16: bfloat16(.nan)).isNaN)
        #expect(float(bfloat16: bfloat16(-0.0)).sign == .minus)
        for x: Float in [0.1, -3.3e-5, 12345.678, 6.0e37] {
            let back = float(bfloat16: bfloat16(x))
            #expect(abs(back - x) <= abs(x) * 0x1p-8, "\(x) → \(back)")
        }
    }

    @Test("buffer conversion round-trips values already in bfloat16")
    func buffers() {
        let values: [Float] = (0..<37).map { float(bfloat16: bfloat16(Float($0) * 0.37 - 5)) }
        var packed = [UInt16](repeating: 0, count: values.count), back = [Float](repeating: 0, count: values.count)
        packed.withUnsafeMutableBufferPointer { convertToBFloat16(values, $0.baseAddress!, count: values.count) }
        back.withUnsafeMutableBufferPointer { convertFromBFloat16(packed, $0.baseAddress!, count: values.count) }
        #expect(back == values)
    }
}
