#if canImport(Glibc)
import Glibc
#endif

/// How many compute threads this rank should run, decided from the cores it may use.
///
/// The fair share of a node is its online cores divided by the ranks on it. Open MPI binds
/// each rank to one core when it starts two or fewer ranks, which would leave a lone
/// `mpirun -n 1` rank on one core of a larger node; in that case the binding is widened to
/// the whole node, since no other rank of the job can use those cores.
public struct ThreadPlan: Sendable, CustomStringConvertible {
    public let threads: Int
    public let reason: String

    public var description: String { "\(threads) thread\(threads == 1 ? "" : "s") (\(reason))" }

    public static func decide(requested: Int?, localRanks: Int, launchedByMPI: Bool) -> ThreadPlan {
        if let n = requested { return ThreadPlan(threads: max(1, n), reason: "--threads") }
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let allowed = affinityCount() ?? online
        let fair = max(1, online / max(1, localRanks))
        if allowed >= fair {
            return ThreadPlan(threads: fair, reason: "\(online) cores / \(localRanks) rank(s) on this node")
        }
        if launchedByMPI && localRanks == 1 && widenAffinityToAllCores(online) {
            return ThreadPlan(threads: fair, reason: "only rank on this node; mpirun's core binding widened to \(online) cores")
        }
        return ThreadPlan(threads: allowed, reason: "CPU affinity allows \(allowed) core(s)")
    }

    /// Number of CPUs in this thread's affinity mask.
    static func affinityCount() -> Int? {
        var mask = [UInt8](repeating: 0, count: affinityMaskBytes)
        guard let get = affinityCall("sched_getaffinity"), get(0, mask.count, &mask) == 0 else { return nil }
        return mask.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    static func widenAffinityToAllCores(_ online: Int) -> Bool {
        var mask = [UInt8](repeating: 0, count: affinityMaskBytes)
        for cpu in 0..<min(online, mask.count * 8) { mask[cpu / 8] |= UInt8(1 << (cpu % 8)) }
        guard let set = affinityCall("sched_setaffinity") else { return false }
        return set(0, mask.count, &mask) == 0
    }

    /// 1024 CPUs, the size of glibc's cpu_set_t.
    static let affinityMaskBytes = 128

    /// glibc declares the affinity calls only under _GNU_SOURCE, which Swift's Glibc module
    /// is not built with; they are looked up at run time instead.
    typealias AffinityCall = @convention(c) (Int32, Int, UnsafeMutableRawPointer) -> Int32
    static func affinityCall(_ name: String) -> AffinityCall? {
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: AffinityCall.self)
    }
}
