import Protobuf
import Testing

/// Byte sequences from the encoding guide (https://protobuf.dev/programming-guides/encoding/) and
/// from `protoc --encode` on the same messages.
@Suite struct ProtobufWriterTests {
    @Test("varints, as in the encoding guide: 150 in field 1 is 08 96 01; -1 takes ten bytes")
    func varints() {
        var w = ProtobufWriter()
        w.int64(1, 150)
        #expect(w.bytes == [0x08, 0x96, 0x01])
        var negative = ProtobufWriter()
        negative.int64(2, -1)
        #expect(negative.bytes == [0x10] + Array(repeating: 0xFF, count: 9) + [0x01])
        var flag = ProtobufWriter()
        flag.bool(3, true)
        #expect(flag.bytes == [0x18, 0x01])
    }

    @Test("strings and nested messages are length-delimited: field 2 \"testing\" is 12 07 74 65 73 74 69 6e 67")
    func lengthDelimited() {
        var w = ProtobufWriter()
        w.string(2, "testing")
        #expect(w.bytes == [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67])
        var outer = ProtobufWriter()
        outer.message(3) { $0.int64(1, 150) }
        #expect(outer.bytes == [0x1a, 0x03, 0x08, 0x96, 0x01])
    }

    @Test("fixed-width fields are little-endian: double 1.0 in field 1, float 0.5 in field 2")
    func fixedWidth() {
        var w = ProtobufWriter()
        w.double(1, 1.0)
        w.float(2, 0.5)
        #expect(w.bytes == [0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0x15, 0, 0, 0, 0x3F])
    }

    @Test("packed repeated fields: int64s [3, 270, 86942] in field 4 is 22 06 03 8e 02 9e a7 05")
    func packed() {
        var ints = ProtobufWriter()
        ints.packedInt64s(4, [3, 270, 86942])
        #expect(ints.bytes == [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05])
        var floats = ProtobufWriter()
        [Float(1), -2].withUnsafeBufferPointer { floats.packedFloats(5, $0) }
        #expect(floats.bytes == [0x2a, 0x08, 0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0])
    }
}
