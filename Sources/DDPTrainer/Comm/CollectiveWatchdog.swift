import Foundation

/// Turns a collective that never completes into a message and the end of the job.
///
/// MPI collectives block until every rank joins. If a rank is killed, mpirun ends the job by
/// itself; but a rank that stalls (stopped, swapping, cut off from the network) would leave
/// the others waiting forever. Each collective is bracketed by `begin`/`end`; a thread
/// checks twice a second and, once one has lasted longer than the timeout, reports what was
/// being waited on and exits the process, which makes mpirun end every other rank.
final class CollectiveWatchdog: @unchecked Sendable {
    enum Collective: String {
        case startup = "start-up (MPI_Init: reaching this host's Open MPI daemon and every other rank)"
        case gradientAllReduce = "all-reduce of the gradients"
        case statisticsAllReduce = "all-reduce of statistics (setup status, test losses and counts)"
        case batchNormAllReduce = "all-reduce of batch norm statistics"
        case broadcast = "broadcast from rank 0 (parameters, optimizer state, resume point)"
        case replicaCheck = "comparison of the replicas' parameter checksums"
        case stepExchange = "exchange of the step's losses, accuracy counts and stop signals"
        case barrier = "barrier"
    }

    let timeout: Double
    let rank: Int
    private let lock = NSLock()
    private var current: Collective?
    private var started: UInt64 = 0
    private var bytes = 0
    /// The global step in progress, for the message; set by the training loop.
    var step = 0

    init(timeout: Double, rank: Int) {
        self.timeout = timeout
        self.rank = rank
        guard timeout > 0 else { return }
        let thread = Thread { [weak self] in
            while let watchdog = self {
                watchdog.check()
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        thread.name = "ddptrain.watchdog"
        thread.start()
    }

    @inline(__always) func begin(_ collective: Collective, bytes: Int = 0) {
        lock.lock()
        current = collective
        started = DispatchTime.now().uptimeNanoseconds
        self.bytes = bytes
        lock.unlock()
    }

    @inline(__always) func end() {
        lock.lock()
        current = nil
        lock.unlock()
    }

    private func check() {
        lock.lock()
        let waiting = current, since = started, size = bytes, atStep = step
        lock.unlock()
        guard let waiting else { return }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
        guard seconds > timeout else { return }
        let payload = size > 0 ? String(format: " (%.1f MB)", Double(size) / 1e6) : ""
        let when = waiting == .startup ? "" : " at global step \(atStep)"
        let message = """
            error: rank \(rank): the \(waiting.rawValue)\(payload)\(when) has not completed \
            after \(Int(seconds)) s (--collective-timeout \(Int(timeout))): another rank died, stalled or lost \
            its network. Ending the job; rerun the same command to resume from the last checkpoint.

            """
        FileHandle.standardError.write(Data(message.utf8))
        // Exiting (rather than MPI_Abort from a non-MPI thread) is always safe; mpirun then
        // terminates the remaining ranks.
        _exit(75)
    }
}
