import Protobuf

/// The two kinds of `tensorflow.Event` messages ddptrain writes, encoded with `ProtobufWriter`:
/// the version record every event file starts with, and a summary of scalar values at a step.
///
/// Fields (tensorflow/core/util/event.proto, summary.proto): Event.wall_time = 1 (double),
/// step = 2 (int64), file_version = 3 (string), summary = 5; Summary.value = 1 (repeated);
/// Summary.Value.tag = 1 (string), simple_value = 2 (float), which TensorBoard shows as a scalar.
///
/// ```swift
/// let record = SummaryEvent.scalars([("train/loss", 0.73)], step: 50, wallTime: 1.7e9)
/// ```
enum SummaryEvent {
    static let fileVersion = "brain.Event:2"

    static func version(wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        event.string(3, fileVersion)
        return event.bytes
    }

    static func scalars(_ values: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        event.int64(2, Int64(step))
        event.message(5) { summary in
            for scalar in values {
                summary.message(1) { value in
                    value.string(1, scalar.tag)
                    value.float(2, scalar.value)
                }
            }
        }
        return event.bytes
    }
}
