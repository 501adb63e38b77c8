import CMPI
import ConvCore

/// Sums the gradients across ranks in buckets, overlapped with the backward pass.
///
/// Parameters are laid out in layer order, and backward finishes them last layer first, so the
/// finished part of the buffer is always one contiguous tail. Once at least `bucketFloats` of
/// it await reduction, a non-blocking all-reduce starts on them; between layers the pending
/// requests are tested, which lets Open MPI progress them; `finish` starts the last bucket and
/// waits. The buckets depend only on the model and the bucket size, so every rank posts the
/// same collectives in the same order.
///
/// With `.bfloat16` compression each bucket is rounded to bfloat16 before it is sent and the sum
/// widened back afterwards: half the bytes on the wire, as PyTorch DDP's bf16 compression hook
/// does, at the cost of gradients rounded to 8 significant bits.
public final class GradientReducer: GradientSink {
    let comm: Communicator
    let buffer: UnsafeMutablePointer<Float>
    let count: Int
    public let bucketFloats: Int
    /// Start of the finished tail not yet handed to MPI; the tail extends to `pendingEnd`.
    private var pendingStart: Int
    private var pendingEnd: Int
    private var requests: [MPI_Request?]
    private var active = 0
    /// The bfloat16 copy of the whole gradient buffer (bfloat16 compression only).
    private let compressed: UnsafeMutablePointer<UInt16>?

    public init(comm: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int,
                compression: GradientCompression = .none) {
        self.comm = comm
        compressed = compression == .bfloat16 ? .allocate(capacity: count) : nil
        self.buffer = buffer
        self.count = count
        bucketFloats = max(1, bucketBytes / 4)
        pendingStart = count
        pendingEnd = count
        requests = []
    }

    deinit { compressed?.deallocate() }

    public func gradientsReady(_ range: Range<Int>) {
        precondition(range.upperBound == pendingStart, "gradients must finish last layer first")
        pendingStart = range.lowerBound
        if pendingEnd - pendingStart >= bucketFloats { startBucket() }
        if active > 0 { comm.testAll(&requests, count: active) }
    }

    /// Starts the rest and blocks until every bucket is summed. Returns the nanoseconds it
    /// waited: the exposed communication.
    @discardableResult
    public func finish() -> UInt64 {
        let started = DispatchTime.now().uptimeNanoseconds
        if pendingEnd > pendingStart { startBucket() }
        precondition(pendingStart == 0, "not every gradient was reported finished")
        comm.waitAll(&requests, count: active, bytes: (compressed == nil ? 4 : 2) * count)
        if let compressed { convertFromBFloat16(compressed, buffer, count: count) }
        active = 0
        pendingStart = count
        pendingEnd = count
        return DispatchTime.now().uptimeNanoseconds - started
    }

    private func startBucket() {
        // Grows during the first step only: the buckets are the same every step.
        if active == requests.count { requests.append(nil) }
        let n = pendingEnd - pendingStart
        if let compressed {
            convertToBFloat16(buffer + pendingStart, compressed + pendingStart, count: n)
            requests[active] = comm.startAllReduceSumBFloat16(compressed + pendingStart, count: n)
        } else {
            requests[active] = comm.startAllReduceSum(buffer + pendingStart, count: n)
        }
        active += 1
        pendingEnd = pendingStart
    }
}

import Dispatch

/// The backward pass with the gradients summed across ranks: overlapped through `reducer` when
/// there is one, else one blocking all-reduce after it. Returns the nanoseconds spent waiting for
/// communication once the backward pass was done.
@discardableResult
func backwardSummingGradients(_ network: Network, batch n: Int, reducer: GradientReducer?, comm: Communicator) -> UInt64 {
    if let reducer {
        network.backward(batch: n, sink: reducer)
        return reducer.finish()
    }
    network.backward(batch: n)
    let started = DispatchTime.now().uptimeNanoseconds
    comm.allReduceSum(network.gradients, count: network.parameterCount)
    return DispatchTime.now().uptimeNanoseconds - started
}

extension GradientReducer {
    /// The reducer a run needs: none for one rank, or for uncompressed gradients reduced in one
    /// blocking call after backward (`bucketBytes` 0); compressed ones always go through a reducer.
    static func make(comm: Communicator, network: Network, bucketBytes: Int, compression: GradientCompression) -> GradientReducer? {
        guard comm.size > 1, bucketBytes > 0 || compression != .none else { return nil }
        return GradientReducer(comm: comm, buffer: network.gradients, count: network.parameterCount,
                               bucketBytes: bucketBytes > 0 ? bucketBytes : Int.max, compression: compression)
    }
}

/// How gradients travel in the all-reduce.
public enum GradientCompression: String, Sendable, Codable, CaseIterable {
    case none
    case bfloat16 = "bf16"
}
