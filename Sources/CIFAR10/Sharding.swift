import ConvCore

/// The order in which an epoch visits the training set.
///
/// It is a function of `(count, seed, epoch)` alone, never of the world size or of what ran
/// before, so every rank computes the same order without communicating, a resumed run picks
/// up the same order mid-epoch, and 1, 2, 4 or 8 ranks follow the same global trajectory.
/// Fisher–Yates, drawing from `KeyedRandom(seed:stream: .permutation, epoch)`.
public func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    precondition(count >= 0 && count <= Int(Int32.max), "cannot permute \(count) samples")
    return [Int32](unsafeUninitializedCapacity: count) { p, initialized in
        for i in 0..<count { p[i] = Int32(i) }
        var rng = KeyedRandom(seed: seed, stream: .permutation, UInt64(epoch))
        var i = count - 1
        while i > 0 {
            p.swapAt(i, rng.nextInt(below: i + 1))
            i -= 1
        }
        initialized = count
    }
}

/// Why a `ShardPlan` cannot be made.
public enum ShardError: Error, CustomStringConvertible {
    case invalidGlobalBatch(Int)
    case invalidWorldSize(Int)
    case rankOutOfRange(rank: Int, worldSize: Int)
    case indivisible(globalBatch: Int, worldSize: Int)

    public var description: String {
        switch self {
        case .invalidGlobalBatch(let b):
            return "global batch \(b) is invalid; it must be at least 1"
        case .invalidWorldSize(let w):
            return "world size \(w) is invalid; it must be at least 1"
        case let .rankOutOfRange(rank, w):
            return "rank \(rank) is out of range for \(w) ranks (expected 0...\(w - 1))"
        case let .indivisible(b, w):
            let below = b / w * w
            let suggestion = below > 0 ? "\(below) or \(below + w)" : "\(w)"
            return "global batch \(b) is not divisible by \(w) ranks; every rank must train the same "
                + "number of samples per step, so use a multiple of \(w) (e.g. \(suggestion))"
        }
    }
}

/// Which samples one rank trains on at each step.
///
/// Training is defined by the global batch B: global step s takes positions
/// `s*B ..< (s+1)*B` of the epoch permutation, and rank r takes the r-th contiguous B/W slice.
/// The ranks' slices therefore tile the global batch exactly, and changing W changes only who
/// computes which gradient, not which samples form a step.
public struct ShardPlan: Sendable, Equatable {
    public let globalBatch: Int
    public let worldSize: Int
    public let rank: Int

    public init(globalBatch: Int, worldSize: Int, rank: Int) throws {
        guard worldSize >= 1 else { throw ShardError.invalidWorldSize(worldSize) }
        guard globalBatch >= 1 else { throw ShardError.invalidGlobalBatch(globalBatch) }
        guard (0..<worldSize).contains(rank) else { throw ShardError.rankOutOfRange(rank: rank, worldSize: worldSize) }
        guard globalBatch % worldSize == 0 else {
            throw ShardError.indivisible(globalBatch: globalBatch, worldSize: worldSize)
        }
        self.globalBatch = globalBatch
        self.worldSize = worldSize
        self.rank = rank
    }

    /// Samples this rank trains on per step (B/W).
    public var localBatch: Int { globalBatch / worldSize }

    /// Whole global batches in an epoch. The last partial batch is dropped so every rank runs
    /// the same number of steps and no collective waits for a rank that has run out of data.
    public func stepsPerEpoch(samples: Int) -> Int {
        samples / globalBatch
    }

    /// Positions in the epoch permutation (not sample indices) that this rank trains on at `step`.
    public func localRange(step: Int) -> Range<Int> {
        let start = step * globalBatch + rank * localBatch
        return start..<(start + localBatch)
    }
}
