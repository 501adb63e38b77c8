/// `count` elements (at least one) starting on a 64-byte boundary: a cache line, and one zmm
/// register. glibc's large blocks start 16 bytes past a page, so a plain `allocate(capacity:)`
/// made every 512-bit access straddle two cache lines (and every second 256-bit one); that cost
/// the Winograd layers 6–9 %. Free it with `deallocate()` as usual.
///
///     let activations = allocateAligned(Float.self, capacity: batch * pixels * channels)
public func allocateAligned<Element>(_: Element.Type, capacity count: Int) -> UnsafeMutablePointer<Element> {
    let count = max(count, 1)
    return UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Element>.stride, alignment: 64)
        .bindMemory(to: Element.self, capacity: count)
}

/// Scratch that grows when a larger size is reserved (its contents are not kept): floats, or
/// the 32-bit bfloat16 pairs of the bf16 products. Workspaces reserve while a network is
/// built, so that no training step allocates.
final class ScratchBuffer<Element: ExpressibleByIntegerLiteral>: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Element>
    private(set) var capacity = 1

    init() {
        pointer = allocateAligned(Element.self, capacity: 1)
        pointer.initialize(to: 0)
    }

    /// Grows to at least `count` elements, set to zero when `zeroed`.
    func reserve(_ count: Int, zeroed: Bool = false) {
        guard count > capacity else { return }
        pointer.deallocate()
        pointer = allocateAligned(Element.self, capacity: count)
        if zeroed { pointer.initialize(repeating: 0, count: count) }
        capacity = count
    }

    deinit { pointer.deallocate() }
}
