/// A counter-based random generator: the stream is a pure function of its keys.
///
/// Training must see the same randomness for a sample whichever rank trains it and
/// whenever a run is resumed, so nothing random is drawn from a shared, advancing
/// state. Instead every consumer derives a short stream from the keys that identify
/// it, for example `(seed, .augmentation, epoch, sampleIndex)`:
///
///     var rng = KeyedRandom(seed: 7, stream: .augmentation, 3, 1234)
///     let flip = rng.nextFloat() < 0.5
///
/// The mixing function is SplitMix64's finaliser, which passes BigCrush as a counter hash.
public struct KeyedRandom: Sendable {
    /// What the randomness is for; different purposes never share a stream.
    public enum Stream: UInt64, Sendable {
        case permutation = 1, augmentation = 2, dropout = 3, initialization = 4, synthetic = 5
    }

    private var counter: UInt64

    public init(seed: UInt64, stream: Stream, _ a: UInt64 = 0, _ b: UInt64 = 0) {
        var h = KeyedRandom.mix(0x6A09_E667_F3BC_C909 ^ seed)
        h = KeyedRandom.mix(h ^ stream.rawValue)
        h = KeyedRandom.mix(h ^ a)
        h = KeyedRandom.mix(h ^ b)
        counter = h
    }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        counter &+= 0x9E37_79B9_7F4A_7C15
        return KeyedRandom.mix(counter)
    }

    /// Uniform in [0, 1) with 24 random bits, exactly representable as Float.
    @inline(__always)
    public mutating func nextFloat() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// Uniform in 0..<n (Lemire's multiply-shift; bias below 2^-32 for the n used here).
    @inline(__always)
    public mutating func nextInt(below n: Int) -> Int {
        Int(((next() >> 32) &* UInt64(n)) >> 32)
    }

    /// Standard normal by Box–Muller.
    public mutating func nextGaussian() -> Float {
        let u1 = max(nextFloat(), 0x1p-25)
        let u2 = nextFloat()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
