/// The matrices of Winograd's minimal filtering algorithms F(m×m, 3×3) (Lavin & Gray, "Fast
/// Algorithms for Convolutional Neural Networks", 2015), as 1-D transforms applied to the
/// columns and then the rows of a tile, 16 channels at a time. The forward pass is
///
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
/// for an α×α input block d (α = m + 2) and a 3×3 kernel g; its gradients use the transposes:
/// dU = (Bᵀ d B) ⊙ (A dY Aᵀ) and dg = Gᵀ dU G.
///
/// Each transform reads its inputs through `x(i)` and hands each result to `y(i, value)`.
protocol WinogradTransforms {
    /// The side of an output tile.
    static var m: Int { get }
    /// 2x2 tiles go 24 to a task, 4x4 tiles 12: about 100–200 output pixels either way.
    static var tilesPerTask: Int { get }
    /// Bᵀ·x: α → α.
    static func input(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void)
    /// Aᵀ·x: α → m.
    static func output(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void)
    /// G·x: 3 → α.
    static func weight(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void)
    /// A·x: m → α.
    static func outputGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void)
    /// Gᵀ·x: α → 3.
    static func weightGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void)
}

extension WinogradTransforms {
    static var alpha: Int { m + 2 }
    /// Positions of a transformed tile: α².
    static var positions: Int { alpha * alpha }
}

/// F(2x2, 3x3): 16 products per 4 outputs (2.25× fewer than direct); only adds and halvings.
enum WinogradF2: WinogradTransforms {
    static let m = 2
    static let tilesPerTask = 24

    @inline(__always) static func input(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (d0, d1, d2, d3) = (x(0), x(1), x(2), x(3))
        y(0, d0 - d2); y(1, d1 + d2); y(2, d2 - d1); y(3, d1 - d3)
    }
    @inline(__always) static func output(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (m0, m1, m2, m3) = (x(0), x(1), x(2), x(3))
        y(0, m0 + m1 + m2); y(1, m1 - m2 - m3)
    }
    @inline(__always) static func weight(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (g0, g1, g2) = (x(0), x(1), x(2))
        y(0, g0); y(1, 0.5 * (g0 + g1 + g2)); y(2, 0.5 * (g0 - g1 + g2)); y(3, g2)
    }
    @inline(__always) static func outputGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (e0, e1) = (x(0), x(1))
        y(0, e0); y(1, e0 + e1); y(2, e0 - e1); y(3, -e1)
    }
    @inline(__always) static func weightGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (u0, u1, u2, u3) = (x(0), x(1), x(2), x(3))
        y(0, u0 + 0.5 * (u1 + u2)); y(1, 0.5 * (u1 - u2)); y(2, 0.5 * (u1 + u2) + u3)
    }
}

/// F(4x4, 3x3): 36 products per 16 outputs (4× fewer than direct), with points 0, ±1, ±2, ∞;
/// rounding stays around 1e-6 relative in single precision for activations of CNN scale.
enum WinogradF4: WinogradTransforms {
    static let m = 4
    static let tilesPerTask = 12

    @inline(__always) static func input(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (d0, d1, d2, d3, d4, d5) = (x(0), x(1), x(2), x(3), x(4), x(5))
        let four: SIMD16<Float> = .init(repeating: 4), five: SIMD16<Float> = .init(repeating: 5), two: SIMD16<Float> = .init(repeating: 2)
        let a = d4 - four * d2, b = d3 - four * d1          // rows 1, 2: (d4 − 4d2) ∓ (4d1 − d3)
        let c = d4 - d2, e = two * (d3 - d1)                // rows 3, 4: (d4 − d2) ± 2(d3 − d1)
        y(0, four * d0 - five * d2 + d4)
        y(1, a + b); y(2, a - b)
        y(3, c + e); y(4, c - e)
        y(5, four * d1 - five * d3 + d5)
    }
    @inline(__always) static func output(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (m0, m1, m2, m3, m4, m5) = (x(0), x(1), x(2), x(3), x(4), x(5))
        let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
        y(0, m0 + s12 + s34)
        y(1, d12 + 2 * d34)
        y(2, s12 + 4 * s34)
        y(3, d12 + 8 * d34 + m5)
    }
    @inline(__always) static func weight(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (g0, g1, g2) = (x(0), x(1), x(2))
        y(0, 0.25 * g0)
        y(1, (-1.0 / 6) * (g0 + g1 + g2)); y(2, (-1.0 / 6) * (g0 - g1 + g2))
        let even = (1.0 / 24) * g0 + (1.0 / 6) * g2, odd = (1.0 / 12) * g1
        y(3, even + odd); y(4, even - odd)
        y(5, g2)
    }
    @inline(__always) static func outputGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (e0, e1, e2, e3) = (x(0), x(1), x(2), x(3))
        y(0, e0)
        y(1, e0 + e1 + e2 + e3); y(2, e0 - e1 + e2 - e3)
        y(3, e0 + 2 * e1 + 4 * e2 + 8 * e3); y(4, e0 - 2 * e1 + 4 * e2 - 8 * e3)
        y(5, e3)
    }
    @inline(__always) static func weightGradient(_ x: (Int) -> SIMD16<Float>, _ y: (Int, SIMD16<Float>) -> Void) {
        let (u0, u1, u2, u3, u4, u5) = (x(0), x(1), x(2), x(3), x(4), x(5))
        y(0, 0.25 * u0 - (1.0 / 6) * (u1 + u2) + (1.0 / 24) * (u3 + u4))
        y(1, (1.0 / 6) * (u2 - u1) + (1.0 / 12) * (u3 - u4))
        y(2, (-1.0 / 6) * (u1 + u2) + (1.0 / 6) * (u3 + u4) + u5)
    }
}
