import Dispatch
import Foundation
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
///
/// The calling thread is worker 0; `threads − 1` helper threads are started once. Between
/// jobs a helper spins for a short while (`spinTime`) before it sleeps: a training step runs a
/// few dozen parallel regions back to back, and waking a sleeping thread costs 15–20 µs on
/// this kind of VM (../shared/SWIFT-NOTES.md), as much as a small layer's whole work.
public final class WorkerPool: @unchecked Sendable {
    public let threads: Int
    private let shared: Shared
    /// Double-precision per-task partial sums of reductions whose callers pass no scratch
    /// (batch-norm statistics): valid between a kernel's start and end, like the pool itself,
    /// which runs one job at a time.
    private var partials: UnsafeMutablePointer<Double>
    private var partialCapacity = 0

    /// The partition of a batch into sample groups that every reduction over samples run on
    /// this pool follows (weight gradients, batch norm's sums; see `SampleGroups`). Set it before
    /// the buffers are sized (`ConvWorkspace.reserve`): the partial sums take one slice per group.
    /// The default, one sample per group, fixes an order too; a trainer sets its run's grouping.
    public var sampleGroups = SampleGroups(size: 1)

    /// How long an idle helper polls for the next job before it sleeps.
    public static let spinTime: UInt64 = 200_000  // ns

    public init(threads: Int) {
        precondition(threads >= 1, "a worker pool needs at least one thread")
        self.threads = threads
        shared = Shared(helpers: threads - 1)
        partials = allocateAligned(Double.self, capacity: 1)
        for worker in 1..<max(threads, 1) {
            let shared = self.shared
            let thread = Thread { shared.helperLoop(worker: worker) }
            thread.name = "ddptrain.worker\(worker)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        shared.stop()
        partials.deallocate()
    }

    /// At least `count` doubles of scratch for per-task partial sums (contents undefined), for
    /// kernels that reduce over a batch in a fixed order. It grows on the first call for the
    /// largest shape and is reused after that, so a training step allocates only in its first
    /// iteration; `reservePartialSums` sizes it up front. Call it on the calling thread, outside `run`.
    func partialSums(_ count: Int) -> UnsafeMutablePointer<Double> {
        reservePartialSums(count)
        return partials
    }

    /// Grows the partial-sum scratch to `count` doubles now (e.g. while a network is built; see
    /// `NormShape.partialSumCount`), so that no later kernel call allocates.
    public func reservePartialSums(_ count: Int) {
        guard count > partialCapacity else { return }
        partials.deallocate()
        partials = allocateAligned(Double.self, capacity: count)
        partialCapacity = count
    }

    /// Runs `body(task, worker)` for every task in 0..<tasks; `worker` is in 0..<threads
    /// and is unique among concurrently running bodies, so it can index per-worker scratch.
    public func run(tasks: Int, _ body: (_ task: Int, _ worker: Int) -> Void) {
        if tasks <= 0 { return }
        if threads == 1 || tasks == 1 {
            for t in 0..<tasks { body(t, 0) }
            return
        }
        // The helpers call `body` only between `start` and `finish`, which returns after every
        // helper has left it; tasks touch disjoint memory by contract.
        withoutActuallyEscaping(body) { escapable in
            shared.start(tasks: tasks, body: unsafeBitCast(escapable, to: (@Sendable (Int, Int) -> Void).self))
            shared.work(worker: 0)
            shared.finish()
        }
    }
}

/// The state the caller and the helpers share (the helpers hold this, not the pool, so the
/// pool can be released and stop them).
private final class Shared: @unchecked Sendable {
    let helpers: Int
    /// Bumped to publish a job (or the stop request); helpers remember the last one they ran.
    let generation = Atomic<Int>(0)
    let nextTask = Atomic<Int>(0)
    /// Helpers done with the current generation.
    let done = Atomic<Int>(0)
    /// Helpers asleep (or about to be) on `wake`; changed only under its lock.
    let sleepers = Atomic<Int>(0)
    let wake = NSCondition()
    let stopping = Atomic<Bool>(false)
    var tasks = 0
    var body: (@Sendable (Int, Int) -> Void)?

    init(helpers: Int) { self.helpers = helpers }

    func start(tasks: Int, body: @escaping @Sendable (Int, Int) -> Void) {
        self.tasks = tasks
        self.body = body
        nextTask.store(0, ordering: .sequentiallyConsistent)
        done.store(0, ordering: .sequentiallyConsistent)
        publish()
    }

    func work(worker: Int) {
        guard let body else { return }
        while true {
            let t = nextTask.wrappingAdd(1, ordering: .relaxed).oldValue
            if t >= tasks { break }
            body(t, worker)
        }
    }

    /// Waits until every helper has left the current job.
    func finish() {
        var spins = 0
        while done.load(ordering: .sequentiallyConsistent) < helpers {
            // A helper that is not running (more threads than cores) needs this core.
            spins += 1
            if spins & 1023 == 0 { sched_yield() }
        }
        body = nil
    }

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        publish()
    }

    /// A helper that read the old generation after announcing itself asleep is woken by the
    /// broadcast; one that announced itself later reads the new generation and does not sleep.
    private func publish() {
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            wake.lock()
            wake.broadcast()
            wake.unlock()
        }
    }

    func helperLoop(worker: Int) {
        var seen = 0
        while true {
            // Spin for the next job for a while, then sleep until it is published.
            let spinUntil = DispatchTime.now().uptimeNanoseconds + WorkerPool.spinTime
            var spins = 0
            while generation.load(ordering: .sequentiallyConsistent) == seen {
                spins += 1
                if spins & 1023 == 0 { sched_yield() }
                if spins & 1023 == 0 && DispatchTime.now().uptimeNanoseconds > spinUntil {
                    wake.lock()
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    wake.unlock()
                }
            }
            seen = generation.load(ordering: .sequentiallyConsistent)
            if stopping.load(ordering: .sequentiallyConsistent) { return }
            work(worker: worker)
            done.add(1, ordering: .sequentiallyConsistent)
        }
    }
}
