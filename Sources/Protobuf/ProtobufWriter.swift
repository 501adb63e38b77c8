/// Protocol Buffers wire format, the writing half: enough to emit the messages other tools read
/// from us (TensorBoard's `Event`, ONNX's `ModelProto`) without a code generator or a dependency.
///
/// Fields are appended in the order the caller writes them; a nested message is written by a
/// closure into its own writer and then added length-delimited:
///
/// ```swift
/// var event = ProtobufWriter()
/// event.double(1, wallTime)
/// event.int64(2, step)
/// event.message(5) { summary in
///     summary.message(1) { value in
///         value.string(1, "train/loss")
///         value.float(2, 0.73)
///     }
/// }
/// let bytes = event.bytes
/// ```
///
/// Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit
/// (https://protobuf.dev/programming-guides/encoding/).
public struct ProtobufWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Base-128 varint, least significant group first.
    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: UInt64) {
        varint(UInt64(field) << 3 | wireType)
    }

    /// int32, int64, uint64, enum and bool fields. Negative values take ten bytes, as protobuf
    /// specifies for int32/int64 (not zigzag: that is sint32/sint64).
    public mutating func int64(_ field: Int, _ value: Int64) {
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    public mutating func bool(_ field: Int, _ value: Bool) { int64(field, value ? 1 : 0) }

    public mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        appendLittleEndian(value.bitPattern)
    }

    public mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        appendLittleEndian(value.bitPattern)
    }

    public mutating func bytes(_ field: Int, _ value: some Collection<UInt8>) {
        key(field, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    /// A nested message (or a packed repeated field) written by `body`, length-delimited.
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        body(&inner)
        bytes(field, inner.bytes)
    }

    /// `repeated float` packed, as proto3 writes it by default.
    public mutating func packedFloats(_ field: Int, _ values: UnsafeBufferPointer<Float>) {
        key(field, 2)
        varint(UInt64(values.count * 4))
        bytes.reserveCapacity(bytes.count + values.count * 4)
        for v in values { appendLittleEndian(v.bitPattern) }
    }

    /// `repeated int64` packed.
    public mutating func packedInt64s(_ field: Int, _ values: [Int64]) {
        message(field) { packed in
            for v in values { packed.varint(UInt64(bitPattern: v)) }
        }
    }

    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
