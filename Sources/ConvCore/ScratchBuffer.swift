/// Scratch that grows when a larger size is reserved (its contents are not kept): floats, or
/// the 32-bit bfloat16 pairs of the bf16 products. Workspaces reserve while a network is
/// built, so that no training step allocates.
final class ScratchBuffer<Element: ExpressibleByIntegerLiteral>: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity = 1

    init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: 0)
    }

    /// Grows to at least `count` elements, set to zero when `zeroed`.
    func reserve(_ count: Int, zeroed: Bool = false) {
        guard count > capacity else { return }
        pointer.deallocate()
        pointer = .allocate(capacity: count)
        if zeroed { pointer.initialize(repeating: 0, count: count) }
        capacity = count
    }

    deinit { pointer.deallocate() }
}
