import CBFloat16
import ConvCore
import Testing

/// The bfloat16 products (`Precision.bfloat16`): the hardware's rounding against the software's,
/// the `vdpbf16ps` GEMM against a double-precision sum of the same rounded operands, and
/// Winograd in bf16 against the float32 path. They need avx512_bf16 and skip, saying so, without it;
/// the software rounding is tested everywhere (BFloat16Tests).
@Suite(.enabled(if: Precision.bfloat16.unavailableReason == nil,
                "the bf16 kernels need avx512_bf16: \(Precision.bfloat16.unavailableReason ?? "")"))
struct BFloat16ProductTests {
    /// `values` rounded by `ddp_bf16_round_rows` (one row), as bfloat16 bit patterns.
    func hardwareRounding(_ values: [Float]) -> [UInt16] {
        var pairs = [UInt32](repeating: 0, count: (values.count + 1) / 2)
        values.withUnsafeBufferPointer { ddp_bf16_round_rows($0.baseAddress!, values.count, 1, values.count, &pairs, pairs.count) }
        return (0..<values.count).map { UInt16(truncatingIfNeeded: pairs[$0 / 2] >> ($0 % 2 == 0 ? 0 : 16)) }
    }

    @Test("vcvtneps2bf16 rounds as bfloat16() does: to nearest, ties to even, infinity kept, NaN stays NaN")
    func roundingAgrees() {
        let ties: [UInt32] = [0x3F80_8000, 0x3F81_8000, 0xBF80_8000, 0x3F80_8001, 0x3F80_7FFF, 0x7F7F_FFFF, 0x0080_0000]
        let specials: [Float] = [0, -0, .infinity, -.infinity, .greatestFiniteMagnitude, 1, -1, 3.14159, 65504, 1e-30]
        let values = randomArray(61, seed: 5, in: -1000...1000) + specials + ties.map { Float(bitPattern: $0) }
        #expect(hardwareRounding(values) == values.map(bfloat16))
        let nan = hardwareRounding([.nan, -.nan, Float(bitPattern: 0x7F80_0001)])
        #expect(nan.allSatisfy { float(bfloat16: $0).isNaN })
        // 0x3F808000 lies halfway between 1 and the next bfloat16: the even one, 1, wins.
        #expect(hardwareRounding([Float(bitPattern: 0x3F80_8000)]) == [0x3F80])
    }

    /// Σ_k bf16(a[i][k])·bf16(b[k][j]) in double, for row-major a (rows × k) and b (k × columns).
    func reference(_ a: [Float], _ b: [Float], rows: Int, k: Int, columns: Int) -> (sum: [Double], scale: [Double]) {
        let r = { (x: Float) in Double(float(bfloat16: bfloat16(x))) }
        var sum = [Double](repeating: 0, count: rows * columns), scale = sum
        for i in 0..<rows { for j in 0..<columns { for p in 0..<k {
            let term = r(a[i * k + p]) * r(b[p * columns + j])
            sum[i * columns + j] += term
            scale[i * columns + j] += abs(term)
        } } }
        return (sum, scale)
    }

    @Test("the bf16 GEMM equals a double sum of the rounded operands to float32 rounding, A by rows and by pairs of rows",
          arguments: [(1, 1, 1), (5, 17, 3), (6, 64, 16), (7, 65, 5), (13, 100, 9), (12, 128, 64), (2, 48, 2)])
    func gemmMatchesReference(_ shape: (rows: Int, columns: Int, k: Int)) {
        let (rows, columns, k) = shape, pairs = (k + 1) / 2, padded = (columns + 15) / 16 * 16
        let a = randomArray(rows * k, seed: 21), b = randomArray(k * columns, seed: 22), c0 = randomArray(rows * columns, seed: 23)
        let want = reference(a, b, rows: rows, k: k, columns: columns)
        // B as pairs of rows, each row readable to a whole 16 pairs.
        var bPairs = [UInt32](repeating: 0, count: pairs * padded)
        b.withUnsafeBufferPointer { ddp_bf16_interleave_rows($0.baseAddress!, columns, k, columns, &bPairs, padded) }
        // A with its rows' values paired (a convolution's V), and A transposed with pairs of rows (a weight gradient's V).
        var aByRows = [UInt32](repeating: 0, count: rows * pairs), aByPairs = [UInt32](repeating: 0, count: pairs * rows)
        a.withUnsafeBufferPointer { ddp_bf16_round_rows($0.baseAddress!, k, rows, k, &aByRows, pairs) }
        let aT = (0..<k * rows).map { a[($0 % rows) * k + $0 / rows] }
        aT.withUnsafeBufferPointer { ddp_bf16_interleave_rows($0.baseAddress!, rows, k, rows, &aByPairs, rows) }
        for (layout, aRow, aPair) in [(aByRows, pairs, 1), (aByPairs, 1, rows)] {
            for accumulate in [false, true] {
                var c = c0
                ddp_bf16_gemm(pairs, layout, aRow, aPair, rows, bPairs, padded, columns, &c, columns, accumulate ? 1 : 0)
                for e in 0..<rows * columns {
                    let expected = want.sum[e] + (accumulate ? Double(c0[e]) : 0)
                    let bound = 1e-6 * (want.scale[e] + (accumulate ? abs(Double(c0[e])) : 0)) + 1e-30
                    #expect(abs(Double(c[e]) - expected) <= bound, "\(shape) element \(e), accumulate \(accumulate)")
                }
            }
        }
    }

    /// F(2x2) layers: partial tiles, padding 0 and 1, channel counts of one and several vectors;
    /// batch 7 in groups of 2 leaves a short group and an odd number of tiles in it.
    static let shapes: [ConvShape] = [
        ConvShape(batch: 7, height: 5, width: 5, inChannels: 16, outChannels: 48, kernelHeight: 3, kernelWidth: 3, padding: 1),
        ConvShape(batch: 3, height: 4, width: 4, inChannels: 48, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 0),
        ConvShape(batch: 4, height: 6, width: 6, inChannels: 32, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: 1),
    ]

    /// y, dx, dW and dBias of `s`, in `precision` on `threads` threads.
    func passes(_ s: ConvShape, precision: Precision, threads: Int, split: WinogradConvolutionSplit = .automatic) -> [Float] {
        let ws = ConvWorkspace(threads: threads, kernels: .avx512, precision: precision)
        ws.pool.sampleGroups = SampleGroups(size: 2)
        ws.winogradConvolutionSplit = split
        ws.reserve(for: s)
        let x = randomArray(s.inputCount, seed: 31), w = randomArray(s.weightCount, seed: 32)
        let bias = randomArray(s.outChannels, seed: 33), dy = randomArray(s.outputCount, seed: 34)
        var y = [Float](repeating: .nan, count: s.outputCount), dx = [Float](repeating: .nan, count: s.inputCount)
        var dw = [Float](repeating: .nan, count: s.weightCount + s.outChannels)
        y.withUnsafeMutableBufferPointer { conv2DForward(s, input: x, weights: w, bias: bias, output: $0.baseAddress!, workspace: ws) }
        dx.withUnsafeMutableBufferPointer { conv2DBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        dw.withUnsafeMutableBufferPointer {
            conv2DBackwardWeights(s, input: x, outputGradient: dy, weightGradient: $0.baseAddress!,
                                  biasGradient: $0.baseAddress! + s.weightCount, workspace: ws)
        }
        return y + dx + dw
    }

    /// Measured worst errors: 1.4–2.0 % of the rms.
    @Test("Winograd F(2x2) in bf16: all three directions within 3 % of float32 in the worst element (of the rms), the same bits on 1 and 3 threads and split by positions",
          arguments: shapes)
    func winogradNearFloat32(_ s: ConvShape) throws {
        try #require(s.winograd == .f2x2)
        let exact = passes(s, precision: .float32, threads: 2), one = passes(s, precision: .bfloat16, threads: 1)
        let parts = [(0, s.outputCount), (s.outputCount, s.inputCount), (s.outputCount + s.inputCount, s.weightCount),
                     (s.outputCount + s.inputCount + s.weightCount, s.outChannels)]
        for (name, (start, count)) in zip(["forward", "input gradient", "weight gradient", "bias gradient"], parts) {
            let error = maxRelativeError(Array(one[start..<start + count]), Array(exact[start..<start + count]))
            #expect(error < 0.03, "\(name) of \(s): \(error)")
            if name != "bias gradient" { #expect(error > 0, "\(name) of \(s) ran in float32") }  // the bias gradient is a float32 sum
        }
        let three = passes(s, precision: .bfloat16, threads: 3)
        #expect(one.elementsEqual(three) { $0.bitPattern == $1.bitPattern }, "3 threads gave other bits than 1")
        // Split by positions (VGG-11's large layers), each product is the same sum in the same order.
        let byPositions = passes(s, precision: .bfloat16, threads: 2, split: .positions)
        #expect(one.elementsEqual(byPositions) { $0.bitPattern == $1.bitPattern }, "split by positions gave other bits")
    }

    @Test("an F(4x4) layer stays float32 under bf16: the same bits as in float32")
    func winogradF4StaysFloat32() throws {
        let s = ConvShape(batch: 3, height: 10, width: 10, inChannels: 48, outChannels: 16, kernelHeight: 3, kernelWidth: 3, padding: 0)
        try #require(s.winograd == .f4x4)
        #expect(passes(s, precision: .bfloat16, threads: 2).elementsEqual(passes(s, precision: .float32, threads: 2)) {
            $0.bitPattern == $1.bitPattern
        })
    }

    /// y, dx, dW and db of a dense layer in `precision` on `threads` threads, sample groups of 2.
    func densePasses(_ s: DenseShape, precision: Precision, threads: Int) -> [Float] {
        let ws = ConvWorkspace(threads: threads, kernels: .avx512, precision: precision)
        ws.pool.sampleGroups = SampleGroups(size: 2)
        ws.reserve(for: s)
        let x = randomArray(s.batch * s.inputs, seed: 41), w = randomArray(s.weightCount, seed: 42)
        let bias = randomArray(s.outputs, seed: 43), dy = randomArray(s.batch * s.outputs, seed: 44)
        var y = [Float](repeating: .nan, count: s.batch * s.outputs), dx = [Float](repeating: .nan, count: s.batch * s.inputs)
        var dw = [Float](repeating: .nan, count: s.weightCount), db = [Float](repeating: .nan, count: s.outputs)
        y.withUnsafeMutableBufferPointer { denseForward(s, input: x, weights: w, bias: bias, output: $0.baseAddress!, workspace: ws) }
        dx.withUnsafeMutableBufferPointer { denseBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        dw.withUnsafeMutableBufferPointer { dwp in
            db.withUnsafeMutableBufferPointer {
                denseBackwardWeights(s, input: x, outputGradient: dy, weightGradient: dwp.baseAddress!, biasGradient: $0.baseAddress!,
                                     workspace: ws)
            }
        }
        return y + dx + dw + db
    }

    /// Odd sizes (an odd number of inputs, outputs short of a vector, a batch leaving a group
    /// of one sample) and M's dense1.
    @Test("dense layers in bf16: all three products within 3 % of float32 in the worst element (of the rms), the same bits on 1 and 3 threads",
          arguments: [DenseShape(batch: 7, inputs: 13, outputs: 10), DenseShape(batch: 16, inputs: 130, outputs: 70),
                      DenseShape(batch: 64, inputs: 2304, outputs: 512)])
    func denseNearFloat32(_ s: DenseShape) {
        let exact = densePasses(s, precision: .float32, threads: 2), one = densePasses(s, precision: .bfloat16, threads: 1)
        let y = s.batch * s.outputs, dx = s.batch * s.inputs
        let parts = [("forward", 0, y), ("input gradient", y, dx), ("weight gradient", y + dx, s.weightCount),
                     ("bias gradient", y + dx + s.weightCount, s.outputs)]
        for (name, start, count) in parts {
            let error = maxRelativeError(Array(one[start..<start + count]), Array(exact[start..<start + count]))
            #expect(error < 0.03, "\(name) of \(s): \(error)")
            if name != "bias gradient" { #expect(error > 0, "\(name) of \(s) ran in float32") }
        }
        let three = densePasses(s, precision: .bfloat16, threads: 3)
        #expect(one.elementsEqual(three) { $0.bitPattern == $1.bitPattern }, "3 threads gave other bits than 1")
    }
}
