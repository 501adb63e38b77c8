/// What the ranks tell each other after every step, in one all-gather: each rank's stop signal
/// (`StopSignal`), correct answers and every sample's loss.
///
/// Every rank then holds the step's totals over the global batch, added in global sample
/// order, so the loss in the progress line, TensorBoard, metrics.jsonl and the checkpoint is
/// the same bits for 1, 2, 4, 8 or any other number of ranks (a rank's own partial sum would
/// differ with its share of the batch). Every rank agrees on the stop at the same step, and
/// needs no other collective to log or checkpoint the epoch's sums.
///
///     let exchange = StepExchange(comm: comm, localBatch: 32)
///     let totals = exchange.exchange(signal: StopSignal.received, correct: 30, losses: network.sampleLosses)
///     // totals.lossSum: the 64 samples' losses, added in sample order, on every rank
final class StepExchange {
    struct Totals {
        /// The largest signal number any rank received (0: none).
        var signal: Int32
        var correct: Int
        var lossSum: Double
    }

    private let comm: Communicator
    private let localBatch: Int
    /// This rank's row: signal, correct answers, then the losses; and every rank's rows.
    private let row: UnsafeMutablePointer<Double>
    private let rows: UnsafeMutablePointer<Double>

    private var rowLength: Int { 2 + localBatch }

    init(comm: Communicator, localBatch: Int) {
        self.comm = comm
        self.localBatch = localBatch
        row = .allocate(capacity: 2 + localBatch)
        rows = .allocate(capacity: comm.size * (2 + localBatch))
    }

    deinit {
        row.deallocate()
        rows.deallocate()
    }

    /// Collective, after every step; `losses` holds this rank's `localBatch` sample losses.
    func exchange(signal: Int32, correct: Int, losses: UnsafePointer<Double>) -> Totals {
        row[0] = Double(signal)
        row[1] = Double(correct)
        (row + 2).update(from: losses, count: localBatch)
        comm.allGather(row, count: rowLength, into: rows)
        var totals = Totals(signal: 0, correct: 0, lossSum: 0)
        // Ranks hold consecutive slices of the global batch, so rank order is sample order.
        for r in 0..<comm.size {
            let theirs = rows + r * rowLength
            totals.signal = max(totals.signal, Int32(theirs[0]))
            totals.correct += Int(theirs[1])
            for i in 0..<localBatch { totals.lossSum += theirs[2 + i] }
        }
        return totals
    }
}
