import CMPI

/// Sums the gradients across ranks in buckets, overlapped with the backward pass.
///
/// Parameters are laid out in layer order, and backward finishes them last layer first, so the
/// finished part of the buffer is always one contiguous tail. Once at least `bucketFloats` of
/// it await reduction, a non-blocking all-reduce starts on them; between layers the pending
/// requests are tested, which lets Open MPI progress them; `finish` starts the last bucket and
/// waits. The buckets depend only on the model and the bucket size, so every rank posts the
/// same collectives in the same order.
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
    /// Nanoseconds spent in `finish` waiting for the last requests: the exposed communication.
    public private(set) var exposedNanoseconds: UInt64 = 0

    public init(comm: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int) {
        self.comm = comm
        self.buffer = buffer
        self.count = count
        bucketFloats = max(1, bucketBytes / 4)
        pendingStart = count
        pendingEnd = count
        requests = []
    }

    public func gradientsReady(_ range: Range<Int>) {
        precondition(range.upperBound == pendingStart, "gradients must finish last layer first")
        pendingStart = range.lowerBound
        if pendingEnd - pendingStart >= bucketFloats { startBucket() }
        if active > 0 { comm.testAll(&requests, count: active) }
    }

    /// Starts the rest and blocks until every bucket is summed.
    public func finish() {
        let started = DispatchTime.now().uptimeNanoseconds
        if pendingEnd > pendingStart { startBucket() }
        precondition(pendingStart == 0, "not every gradient was reported finished")
        comm.waitAll(&requests, count: active, bytes: 4 * count)
        active = 0
        pendingStart = count
        pendingEnd = count
        exposedNanoseconds += DispatchTime.now().uptimeNanoseconds - started
    }

    private func startBucket() {
        // Grows during the first step only: the buckets are the same every step.
        if active == requests.count { requests.append(nil) }
        requests[active] = comm.startAllReduceSum(buffer + pendingStart, count: pendingEnd - pendingStart)
        active += 1
        pendingEnd = pendingStart
    }
}

import Dispatch
