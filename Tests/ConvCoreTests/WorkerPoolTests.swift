import ConvCore
import Foundation
import Testing

@Suite struct WorkerPoolTests {
    /// Thousands of jobs back to back, some after pauses long enough for the helpers to fall
    /// asleep, with 2 and 3 threads: every task runs exactly once per job, and nothing hangs.
    /// Every job waits until each helper has run, so beside a CPU hog and the suite's MPI ranks
    /// each job can wait a scheduler slice: 3000 jobs took over a minute there once (217 s for
    /// both thread counts), so 1500 get 5 minutes. The limit is for a lost wake-up, which would
    /// never finish.
    @Test("every task runs exactly once, whether the helpers spin or sleep between jobs",
          .timeLimit(.minutes(5)), arguments: [2, 3])
    func everyTaskOnce(threads: Int) {
        let pool = WorkerPool(threads: threads)
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        defer { counts.deallocate() }
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for job in 0..<1500 {
            let tasks = Int.random(in: 2...64, using: &rng)
            counts.initialize(repeating: 0, count: 64)
            pool.run(tasks: tasks) { task, worker in
                precondition(worker < threads)
                counts[task] += 1
            }
            if (0..<64).contains(where: { counts[$0] != ($0 < tasks ? 1 : 0) }) { failures += 1 }
            if job % 100 == 0 { usleep(UInt32(WorkerPool.spinTime / 1000) * 2) }
        }
        #expect(failures == 0)
    }

    /// Other tests run beside this one in the same process and start and stop threads of their
    /// own, so the count may move by a few either way; helpers left running would add 40.
    @Test("a released pool stops its helper threads")
    func helpersStop() {
        let before = threadCount()
        for _ in 0..<20 { WorkerPool(threads: 3).run(tasks: 4) { _, _ in } }
        var extra = Int.max
        for _ in 0..<30 where extra > 8 {
            usleep(100_000)
            extra = threadCount() - before
        }
        #expect(extra <= 8, "threads left running: \(extra) more than before 20 pools of 2 helpers each")
    }

    func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
    }
}
