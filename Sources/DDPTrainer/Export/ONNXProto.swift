import Protobuf

/// The few ONNX messages the exporter writes, with their field numbers from `onnx/onnx.proto`
/// (proto2; onnx 1.23). Repeated int64 fields there are not `[packed = true]`, so they are
/// written one entry at a time, as protoc would.
enum ONNXProto {
    /// Opset 17 (onnx 1.12) goes with IR version 8; every op used here exists unchanged in it.
    static let irVersion: Int64 = 8
    static let opsetVersion: Int64 = 17

    enum ElementType: Int64 {
        case float = 1
        case int64 = 7
    }

    /// An attribute of a node: `AttributeProto` with its type discriminator.
    enum Attribute {
        case int(String, Int64)
        case ints(String, [Int64])
        case float(String, Float)

        func write(to w: inout ProtobufWriter) {
            switch self {
            case let .int(name, value):
                w.string(1, name)
                w.int64(20, 2)  // AttributeType.INT
                w.int64(3, value)
            case let .ints(name, values):
                w.string(1, name)
                w.int64(20, 7)  // AttributeType.INTS
                for v in values { w.int64(8, v) }
            case let .float(name, value):
                w.string(1, name)
                w.int64(20, 1)  // AttributeType.FLOAT
                w.float(2, value)
            }
        }
    }

    /// `NodeProto`: one operator application.
    struct Node {
        var op: String
        var name: String
        var inputs: [String]
        var output: String
        var attributes: [Attribute] = []

        func write(to w: inout ProtobufWriter) {
            for input in inputs { w.string(1, input) }
            w.string(2, output)
            w.string(3, name)
            w.string(4, op)
            for attribute in attributes { w.message(5) { attribute.write(to: &$0) } }
        }
    }

    /// `TensorProto` with its values as little-endian `raw_data`.
    static func writeTensor(name: String, dims: [Int], type: ElementType, rawData: [UInt8], to w: inout ProtobufWriter) {
        for d in dims { w.int64(1, Int64(d)) }
        w.int64(2, type.rawValue)
        w.string(8, name)
        w.bytes(9, rawData)
    }

    /// A dimension of a graph input or output: a fixed size or a symbolic name (the batch).
    enum Dimension {
        case size(Int)
        case symbol(String)
    }

    /// `ValueInfoProto` of a float tensor: name, `TypeProto.tensor_type` with its shape, and a description.
    static func writeValueInfo(name: String, dims: [Dimension], doc: String, to w: inout ProtobufWriter) {
        w.string(1, name)
        w.message(2) { type in
            type.message(1) { tensor in
                tensor.int64(1, ElementType.float.rawValue)
                tensor.message(2) { shape in
                    for d in dims {
                        shape.message(1) { dim in
                            switch d {
                            case let .size(n): dim.int64(1, Int64(n))
                            case let .symbol(s): dim.string(2, s)
                            }
                        }
                    }
                }
            }
        }
        w.string(3, doc)
    }

    /// `StringStringEntryProto`, for `ModelProto.metadata_props`.
    static func writeEntry(key: String, value: String, to w: inout ProtobufWriter) {
        w.string(1, key)
        w.string(2, value)
    }
}
