import Dispatch
import Synchronization

/// Fork-join parallelism over a fixed list of tasks.
///
/// Determinism rule: callers split work into tasks by the *shape* of the problem, never by
/// the number of threads, and every output element is written by exactly one task in a
/// fixed order. Which worker runs a task is then irrelevant, so 1 and N threads give
/// bitwise-identical results.
///
///     let pool = WorkerPool(threads: 2)
///     pool.run(tasks: 8) { task, worker in /* write only task's slice; scratch[worker] */ }
public final class WorkerPool: @unchecked Sendable {
    public let threads: Int
    private let nextTask = Atomic<Int>(0)

    public init(threads: Int) {
        precondition(threads >= 1, "a worker pool needs at least one thread")
        self.threads = threads
    }

    /// Runs `body(task, worker)` for every task in 0..<tasks; `worker` is in 0..<threads
    /// and is unique among concurrently running bodies, so it can index per-worker scratch.
    public func run(tasks: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        if tasks <= 0 { return }
        let workers = min(threads, tasks)
        if workers == 1 {
            for t in 0..<tasks { body(t, 0) }
            return
        }
        nextTask.store(0, ordering: .relaxed)
        // concurrentPerform wants a @Sendable closure; the body is only called before
        // concurrentPerform returns, and tasks touch disjoint memory by contract.
        withoutActuallyEscaping(body) { escapable in
            let shared = unsafeBitCast(escapable, to: (@Sendable (Int, Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                while true {
                    let t = self.nextTask.wrappingAdd(1, ordering: .relaxed).oldValue
                    if t >= tasks { break }
                    shared(t, worker)
                }
            }
        }
    }
}
