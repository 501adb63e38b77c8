import Foundation
import Synchronization

/// SIGTERM, SIGINT and SIGUSR1 ask the training to stop: the first one is only recorded (the
/// training loop polls `received` once a step and stops with a checkpoint), a second one ends
/// the process at once.
///
/// The handler does nothing but async-signal-safe work: lock-free atomics, write(2), and on a
/// second signal the default action restored and the signal raised again, so the process dies
/// of it as it would have without us. Swift 6's concurrency checking accepts the shared state
/// because `Atomic` is `Sendable`; the handler is a C function pointer that captures nothing.
public enum StopSignal {
    /// Exit status of a run that stopped on request with its checkpoint saved: distinct from
    /// success (0), an error (1), a command-line mistake (64) and the collective watchdog (75),
    /// and what cluster/slurm.sbatch tests to requeue the job.
    public static let exitStatus: Int32 = 3

    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// The first stop signal's number, 0 while none has arrived.
    private static let first = Atomic<Int32>(0)
    /// Set once the stop's checkpoint is saved: from then on a signal ends the process quietly
    /// with `exitStatus` (mpirun sends SIGTERM to the other ranks as soon as one has exited).
    private static let saved = Atomic<Bool>(false)

    /// Installs the handler for `signals` (once, before training starts; idempotent).
    public static func install() {
        // Initialise the globals now, never inside the handler.
        _ = first.load(ordering: .relaxed)
        _ = saved.load(ordering: .relaxed)
        _ = exitStatus
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = handle
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signal, &action, nil)
        }
    }

    /// The stop is done and its checkpoint saved: what is left is MPI_Finalize and the exit.
    public static func stopCompleted() { saved.store(true, ordering: .relaxed) }

    /// The signal that asked to stop on this process, or 0.
    public static var received: Int32 { first.load(ordering: .relaxed) }

    /// "SIGTERM", "SIGINT", "SIGUSR1" (or the number of another signal).
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGUSR1: "SIGUSR1"
        default: "signal \(signal)"
        }
    }

    private static let handle: @convention(c) (Int32) -> Void = { signal in
        let (exchanged, _) = first.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
        if exchanged { return }
        if saved.load(ordering: .relaxed) { _exit(exitStatus) }
        let message: StaticString = "ddptrain: second stop signal: ending now without a checkpoint\n"
        _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = SIG_DFL
        sigemptyset(&action.sa_mask)
        sigaction(signal, &action, nil)
        raise(signal)
    }
}
