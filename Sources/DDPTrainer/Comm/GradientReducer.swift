import CMPI
import ConvCore

/// Sums the gradients across ranks in buckets, overlapped with the backward pass.
///
/// Parameters are laid out in layer order, and backward finishes them last layer first, so the
/// finished part of the buffer is always one contiguous tail. Once at least `bucketFloats` of
/// it await reduction, a non-blocking reduction starts on them; between layers the pending
/// requests are tested, which lets Open MPI progress them; `finish` starts the last bucket and
/// waits. The buckets depend only on the model and the bucket size, so every rank posts the
/// same collectives in the same order.
///
/// In the fixed order (`ReductionOrder.fixed`, the default) a bucket is a reduce-scatter and an
/// all-gather: each rank's bucket is cut into one chunk per rank, an all-to-all hands rank r
/// every rank's chunk r, rank r adds those partials in `SampleGroups`' tree order over rank
/// index, and an all-gather returns the sums. Each rank's gradient is the tree sum of its own
/// sample groups, so for a power-of-two world size dividing the group count this completes the
/// very tree one rank computes alone: the same bits on 1, 2, 4 or 8 ranks. The two phases run
/// on communicators of their own, so a bucket's all-gather can start as soon as its all-to-all is
/// done while later buckets' all-to-alls are in flight. `ReductionOrder.mpi` uses
/// `MPI_Iallreduce`, whose order Open MPI chooses (it differs with the world size).
///
/// With `.bfloat16` compression each bucket is rounded to bfloat16 before it is sent and the sum
/// widened back afterwards: half the bytes on the wire, as PyTorch DDP's bf16 compression hook
/// does, at the cost of gradients rounded to 8 significant bits (in the fixed order, the ranks'
/// partials are rounded before they are added, so the sums are identical on every rank and from
/// run to run, but not across world sizes).
public final class GradientReducer: GradientSink {
    let comm: Communicator
    let buffer: UnsafeMutablePointer<Float>
    let count: Int
    public let bucketFloats: Int
    public let order: ReductionOrder
    /// Start of the finished tail not yet handed to MPI; the tail extends to `pendingEnd`.
    private var pendingStart: Int
    private var pendingEnd: Int
    private var requests: [MPI_Request?]
    private var active = 0
    /// The bfloat16 copy of the whole gradient buffer (bfloat16 compression only).
    private let compressed: UnsafeMutablePointer<UInt16>?
    /// Fixed order only: the buckets of a step (the same every step) and how far each has got.
    private var buckets: [FixedOrderBucket] = []
    private var gathering: [MPI_Request?] = []
    /// Buckets whose chunks are summed and whose all-gather has started.
    private var scattered = 0
    private let scatterChannel: MPI_Comm?, gatherChannel: MPI_Comm?

    public init(comm: Communicator, buffer: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int,
                compression: GradientCompression = .none, order: ReductionOrder = .fixed) {
        self.comm = comm
        compressed = compression == .bfloat16 ? .allocate(capacity: count) : nil
        self.buffer = buffer
        self.count = count
        self.order = order
        bucketFloats = max(1, bucketBytes / 4)
        pendingStart = count
        pendingEnd = count
        requests = []
        scatterChannel = order == .fixed ? comm.makeChannel() : nil
        gatherChannel = order == .fixed ? comm.makeChannel() : nil
    }

    deinit { compressed?.deallocate() }

    public func gradientsReady(_ range: Range<Int>) {
        precondition(range.upperBound == pendingStart, "gradients must finish last layer first")
        pendingStart = range.lowerBound
        if pendingEnd - pendingStart >= bucketFloats { startBucket() }
        if order == .fixed {
            progressFixedOrder(waiting: false)
        } else if active > 0 {
            comm.testAll(&requests, count: active)
        }
    }

    /// Starts the rest and blocks until every bucket is summed. Returns the nanoseconds it
    /// waited: the exposed communication.
    @discardableResult
    public func finish() -> UInt64 {
        let started = DispatchTime.now().uptimeNanoseconds
        if pendingEnd > pendingStart { startBucket() }
        precondition(pendingStart == 0, "not every gradient was reported finished")
        let bytes = (compressed == nil ? 4 : 2) * count
        if order == .fixed {
            progressFixedOrder(waiting: true)
            comm.waitAll(&gathering, count: scattered, bytes: bytes)
            scattered = 0
        } else {
            comm.waitAll(&requests, count: active, bytes: bytes)
        }
        if let compressed { convertFromBFloat16(compressed, buffer, count: count) }
        active = 0
        pendingStart = count
        pendingEnd = count
        return DispatchTime.now().uptimeNanoseconds - started
    }

    private func startBucket() {
        let n = pendingEnd - pendingStart
        if let compressed { convertToBFloat16(buffer + pendingStart, compressed + pendingStart, count: n) }
        if order == .fixed {
            // Made during the first step only: the buckets are the same every step.
            if active == buckets.count {
                buckets.append(FixedOrderBucket(range: pendingStart..<pendingEnd, ranks: comm.size, rank: comm.rank,
                                                compressed: compressed != nil))
                gathering.append(nil)
            }
            precondition(buckets[active].range == pendingStart..<pendingEnd, "the buckets changed between steps")
            buckets[active].startScatter(comm: comm, buffer: buffer, compressed: compressed, channel: scatterChannel!)
        } else {
            if active == requests.count { requests.append(nil) }
            if let compressed {
                requests[active] = comm.startAllReduceSumBFloat16(compressed + pendingStart, count: n)
            } else {
                requests[active] = comm.startAllReduceSum(buffer + pendingStart, count: n)
            }
        }
        active += 1
        pendingEnd = pendingStart
    }

    /// Sums the chunks of every bucket whose all-to-all is done (all of them when `waiting`)
    /// and starts its all-gather, in bucket order, so every rank starts the all-gathers in the
    /// same order; lets MPI progress the all-gathers already started.
    private func progressFixedOrder(waiting: Bool) {
        while scattered < active {
            let bucket = buckets[scattered]
            if waiting {
                bucket.waitScatter(comm: comm)
            } else if !bucket.testScatter(comm: comm) {
                break
            }
            bucket.sumOwnChunk(into: buffer, compressed: compressed)
            gathering[scattered] = bucket.startGather(comm: comm, buffer: buffer, compressed: compressed, channel: gatherChannel!)
            scattered += 1
        }
        if scattered > 0 && !waiting { comm.testAll(&gathering, count: scattered) }
    }
}

/// The order in which ranks' gradients are added.
public enum ReductionOrder: String, Sendable, Codable, CaseIterable {
    /// `SampleGroups`' tree over rank index (reduce-scatter by all-to-all, then all-gather).
    case fixed
    /// Whatever `MPI_Iallreduce` does.
    case mpi
}

/// One bucket of the fixed-order reduction: its chunk bounds, the MPI count arrays (which must
/// outlive the requests) and the receive buffer of this rank's chunk from every rank.
private final class FixedOrderBucket {
    let range: Range<Int>
    let ranks: Int, rank: Int
    /// Chunk r is `offsets[r] ..< offsets[r] + counts[r]` of the bucket.
    let counts: UnsafeMutablePointer<Int32>, offsets: UnsafeMutablePointer<Int32>
    /// Every rank's copy of this rank's chunk, row q from rank q.
    let receiveCounts: UnsafeMutablePointer<Int32>, receiveOffsets: UnsafeMutablePointer<Int32>
    let rows: UnsafeMutablePointer<Float>
    /// The same rows as received in bfloat16 (compression only; one element otherwise).
    let compressedRows: UnsafeMutablePointer<UInt16>
    var chunk: Int { Int(counts[rank]) }
    var request: MPI_Request? = ddp_request_null()

    init(range: Range<Int>, ranks: Int, rank: Int, compressed: Bool) {
        self.range = range
        self.ranks = ranks
        self.rank = rank
        counts = .allocate(capacity: ranks)
        offsets = .allocate(capacity: ranks)
        receiveCounts = .allocate(capacity: ranks)
        receiveOffsets = .allocate(capacity: ranks)
        let n = range.count
        for r in 0..<ranks {
            offsets[r] = Int32(r * n / ranks)
            counts[r] = Int32((r + 1) * n / ranks - r * n / ranks)
        }
        let own = Int(counts[rank])
        for q in 0..<ranks {
            receiveCounts[q] = Int32(own)
            receiveOffsets[q] = Int32(q * own)
        }
        rows = .allocate(capacity: max(1, ranks * own))
        compressedRows = .allocate(capacity: compressed ? max(1, ranks * own) : 1)
    }

    deinit {
        [counts, offsets, receiveCounts, receiveOffsets].forEach { $0.deallocate() }
        rows.deallocate()
        compressedRows.deallocate()
    }

    func startScatter(comm: Communicator, buffer: UnsafeMutablePointer<Float>, compressed: UnsafeMutablePointer<UInt16>?,
                      channel: MPI_Comm) {
        if let compressed {
            request = comm.startAllToAll(compressed + range.lowerBound, sendCounts: counts, sendOffsets: offsets,
                                         compressedRows, receiveCounts: receiveCounts, receiveOffsets: receiveOffsets,
                                         datatype: ddp_uint16(), channel: channel)
        } else {
            request = comm.startAllToAll(buffer + range.lowerBound, sendCounts: counts, sendOffsets: offsets,
                                         rows, receiveCounts: receiveCounts, receiveOffsets: receiveOffsets,
                                         datatype: ddp_float(), channel: channel)
        }
    }

    func testScatter(comm: Communicator) -> Bool { comm.test(&request) }
    func waitScatter(comm: Communicator) { comm.wait(&request, bytes: 4 * range.count) }

    /// Adds the ranks' partials of this rank's chunk in the tree order over rank index and
    /// writes the sum into the bucket (rounded to bfloat16 with compression).
    func sumOwnChunk(into buffer: UnsafeMutablePointer<Float>, compressed: UnsafeMutablePointer<UInt16>?) {
        let n = chunk, rows = self.rows
        if compressed != nil { convertFromBFloat16(compressedRows, rows, count: ranks * n) }
        addSlicesInTree(rows, slice: n, count: n, groups: ranks)
        let at = range.lowerBound + Int(offsets[rank])
        if let compressed {
            convertToBFloat16(rows, compressed + at, count: n)
        } else {
            (buffer + at).update(from: rows, count: n)
        }
    }

    func startGather(comm: Communicator, buffer: UnsafeMutablePointer<Float>, compressed: UnsafeMutablePointer<UInt16>?,
                     channel: MPI_Comm) -> MPI_Request? {
        if let compressed {
            return comm.startAllGather(compressed + range.lowerBound, counts: counts, offsets: offsets, datatype: ddp_uint16(), channel: channel)
        }
        return comm.startAllGather(buffer + range.lowerBound, counts: counts, offsets: offsets, datatype: ddp_float(), channel: channel)
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
    /// The reducer a run needs: none for one rank, or for uncompressed gradients reduced by
    /// `MPI_Allreduce` in one blocking call after backward (`bucketBytes` 0); compressed or
    /// fixed-order ones always go through a reducer (one bucket when `bucketBytes` is 0).
    static func make(comm: Communicator, network: Network, bucketBytes: Int, compression: GradientCompression,
                     order: ReductionOrder) -> GradientReducer? {
        guard comm.size > 1, bucketBytes > 0 || compression != .none || order == .fixed else { return nil }
        return GradientReducer(comm: comm, buffer: network.gradients, count: network.parameterCount,
                               bucketBytes: bucketBytes > 0 ? bucketBytes : Int.max, compression: compression, order: order)
    }
}

/// How gradients travel in the all-reduce.
public enum GradientCompression: String, Sendable, Codable, CaseIterable {
    case none
    case bfloat16 = "bf16"
}
