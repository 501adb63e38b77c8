import CMPI
import ConvCore
import Foundation

/// The only file that talks to MPI. Every rank holds one; without mpirun it is a world of one
/// (Open MPI's singleton mode), so the same code path serves both.
public final class Communicator: BatchStatisticsReducer {
    public let rank: Int
    public let size: Int
    /// Ranks sharing this node, from Open MPI's environment (1 when not launched by mpirun).
    public let localSize: Int
    public var isRoot: Bool { rank == 0 }

    private let world: MPI_Comm
    private let watchdog: CollectiveWatchdog?

    /// The global step in progress, named by the watchdog's message if a collective hangs.
    public var step: Int {
        get { watchdog?.step ?? 0 }
        set { watchdog?.step = newValue }
    }

    @inline(__always)
    private func watched<T>(_ collective: CollectiveWatchdog.Collective, bytes: Int = 0, _ body: () -> T) -> T {
        watchdog?.begin(collective, bytes: bytes)
        defer { watchdog?.end() }
        return body()
    }

    /// Open MPI settings ddptrain uses unless the user sets them (MCA parameters are read from
    /// the environment at MPI_Init). Measured on a 1 Gbit/s TCP link (BENCHMARKS.md): libnbc
    /// otherwise runs every in-place `MPI_Iallreduce` as a binomial tree, a reduce and then a
    /// broadcast, which halves the bandwidth and barely progresses during backward; and TCP's
    /// rendezvous handshake for messages above 64 KiB stalls each bucket until both sides call
    /// into MPI. On one node's shared memory neither changes anything.
    static let defaultParameters = [
        "coll_libnbc_iallreduce_algorithm": "1",  // ring
        "btl_tcp_eager_limit": "8388608",
        "btl_tcp_rndv_eager_limit": "8388608",
        "btl_tcp_max_send_size": "8388608",
    ]

    /// Joins the job. Start-up (MPI_Init, which waits for this rank's daemon and every other
    /// rank's address) or any collective lasting longer than `collectiveTimeout` seconds ends the
    /// job with a message (0: wait forever).
    public init(collectiveTimeout: Double = 0) {
        for (name, value) in Communicator.defaultParameters { setenv("OMPI_MCA_" + name, value, 0) }
        let launcherRank = Communicator.environmentInt("OMPI_COMM_WORLD_RANK") ?? 0
        let watchdog = collectiveTimeout > 0 ? CollectiveWatchdog(timeout: collectiveTimeout, rank: launcherRank) : nil
        watchdog?.begin(.startup)
        var provided: Int32 = 0
        // Worker threads compute between MPI calls but only the main thread calls MPI.
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        world = ddp_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        localSize = Communicator.environmentInt("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1
        watchdog?.end()
        self.watchdog = watchdog
    }

    /// Open MPI's launcher variables, readable before MPI_Init (used to size thread pools).
    public static func environmentInt(_ name: String) -> Int? {
        guard let v = getenv(name) else { return nil }
        return Int(String(cString: v))
    }

    /// Copies rank 0's `count` floats into every other rank's buffer.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        if size == 1 { return }
        watched(.broadcast, bytes: 4 * count) {
            forEachMessage(count) { offset, n in
                MPI_Bcast(buffer + offset, n, ddp_float(), 0, world)
            }
        }
    }

    /// Rank 0's small values, on every rank.
    public func broadcast(_ values: [Double]) -> [Double] {
        if size == 1 { return values }
        var v = values
        watched(.broadcast) { _ = MPI_Bcast(&v, Int32(v.count), ddp_double(), 0, world) }
        return v
    }

    /// In-place element-wise sum across ranks.
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        if size == 1 { return }
        watched(.gradientAllReduce, bytes: 4 * count) {
            forEachMessage(count) { offset, n in
                MPI_Allreduce(ddp_in_place(), buffer + offset, n, ddp_float(), ddp_sum(), world)
            }
        }
    }

    /// Starts an in-place sum across ranks of `count` floats (fewer than 2^31); complete it
    /// with `waitAll`.
    func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> MPI_Request? {
        var request: MPI_Request? = ddp_request_null()
        MPI_Iallreduce(ddp_in_place(), buffer, Int32(count), ddp_float(), ddp_sum(), world, &request)
        return request
    }

    /// Starts an in-place sum across ranks of `count` bfloat16 values (fewer than 2^31), each
    /// addition rounded back to bfloat16; complete it with `waitAll`.
    func startAllReduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) -> MPI_Request? {
        var request: MPI_Request? = ddp_request_null()
        MPI_Iallreduce(ddp_in_place(), buffer, Int32(count), ddp_uint16(), bfloat16Sum, world, &request)
        return request
    }

    /// MPI has no bfloat16 type; this user-defined operation adds uint16s as bfloat16.
    private lazy var bfloat16Sum: MPI_Op? = {
        var op: MPI_Op? = nil
        MPI_Op_create({ input, inout_, length, _ in
            guard let input, let inout_, let length else { return }
            let a = input.assumingMemoryBound(to: UInt16.self), b = inout_.assumingMemoryBound(to: UInt16.self)
            for i in 0..<Int(length.pointee) { b[i] = bfloat16(float(bfloat16: a[i]) + float(bfloat16: b[i])) }
        }, 1, &op)
        return op
    }()

    /// Lets MPI progress outstanding requests without waiting for them.
    func testAll(_ requests: inout [MPI_Request?], count: Int) {
        var done: Int32 = 0
        MPI_Testall(Int32(count), &requests, &done, ddp_statuses_ignore())
    }

    func waitAll(_ requests: inout [MPI_Request?], count: Int, bytes: Int) {
        watched(.gradientAllReduce, bytes: bytes) {
            _ = MPI_Waitall(Int32(count), &requests, ddp_statuses_ignore())
        }
    }

    public var ranks: Int { size }

    /// Batch norm's per-channel sums, summed in place across ranks (double precision): every
    /// rank gathers all ranks' values and adds them in `SampleGroups`' tree order over rank
    /// index, so the totals are the same bits on every rank and, for a power-of-two world size,
    /// those of one rank summing the whole batch.
    public func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) {
        if size == 1 { return }
        if gathered.count < size * count { gathered = [Double](repeating: 0, count: size * count) }
        gathered.withUnsafeMutableBufferPointer { all in
            let rows = all.baseAddress!
            allGather(values, count: count, into: rows, as: .batchNormAllReduce)
            addSlicesInTree(rows, slice: count, count: count, groups: size)
            values.update(from: rows, count: count)
        }
    }

    /// Every rank's `count` values, rank after rank, into `rows` (`size × count` values) on every rank.
    func allGather(_ values: UnsafePointer<Double>, count: Int, into rows: UnsafeMutablePointer<Double>,
                          as collective: CollectiveWatchdog.Collective = .stepExchange) {
        if size == 1 { rows.update(from: values, count: count); return }
        watched(collective, bytes: 8 * count) {
            _ = MPI_Allgather(values, Int32(count), ddp_double(), rows, Int32(count), ddp_double(), world)
        }
    }

    /// Every rank's batch norm sums, gathered (kept between calls so that no step allocates).
    private var gathered: [Double] = []

    /// A communicator of the same ranks for a stream of collectives of its own: non-blocking
    /// collectives must be started in the same order on every rank of a communicator, and the
    /// fixed-order reducer's two phases progress independently. Collective: every rank calls it
    /// at the same point.
    func makeChannel() -> MPI_Comm {
        var channel: MPI_Comm? = nil
        MPI_Comm_dup(world, &channel)
        return channel!
    }

    /// Starts an all-to-all on `channel`: rank r receives `sendCounts[r]` elements of `datatype` from
    /// `send + sendOffsets[r]` of every rank, into `receive + receiveOffsets[q]` for the sender q.
    /// The arrays must stay valid until the request completes.
    func startAllToAll(_ send: UnsafeRawPointer, sendCounts: UnsafePointer<Int32>, sendOffsets: UnsafePointer<Int32>,
                       _ receive: UnsafeMutableRawPointer, receiveCounts: UnsafePointer<Int32>, receiveOffsets: UnsafePointer<Int32>,
                       datatype: MPI_Datatype, channel: MPI_Comm) -> MPI_Request? {
        var request: MPI_Request? = ddp_request_null()
        MPI_Ialltoallv(send, sendCounts, sendOffsets, datatype, receive, receiveCounts, receiveOffsets, datatype, channel, &request)
        return request
    }

    /// Starts an in-place all-gather on `channel`: rank r's `counts[r]` elements at `buffer + offsets[r]` reach every rank.
    func startAllGather(_ buffer: UnsafeMutableRawPointer, counts: UnsafePointer<Int32>, offsets: UnsafePointer<Int32>,
                        datatype: MPI_Datatype, channel: MPI_Comm) -> MPI_Request? {
        var request: MPI_Request? = ddp_request_null()
        MPI_Iallgatherv(ddp_in_place(), 0, datatype, buffer, counts, offsets, datatype, channel, &request)
        return request
    }

    /// Whether `request` has completed (it becomes null then); lets MPI progress it otherwise.
    func test(_ request: inout MPI_Request?) -> Bool {
        var done: Int32 = 0
        MPI_Test(&request, &done, ddp_status_ignore())
        return done != 0
    }

    /// Waits for one request of the gradient reduction (watched like `waitAll`).
    func wait(_ request: inout MPI_Request?, bytes: Int) {
        watched(.gradientAllReduce, bytes: bytes) { _ = MPI_Wait(&request, ddp_status_ignore()) }
    }

    /// Sums small statistics (setup status, test losses and counts) across ranks, in double precision.
    public func allReduceSum(_ values: [Double]) -> [Double] {
        if size == 1 { return values }
        var v = values
        watched(.statisticsAllReduce) { _ = MPI_Allreduce(ddp_in_place(), &v, Int32(v.count), ddp_double(), ddp_sum(), world) }
        return v
    }

    /// (minimum, maximum) of one value over all ranks.
    public func allReduceRange(_ value: Int64) -> (min: Int64, max: Int64) {
        if size == 1 { return (value, value) }
        var lo = value, hi = value
        watched(.replicaCheck) {
            MPI_Allreduce(ddp_in_place(), &lo, 1, ddp_int64(), ddp_min(), world)
            MPI_Allreduce(ddp_in_place(), &hi, 1, ddp_int64(), ddp_max(), world)
        }
        return (lo, hi)
    }

    public func barrier() { watched(.barrier) { _ = MPI_Barrier(world) } }

    /// A barrier whose waiting ranks sleep instead of polling, leaving their cores to a rank
    /// that is still computing (the benchmark's single-rank baseline runs on rank 0 alone).
    public func sleepingBarrier() {
        if size == 1 { return }
        watched(.barrier) {
            var request: MPI_Request? = ddp_request_null()
            MPI_Ibarrier(world, &request)
            var done: Int32 = 0
            while true {
                MPI_Test(&request, &done, ddp_status_ignore())
                if done != 0 { break }
                usleep(500)
            }
        }
    }

    /// Collective: succeeds only if `local` succeeded on every rank. The error is printed once —
    /// by rank 0 when it failed too (every rank then failed alike), else by each failing rank —
    /// and every rank gets `SetupFailed`, so all of them can exit cleanly instead of some
    /// waiting forever in the next collective.
    public func agreeOnSetup<T>(_ local: Result<T, Error>) throws -> T {
        let failedHere: Double = if case .failure = local { 1 } else { 0 }
        let totals = allReduceSum([failedHere, isRoot ? failedHere : 0])
        if case let .failure(error) = local, isRoot || totals[1] == 0 { report(error) }
        switch local {
        case let .success(value) where totals[0] == 0: return value
        default: throw SetupFailed()
        }
    }

    /// Runs `body` (the training); if it throws on this rank, say a full disk at rank 0's
    /// checkpoint, the other ranks are waiting for it in a collective and it must not wait for
    /// them in MPI_Finalize: the error is printed here and the whole job ends at once.
    public func endingJobOnError<T>(_ body: () throws -> T) throws -> T {
        if size == 1 { return try body() }
        do {
            return try body()
        } catch {
            report(error)
            abort(code: 1)
        }
    }

    /// `error: MESSAGE` on stderr, naming the rank when it is not rank 0.
    private func report(_ error: Error) {
        let prefix = size > 1 && !isRoot ? "rank \(rank): " : ""
        FileHandle.standardError.write(Data("error: \(prefix)\(error)\n".utf8))
    }

    /// Ends every rank of the job (used when one rank cannot go on and the others would wait forever).
    public func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }

    public func finish() { MPI_Finalize() }

    /// MPI counts are Int32: split larger buffers.
    private func forEachMessage(_ count: Int, _ body: (Int, Int32) -> Void) {
        let limit = Int(Int32.max / 2)
        var offset = 0
        while offset < count {
            let n = min(limit, count - offset)
            body(offset, Int32(n))
            offset += n
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Setup failed on some rank; the reason has already been printed.
public struct SetupFailed: Error {}
