import Foundation

/// Convolutions whose output has at most 4 pixels (VGG-11's last layers, at 2x2): the forward
/// pass and the input gradient as sums of matrix products over the (input pixel, output pixel)
/// pairs that a kernel tap joins, one product per pair with the batch as its rows:
///
///     Y[·, q] = Σ over pairs (p, tap) of q: X[·, p] · W[tap]          (batch × Cin) · (Cin × Cout)
///     dX[·, p] = Σ over pairs (q, tap) of p: dY[·, q] · W[tap]ᵀ
///
/// At 2x2 pixels with padding 1 an image has 16 such pairs, as many products as Winograd
/// F(2x2)'s one tile, and 20 fewer than the direct tiles, which multiply the padding's zeros.
/// Unlike Winograd it reads W as it is: with one tile per image, transforming 9·Cin·Cout floats
/// of weights into 16·Cin·Cout at every pass cost as much as the products. The weight gradient
/// stays with Winograd's blocks. Sums run over the pairs in tap order, each product's over the
/// channels in order, so the results depend on neither the thread count nor the kernel set.
extension ConvShape {
    /// Whether the forward pass and the input gradient run on pixel pairs: stride 1 with
    /// padding, at most 4 output pixels, and channel counts of whole slivers of either kernel
    /// set (the products read W in place). `DDPTRAIN_PIXEL_PAIRS=0` turns them off, for comparison.
    public var usesPixelPairs: Bool {
        stride == 1 && padding > 0 && outHeight * outWidth <= 4 && inChannels % 32 == 0 && outChannels % 32 == 0
            && pixelPairSetting != "0"
    }

    /// Calls `body(inputPixel, tap)` for every tap of output pixel `q` that lands inside the image, in tap order.
    @inline(__always) func forEachPair(output q: Int, _ body: (_ input: Int, _ tap: Int) -> Void) {
        let oy = q / outWidth, ox = q % outWidth
        for ky in 0..<kernelHeight where (0..<height).contains(oy - padding + ky) {
            for kx in 0..<kernelWidth where (0..<width).contains(ox - padding + kx) {
                body((oy - padding + ky) * width + ox - padding + kx, ky * kernelWidth + kx)
            }
        }
    }

    /// Calls `body(outputPixel, tap)` for every output pixel whose tap reaches input pixel `p`, in tap order.
    @inline(__always) func forEachPair(input p: Int, _ body: (_ output: Int, _ tap: Int) -> Void) {
        let iy = p / width, ix = p % width
        for ky in 0..<kernelHeight where (0..<outHeight).contains(iy + padding - ky) {
            for kx in 0..<kernelWidth where (0..<outWidth).contains(ix + padding - kx) {
                body((iy + padding - ky) * outWidth + ix + padding - kx, ky * kernelWidth + kx)
            }
        }
    }
}

private let pixelPairSetting = ProcessInfo.processInfo.environment["DDPTRAIN_PIXEL_PAIRS"]

extension ConvWorkspace {
    /// Y = conv(X, W) (+ bias) over pixel pairs.
    func convolveByPixelPairs(_ s: ConvShape, input x: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                              bias: UnsafePointer<Float>?, output y: UnsafeMutablePointer<Float>) {
        sumOverPairs(s, pixels: s.outHeight * s.outWidth, { q, body in s.forEachPair(output: q, body) },
                     a: x, aPixels: s.height * s.width, k: s.inChannels, weights: w, transposed: false, c: y, n: s.outChannels)
        if let bias { for row in 0..<s.outputPixels { addInPlace(y + row * s.outChannels, bias, count: s.outChannels) } }
    }

    /// dX = the input gradient (overwritten) over pixel pairs.
    func inputGradientByPixelPairs(_ s: ConvShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                                   inputGradient dx: UnsafeMutablePointer<Float>) {
        sumOverPairs(s, pixels: s.height * s.width, { p, body in s.forEachPair(input: p, body) },
                     a: dy, aPixels: s.outHeight * s.outWidth, k: s.outChannels, weights: w, transposed: true, c: dx, n: s.inChannels)
    }

    /// C[·, j] = Σ over the pairs (i, tap) of pixel j, in tap order: A[·, i]·W[tap], or
    /// A[·, i]·W[tap]ᵀ when `transposed`, for each of `pixels` pixels j (zeros where no tap joins
    /// j). A has `aPixels` pixels of `k` channels an image, C `pixels` of `n`.
    private func sumOverPairs(_ s: ConvShape, pixels: Int, _ pairs: (_ pixel: Int, _ body: (Int, Int) -> Void) -> Void,
                              a: UnsafePointer<Float>, aPixels: Int, k: Int, weights w: UnsafePointer<Float>, transposed: Bool,
                              c: UnsafeMutablePointer<Float>, n: Int) {
        // Tap by tap, so that each W[tap] comes from memory once and from cache for its other
        // pixels, and a transposed W[tap] is packed once for all of them (at 2x2 pixels, 9 times
        // a pass instead of 16); each pixel still adds its pairs in tap order.
        withUnsafeTemporaryAllocation(of: Bool.self, capacity: pixels) { started in
            started.initialize(repeating: false)
            for tap in 0..<s.kernelHeight * s.kernelWidth {
                let b = GemmOperand(w + tap * s.inChannels * s.outChannels, stride: s.outChannels, transposed: transposed)
                var packed = false
                for j in 0..<pixels {
                    pairs(j) { i, pairTap in
                        guard pairTap == tap else { return }
                        let pixel = GemmOperand(a + i * k, stride: aPixels * k)
                        if transposed {
                            if !packed { packB(k: k, n: n, b, scratch: gemmScratch, pool: pool) }
                            packed = true
                            gemmWithPackedB(m: s.batch, n: n, k: k, a: pixel, c: c + j * n, ldc: pixels * n, accumulate: started[j],
                                            scratch: gemmScratch, pool: pool)
                        } else {
                            gemm(m: s.batch, n: n, k: k, a: pixel, b: b, c: c + j * n, ldc: pixels * n, accumulate: started[j],
                                 scratch: gemmScratch, pool: pool)
                        }
                        started[j] = true
                    }
                }
            }
            for j in 0..<pixels where !started[j] {
                for image in 0..<s.batch { (c + (image * pixels + j) * n).update(repeating: 0, count: n) }
            }
        }
    }
}
