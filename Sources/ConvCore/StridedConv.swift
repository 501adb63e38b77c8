import ConvKernels
import ConvKernelsAVX512

/// The input gradient of a strided convolution, phase by phase (the "sub-pixel" decomposition),
/// on the direct register tiles instead of a GEMM into im2col columns and their scatter-add.
///
/// With stride s, input row iy receives gradient only from the taps ky ≡ iy + padding (mod s),
/// from output rows oy = (iy + padding − ky)/s. So the input pixels of one phase (iy ≡ ry,
/// ix ≡ rx mod s) form an image of their own whose gradient is a stride-1 convolution of dY
/// with a sub-kernel of those taps (flipped, channel-transposed), read from a top-left offset
/// of its own: for ResNet's 3x3 stride-2 padding-1 layers the four phases have 1x1, 1x2, 2x1
/// and 2x2 sub-kernels (9 taps in all, no wasted products), and a 1x1 stride-2 layer has one
/// 1x1 phase and three that are zero. Each phase image is convolved into a per-worker buffer
/// and copied to its pixels of dX, one task per image, so nothing depends on the thread count.
///
///     3x3, stride 2, padding 1, iy = 2·jy + 1:  dX[iy] = dY[jy]·W[ky=2] + dY[jy+1]·W[ky=0]

/// Along one axis: which taps reach the input positions i ≡ r (mod stride), and how the phase's
/// stride-1 convolution reads dY. Its tap u (0..<taps) is kernel position first + stride·(taps − 1 − u),
/// applied to output position j − padding + u for phase position j (input position r + stride·j).
struct PhaseAxis {
    let first: Int, taps: Int, padding: Int, size: Int

    init(phase r: Int, input n: Int, kernel k: Int, stride s: Int, padding p: Int) {
        first = (r + p) % s
        taps = first < k ? (k - first + s - 1) / s : 0
        padding = taps - 1 - (r + p - first) / s
        size = r < n ? (n - r + s - 1) / s : 0
    }
}

extension ConvShape {
    /// Whether the input gradient can run by phases: every phase reads dY from a non-negative
    /// offset (true for every padding smaller than the kernel that a CNN uses).
    var inputGradientByPhases: Bool {
        guard stride > 1 && padding >= 0 else { return false }
        for r in 0..<stride {
            let y = PhaseAxis(phase: r, input: height, kernel: kernelHeight, stride: stride, padding: padding)
            let x = PhaseAxis(phase: r, input: width, kernel: kernelWidth, stride: stride, padding: padding)
            if (y.taps > 0 && y.padding < 0) || (x.taps > 0 && x.padding < 0) { return false }
        }
        return true
    }

    /// Floats of one worker's phase image: the largest phase, ⌈H/s⌉·⌈W/s⌉ pixels of Cin.
    var phaseImageCount: Int { ((height + stride - 1) / stride) * ((width + stride - 1) / stride) * inChannels }
}

/// dX (overwritten) of a strided convolution whose `inputGradientByPhases` holds.
func inputGradientByPhases(_ s: ConvShape, outputGradient dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                           inputGradient dx: UnsafeMutablePointer<Float>, workspace ws: ConvWorkspace) {
    let st = s.stride, cin = s.inChannels, cout = s.outChannels, kw = s.kernelWidth
    let kernels = ws.kernels.forColumns(cin), slivers = kernels.slivers(columns: cin)
    func axes(_ ry: Int, _ rx: Int) -> (PhaseAxis, PhaseAxis) {
        (PhaseAxis(phase: ry, input: s.height, kernel: s.kernelHeight, stride: st, padding: s.padding),
         PhaseAxis(phase: rx, input: s.width, kernel: kw, stride: st, padding: s.padding))
    }
    // Each phase's sub-kernel, packed as the weights of a Cout → Cin convolution, phase after phase.
    let packed = ws.packedWeights
    var offset = 0
    for ry in 0..<st {
        for rx in 0..<st {
            let (py, px) = axes(ry, rx)
            let k = py.taps * px.taps * cout
            if k == 0 { continue }
            packConvWeights(kernels, k: k, n: cin, into: packed + offset) { p, ci in
                let tap = p / cout, co = p % cout
                let ky = py.first + st * (py.taps - 1 - tap / px.taps), kx = px.first + st * (px.taps - 1 - tap % px.taps)
                return w[((ky * kw + kx) * cin + ci) * cout + co]
            }
            offset += kernels.packedCount(k: k, n: cin)
        }
    }
    precondition(ws.columnCapacity >= ws.pool.threads * s.phaseImageCount, "conv workspace too small for \(s)")
    let scratch = ws.columns, perWorker = s.phaseImageCount, zeros = UnsafePointer(ws.zeros)
    let oh = s.outHeight, ow = s.outWidth
    ws.pool.run(tasks: s.batch) { n, worker in
        let phaseImage = scratch + worker * perWorker
        let image = dx + n * s.height * s.width * cin, gradient = dy + n * oh * ow * cout
        var offset = 0
        for ry in 0..<st {
            for rx in 0..<st {
                let (py, px) = axes(ry, rx)
                @inline(__always) func pixel(_ jy: Int, _ jx: Int) -> UnsafeMutablePointer<Float> {
                    image + ((st * jy + ry) * s.width + st * jx + rx) * cin
                }
                let k = py.taps * px.taps * cout
                if k == 0 {
                    for jy in 0..<py.size { for jx in 0..<px.size { pixel(jy, jx).update(repeating: 0, count: cin) } }
                    continue
                }
                let weights = UnsafePointer(packed + offset)
                offset += kernels.packedCount(k: k, n: cin)
                if py.taps == 1 && px.taps == 1 && py.padding == 0 && px.padding == 0 && py.size <= oh && px.size <= ow {
                    // A 1x1 sub-kernel reading dY in place (a 1x1 layer's only phase, a 3x3
                    // stride-2 layer's first): one small product per row, written straight to
                    // dX (`stride`·Cin floats between its pixels), no phase image.
                    for jy in 0..<py.size {
                        let a = gradient + jy * ow * cout, c = pixel(jy, 0), ldc = st * cin
                        multiplyRows(kernels, kc: cout, a: a, lda: cout, rows: px.size, packedB: weights, columns: cin, c: c, ldc: ldc)
                    }
                    continue
                }
                let g = ConvKernels.ConvGeometry(batch: 1, height: oh, width: ow, inChannels: cout, outChannels: cin,
                                                 kernelHeight: py.taps, kernelWidth: px.taps, paddingTop: py.padding,
                                                 paddingLeft: px.padding, outHeight: py.size, outWidth: px.size)
                for sliver in 0..<slivers {
                    convolveRows(kernels, g, input: gradient, packedWeights: weights, bias: nil, output: phaseImage,
                                 zeros: zeros, first: 0, last: py.size * px.size, sliver: sliver)
                }
                var source = UnsafePointer(phaseImage)
                for jy in 0..<py.size {
                    for jx in 0..<px.size {
                        pixel(jy, jx).update(from: source, count: cin)
                        source += cin
                    }
                }
            }
        }
    }
}
