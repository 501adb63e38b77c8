/// The one order in which every sum over the samples of a batch is taken (weight and bias
/// gradients, batch norm's statistics), so that 1, 2, 4 or 8 ranks produce the same bits.
///
/// The global batch is cut into groups of `size` consecutive samples. Each group's sum is formed
/// on its own (in sample order, by one task), and the group sums are combined in a balanced
/// binary tree over group index: [lo, hi) is the sum of [lo, mid) and [mid, hi), mid the middle.
/// A rank holding a contiguous slice of groups computes a subtree of that tree when the world
/// size is a power of two dividing the group count, and the cross-rank sum finishes the tree in
/// the same shape (`combineInTree` over ranks). The size comes from the run's configuration,
/// never from the world size or the thread count.
///
///     let groups = SampleGroups(size: 8)
///     for g in 0..<groups.count(batch: 64) { /* partial[g] = Σ over groups.samples(g, batch: 64) */ }
///     SampleGroups.combineInTree(groups.count(batch: 64)) { into, from in /* partial[into] += partial[from] */ }
public struct SampleGroups: Sendable, Equatable {
    /// Samples per group (the last group of a batch that is not a multiple is shorter).
    public let size: Int

    public init(size: Int) {
        precondition(size >= 1, "a sample group holds at least one sample")
        self.size = size
    }

    /// Groups per global batch when the run does not choose: 8 where 8 divides the batch (so
    /// 1, 2, 4 and 8 ranks agree), else as many as the batch's power-of-two factor allows.
    public static let defaultGroupCount = 8

    /// The default grouping of `globalBatch`: `defaultGroupCount` groups, or fewer when the
    /// batch has a smaller power-of-two factor (an odd batch is one group).
    public static func standard(globalBatch: Int) -> SampleGroups {
        var groups = defaultGroupCount
        while groups > 1 && globalBatch % groups != 0 { groups /= 2 }
        return SampleGroups(size: max(1, globalBatch / groups))
    }

    /// Groups of a batch of `batch` samples.
    public func count(batch: Int) -> Int { (batch + size - 1) / size }

    /// The samples of group `group`.
    public func samples(_ group: Int, batch: Int) -> Range<Int> { (group * size)..<min(batch, (group + 1) * size) }

    /// Combines `count` partial results in the fixed tree order by calling `add(into, from)`
    /// (partial[into] += partial[from]); the total ends up in partial 0. Addition is commutative
    /// in floating point, so only the tree's shape matters, not which side is added to which.
    @inline(__always)
    public static func combineInTree(_ count: Int, _ add: (_ into: Int, _ from: Int) -> Void) {
        combineInTree(0..<count, add)
    }

    public static func combineInTree(_ range: Range<Int>, _ add: (_ into: Int, _ from: Int) -> Void) {
        guard range.count > 1 else { return }
        let mid = range.lowerBound + (range.count + 1) / 2
        combineInTree(range.lowerBound..<mid, add)
        combineInTree(mid..<range.upperBound, add)
        add(range.lowerBound, mid)
    }

    /// The same tree formed group by group in `treeSlots(count)` slots instead of one per group:
    /// `form(group, slot)` computes a group's partial into a slot, `add(into, from)` adds one slot
    /// to another, and the total ends in slot 0. For partials too large to hold all at once.
    ///
    ///     SampleGroups.sumInTree(8, form: { g, slot in /* slot ← Σ over group g */ },
    ///                            add: { into, from in /* slot[into] += slot[from] */ })
    public static func sumInTree(_ count: Int, form: (_ group: Int, _ slot: Int) -> Void, add: (_ into: Int, _ from: Int) -> Void) {
        func sum(_ range: Range<Int>, slot: Int) {
            guard range.count > 1 else { form(range.lowerBound, slot); return }
            let mid = range.lowerBound + (range.count + 1) / 2
            sum(range.lowerBound..<mid, slot: slot)
            sum(mid..<range.upperBound, slot: slot + 1)
            add(slot, slot + 1)
        }
        if count > 0 { sum(0..<count, slot: 0) }
    }

    /// Slots `sumInTree` uses for `count` groups: one per level of the tree.
    public static func treeSlots(_ count: Int) -> Int { count <= 1 ? 1 : Int.bitWidth - (count - 1).leadingZeroBitCount + 1 }

    /// Whether `worldSize` ranks, each holding an equal contiguous share of a global batch of
    /// `globalBatch`, compute exactly the tree of one rank: a power of two that divides the
    /// group count (so every rank's share is whole groups forming a subtree).
    public func treeIsIndependent(ofWorldSize worldSize: Int, globalBatch: Int) -> Bool {
        guard worldSize >= 1, worldSize & (worldSize - 1) == 0, globalBatch % size == 0 else { return false }
        return count(batch: globalBatch) % worldSize == 0
    }
}

/// Adds `groups` slices of `partials` (`slice` floats apart) in the tree order of
/// `SampleGroups.combineInTree`, leaving the total in slice 0; only the first `count` floats of
/// each slice are added. One thread; `addSlicesInTree(_:slice:count:groups:pool:)` splits it.
public func addSlicesInTree(_ partials: UnsafeMutablePointer<Float>, slice: Int, count: Int, groups: Int) {
    SampleGroups.combineInTree(groups) { into, from in addInPlace(partials + into * slice, partials + from * slice, count: count) }
}

/// The same for double-precision partials (batch norm's statistics, their sums across ranks).
public func addSlicesInTree(_ partials: UnsafeMutablePointer<Double>, slice: Int, count: Int, groups: Int) {
    SampleGroups.combineInTree(groups) { into, from in
        let dst = partials + into * slice, src = partials + from * slice
        for j in 0..<count { dst[j] += src[j] }
    }
}

/// The same over the pool: only the first `count` floats of each slice (all of it by default),
/// in chunks that are independent tasks, so nothing depends on the thread count.
func addSlicesInTree(_ partials: UnsafeMutablePointer<Float>, slice: Int, count: Int? = nil, groups: Int, pool: WorkerPool) {
    if groups <= 1 { return }
    forEachChunk(count ?? slice, pool: pool) { start, end in
        addSlicesInTree(partials + start, slice: slice, count: end - start, groups: groups)
    }
}
