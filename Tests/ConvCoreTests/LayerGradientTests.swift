import ConvCore
import Testing

/// Every layer against a naive reference and against finite differences of a scalar loss.
@Suite struct LayerGradientTests {
    let ws: ConvWorkspace = {
        let ws = ConvWorkspace(threads: 2)
        for s in LayerGradientTests.convShapes { ws.reserve(for: s) }
        return ws
    }()

    // MARK: Convolution

    func naiveConv(_ s: ConvShape, _ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: s.outputCount)
        for n in 0..<s.batch {
            for oy in 0..<s.outHeight {
                for ox in 0..<s.outWidth {
                    for co in 0..<s.outChannels {
                        var acc = Double(b[co])
                        for ky in 0..<s.kernelHeight {
                            for kx in 0..<s.kernelWidth {
                                let iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx
                                guard iy >= 0, iy < s.height, ix >= 0, ix < s.width else { continue }
                                for ci in 0..<s.inChannels {
                                    let xv = x[((n * s.height + iy) * s.width + ix) * s.inChannels + ci]
                                    let wv = w[((ky * s.kernelWidth + kx) * s.inChannels + ci) * s.outChannels + co]
                                    acc += Double(xv) * Double(wv)
                                }
                            }
                        }
                        y[((n * s.outHeight + oy) * s.outWidth + ox) * s.outChannels + co] = Float(acc)
                    }
                }
            }
        }
        return y
    }

    /// dX, dW and dBias of Σ y·dy, summed in double precision in the plainest order.
    func naiveConvBackward(_ s: ConvShape, _ x: [Float], _ w: [Float], _ dy: [Float]) -> (dx: [Float], dw: [Float], db: [Float]) {
        var dx = [Double](repeating: 0, count: s.inputCount), dw = [Double](repeating: 0, count: s.weightCount)
        var db = [Double](repeating: 0, count: s.outChannels)
        for n in 0..<s.batch {
            for oy in 0..<s.outHeight {
                for ox in 0..<s.outWidth {
                    for co in 0..<s.outChannels {
                        let g = Double(dy[((n * s.outHeight + oy) * s.outWidth + ox) * s.outChannels + co])
                        db[co] += g
                        for ky in 0..<s.kernelHeight {
                            for kx in 0..<s.kernelWidth {
                                let iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx
                                guard iy >= 0, iy < s.height, ix >= 0, ix < s.width else { continue }
                                for ci in 0..<s.inChannels {
                                    let xi = ((n * s.height + iy) * s.width + ix) * s.inChannels + ci
                                    let wi = ((ky * s.kernelWidth + kx) * s.inChannels + ci) * s.outChannels + co
                                    dx[xi] += Double(w[wi]) * g
                                    dw[wi] += Double(x[xi]) * g
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dx.map(Float.init), dw.map(Float.init), db.map(Float.init))
    }

    func forward(_ s: ConvShape, _ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: s.outputCount)
        y.withUnsafeMutableBufferPointer { yp in
            conv2DForward(s, input: x, weights: w, bias: b, output: yp.baseAddress!, workspace: ws)
        }
        return y
    }

    static let convShapes: [ConvShape] = [
        // (kernel, stride, padding) over 1, 3, 5 / 1, 2 / 0, 1, on sizes that are not tile multiples
        ConvShape(batch: 2, height: 7, width: 6, inChannels: 3, outChannels: 5, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0),
        ConvShape(batch: 2, height: 7, width: 7, inChannels: 4, outChannels: 17, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 3, height: 9, width: 8, inChannels: 2, outChannels: 6, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        ConvShape(batch: 2, height: 8, width: 8, inChannels: 3, outChannels: 4, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0),
        ConvShape(batch: 2, height: 9, width: 9, inChannels: 2, outChannels: 3, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 1),
        ConvShape(batch: 2, height: 5, width: 6, inChannels: 7, outChannels: 9, kernelHeight: 1, kernelWidth: 1, stride: 1, padding: 0),
        ConvShape(batch: 2, height: 6, width: 6, inChannels: 5, outChannels: 3, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0),
        ConvShape(batch: 1, height: 6, width: 5, inChannels: 3, outChannels: 2, kernelHeight: 3, kernelWidth: 1, stride: 1, padding: 1),
        // Channel counts around the tiles: 6- and 8-channel weight-gradient tiles, 16/32-wide slivers.
        ConvShape(batch: 2, height: 6, width: 7, inChannels: 15, outChannels: 33, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 2, height: 5, width: 5, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0),
        ConvShape(batch: 2, height: 7, width: 7, inChannels: 9, outChannels: 20, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1),
        // Winograd (3x3, stride 1, channels a multiple of 16; the 5x5 one above too), F(4x4)
        // where it does fewer products, F(2x2) at 5 or 6 pixels a side and at 2: sizes that leave
        // partial tiles, more tiles than one task holds, padding 0, 1 and 2.
        ConvShape(batch: 2, height: 6, width: 5, inChannels: 16, outChannels: 48, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 2),
        ConvShape(batch: 3, height: 9, width: 9, inChannels: 32, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 2, height: 10, width: 11, inChannels: 16, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0),
        ConvShape(batch: 1, height: 8, width: 8, inChannels: 16, outChannels: 32, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 2),
        ConvShape(batch: 2, height: 5, width: 6, inChannels: 16, outChannels: 48, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1),
        ConvShape(batch: 3, height: 4, width: 4, inChannels: 32, outChannels: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0),
    ]

    @Test("Winograd is chosen where it applies: F(4x4) where its three passes do fewer products than F(2x2)'s")
    func winogradChoice() {
        let shapes = LayerGradientTests.convShapes
        #expect(shapes.filter { $0.winograd == .f2x2 }.map { [$0.height, $0.width] } == [[5, 6], [4, 4]])
        #expect(shapes.filter { $0.winograd == .f4x4 }.count == 5)
        // 4x4 and 7x7 images (VGG-11's conv5 and conv6; S's conv3 has 6x6 in, 4x4 out) take F(4x4), 5x5 and 6x6 F(2x2).
        for (side, padding, algorithm) in [(4, 1, WinogradAlgorithm.f4x4), (7, 1, .f4x4), (6, 0, .f4x4), (5, 1, .f2x2), (6, 1, .f2x2), (2, 1, .f2x2)] {
            let s = ConvShape(batch: 1, height: side, width: side, inChannels: 64, outChannels: 64, kernelHeight: 3, kernelWidth: 3, padding: padding)
            #expect(s.winograd == algorithm, "\(side)x\(side), padding \(padding)")
        }
        #expect(shapes.filter { $0.stride != 1 || $0.inChannels % 16 != 0 }.allSatisfy { $0.winograd == nil })
    }

    @Test("conv forward matches the naive direct convolution", arguments: convShapes)
    func convForward(s: ConvShape) {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), b = randomArray(s.outChannels, seed: 3)
        #expect(maxRelativeError(forward(s, x, w, b), naiveConv(s, x, w, b)) < 1e-4)
    }

    @Test("conv backward (data, weights, bias) matches the naive reference, Winograd shapes included", arguments: convShapes)
    func convBackwardReference(s: ConvShape) {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2)
        let dy = randomArray(s.outputCount, seed: 4)
        var dx = [Float](repeating: .nan, count: s.inputCount)
        var dw = [Float](repeating: .nan, count: s.weightCount), db = [Float](repeating: .nan, count: s.outChannels)
        dx.withUnsafeMutableBufferPointer { conv2DBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        dw.withUnsafeMutableBufferPointer { dwp in db.withUnsafeMutableBufferPointer { dbp in
            conv2DBackwardWeights(s, input: x, outputGradient: dy, weightGradient: dwp.baseAddress!, biasGradient: dbp.baseAddress!, workspace: ws)
        } }
        let want = naiveConvBackward(s, x, w, dy)
        #expect(maxRelativeError(dx, want.dx) < 1e-4, "dx")
        #expect(maxRelativeError(dw, want.dw) < 1e-4, "dw")
        #expect(maxRelativeError(db, want.db) < 1e-4, "db")
    }

    @Test("conv backward (data, weights, bias) matches finite differences", arguments: convShapes)
    func convBackward(s: ConvShape) {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), b = randomArray(s.outChannels, seed: 3)
        let r = randomArray(s.outputCount, seed: 4)   // dLoss/dy for loss = Σ y·r
        var dx = [Float](repeating: .nan, count: s.inputCount)
        var dw = [Float](repeating: .nan, count: s.weightCount), db = [Float](repeating: .nan, count: s.outChannels)
        dx.withUnsafeMutableBufferPointer { dxp in
            conv2DBackwardData(s, outputGradient: r, weights: w, inputGradient: dxp.baseAddress!, workspace: ws)
        }
        dw.withUnsafeMutableBufferPointer { dwp in
            db.withUnsafeMutableBufferPointer { dbp in
                conv2DBackwardWeights(s, input: x, outputGradient: r, weightGradient: dwp.baseAddress!,
                                      biasGradient: dbp.baseAddress!, workspace: ws)
            }
        }
        #expect(finiteDifferenceError(x, analytic: dx) { weightedSum(naiveConv(s, $0, w, b), r) } < 1e-2)
        #expect(finiteDifferenceError(w, analytic: dw) { weightedSum(naiveConv(s, x, $0, b), r) } < 1e-2)
        #expect(finiteDifferenceError(b, analytic: db) { weightedSum(naiveConv(s, x, w, $0), r) } < 1e-2)
    }

    @Test("the AVX2 and AVX-512 kernels give bitwise-identical convolutions (needs an AVX-512 CPU)",
          .enabled(if: ConvKernelSet.cpuSupportsAVX512), arguments: convShapes)
    func kernelSetsAgree(s: ConvShape) throws {
        let x = randomArray(s.inputCount, seed: 1), w = randomArray(s.weightCount, seed: 2), b = randomArray(s.outChannels, seed: 3)
        let r = randomArray(s.outputCount, seed: 4)
        func run(_ kernels: ConvKernelSet) -> [UInt32] {
            let ws = ConvWorkspace(threads: 2, kernels: kernels)
            ws.reserve(for: s)
            var y = [Float](repeating: 0, count: s.outputCount), dx = [Float](repeating: 0, count: s.inputCount)
            var dw = [Float](repeating: 0, count: s.weightCount), db = [Float](repeating: 0, count: s.outChannels)
            y.withUnsafeMutableBufferPointer { conv2DForward(s, input: x, weights: w, bias: b, output: $0.baseAddress!, workspace: ws) }
            dx.withUnsafeMutableBufferPointer { conv2DBackwardData(s, outputGradient: r, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
            dw.withUnsafeMutableBufferPointer { dwp in db.withUnsafeMutableBufferPointer { dbp in
                conv2DBackwardWeights(s, input: x, outputGradient: r, weightGradient: dwp.baseAddress!, biasGradient: dbp.baseAddress!, workspace: ws)
            } }
            return (y + dx + dw + db).map(\.bitPattern)
        }
        #expect(run(.avx2) == run(.avx512))
    }

    // MARK: Pooling, activation, dense, loss

    /// 19 channels take a 16-lane vector and 3 on 8 lanes; 6 (LeNet-5's) 8 lanes but at each
    /// image's last pixel.
    @Test("max pooling forward picks window maxima and backward matches finite differences",
          arguments: [(2, 2), (3, 2), (2, 1)], [19, 6])
    func maxPool(window: (Int, Int), channels: Int) {
        let s = PoolShape(batch: 2, height: 7, width: 6, channels: channels, size: window.0, stride: window.1)
        // Distinct values 0.01 apart, shuffled, so a 1e-3 nudge never changes a window's winner.
        var x = (0..<s.inputCount).map { Float($0) * 0.01 }
        var rng = KeyedRandom(seed: 5, stream: .synthetic)
        for i in stride(from: x.count - 1, to: 0, by: -1) { x.swapAt(i, rng.nextInt(below: i + 1)) }
        let r = randomArray(s.outputCount, seed: 6)
        func fwd(_ x: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: s.outputCount)
            var arg = [Int32](repeating: 0, count: s.outputCount)
            y.withUnsafeMutableBufferPointer { yp in arg.withUnsafeMutableBufferPointer { ap in
                maxPoolForward(s, input: x, output: yp.baseAddress!, argmax: ap.baseAddress!, pool: ws.pool)
            } }
            return y
        }
        let y = fwd(x)
        // Reference maxima.
        for n in 0..<s.batch { for oy in 0..<s.outHeight { for ox in 0..<s.outWidth { for c in 0..<s.channels {
            var m = -Float.infinity
            for ky in 0..<s.size { for kx in 0..<s.size {
                m = max(m, x[((n * s.height + oy * s.stride + ky) * s.width + ox * s.stride + kx) * s.channels + c])
            } }
            #expect(y[((n * s.outHeight + oy) * s.outWidth + ox) * s.channels + c] == m)
        } } } }
        var arg = [Int32](repeating: 0, count: s.outputCount), scratch = [Float](repeating: 0, count: s.outputCount)
        scratch.withUnsafeMutableBufferPointer { yp in arg.withUnsafeMutableBufferPointer { ap in
            maxPoolForward(s, input: x, output: yp.baseAddress!, argmax: ap.baseAddress!, pool: ws.pool)
        } }
        var dx = [Float](repeating: .nan, count: s.inputCount)
        dx.withUnsafeMutableBufferPointer { dxp in
            maxPoolBackward(s, outputGradient: r, argmax: arg, inputGradient: dxp.baseAddress!, pool: ws.pool)
        }
        #expect(finiteDifferenceError(x, analytic: dx, eps: 1e-3, samples: 60) { weightedSum(fwd($0), r) } < 1e-2)
    }

    @Test("ReLU backward matches finite differences away from the kink")
    func relu() {
        // Values at least 0.05 from zero so the finite difference never crosses the kink.
        let x = randomArray(1000, seed: 7).map { $0 >= 0 ? $0 + 0.05 : $0 - 0.05 }
        let r = randomArray(1000, seed: 8)
        func fwd(_ x: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            y.withUnsafeMutableBufferPointer { reluForward(x, $0.baseAddress!, count: x.count, pool: ws.pool) }
            return y
        }
        let y = fwd(x)
        #expect(y == x.map { max($0, 0) })
        var dx = [Float](repeating: .nan, count: x.count)
        dx.withUnsafeMutableBufferPointer {
            reluBackward(output: y, outputGradient: r, inputGradient: $0.baseAddress!, count: x.count, pool: ws.pool)
        }
        #expect(finiteDifferenceError(x, analytic: dx, eps: 1e-2, samples: 100) { weightedSum(fwd($0), r) } < 1e-3)
    }

    @Test("dense forward matches x·W + b and backward matches finite differences")
    func dense() {
        let s = DenseShape(batch: 5, inputs: 37, outputs: 19)
        let x = randomArray(s.batch * s.inputs, seed: 1), w = randomArray(s.weightCount, seed: 2), b = randomArray(s.outputs, seed: 3)
        let r = randomArray(s.batch * s.outputs, seed: 4)
        func fwd(_ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: s.batch * s.outputs)
            y.withUnsafeMutableBufferPointer { denseForward(s, input: x, weights: w, bias: b, output: $0.baseAddress!, workspace: ws) }
            return y
        }
        var want = [Float](repeating: 0, count: s.batch * s.outputs)
        for n in 0..<s.batch { for o in 0..<s.outputs {
            var acc = Double(b[o])
            for i in 0..<s.inputs { acc += Double(x[n * s.inputs + i]) * Double(w[i * s.outputs + o]) }
            want[n * s.outputs + o] = Float(acc)
        } }
        #expect(maxRelativeError(fwd(x, w, b), want) < 1e-4)
        var dx = [Float](repeating: .nan, count: x.count), dw = [Float](repeating: .nan, count: w.count)
        var db = [Float](repeating: .nan, count: b.count)
        dx.withUnsafeMutableBufferPointer { denseBackwardData(s, outputGradient: r, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
        dw.withUnsafeMutableBufferPointer { dwp in db.withUnsafeMutableBufferPointer { dbp in
            denseBackwardWeights(s, input: x, outputGradient: r, weightGradient: dwp.baseAddress!, biasGradient: dbp.baseAddress!, workspace: ws)
        } }
        #expect(finiteDifferenceError(x, analytic: dx) { weightedSum(fwd($0, w, b), r) } < 1e-2)
        #expect(finiteDifferenceError(w, analytic: dw) { weightedSum(fwd(x, $0, b), r) } < 1e-2)
        #expect(finiteDifferenceError(b, analytic: db) { weightedSum(fwd(x, w, $0), r) } < 1e-2)
    }

    @Test("dense input gradient of a batch of whole slivers (dxᵀ = W·dyᵀ): the packed GEMM's bits, the reference's values, any thread count",
          arguments: [DenseShape(batch: 32, inputs: 131, outputs: 300), DenseShape(batch: 64, inputs: 2304, outputs: 40)])
    func denseInputGradientTransposed(s: DenseShape) {
        let dy = randomArray(s.batch * s.outputs, seed: 5), w = randomArray(s.weightCount, seed: 6)
        func inputGradient(threads: Int) -> [Float] {
            let ws = ConvWorkspace(threads: threads)
            var dx = [Float](repeating: .nan, count: s.batch * s.inputs)
            dx.withUnsafeMutableBufferPointer { denseBackwardData(s, outputGradient: dy, weights: w, inputGradient: $0.baseAddress!, workspace: ws) }
            return dx
        }
        let dx = inputGradient(threads: 2)
        #expect(dx == inputGradient(threads: 1) && dx == inputGradient(threads: 3))
        var packed = [Float](repeating: .nan, count: dx.count)
        packed.withUnsafeMutableBufferPointer { out in
            dy.withUnsafeBufferPointer { dyp in w.withUnsafeBufferPointer { wp in
                gemm(m: s.batch, n: s.inputs, k: s.outputs, a: GemmOperand(dyp.baseAddress!, stride: s.outputs),
                     b: GemmOperand(wp.baseAddress!, stride: s.outputs, transposed: true), c: out.baseAddress!, ldc: s.inputs,
                     accumulate: false, scratch: ws.gemmScratch, pool: ws.pool)
            } }
        }
        #expect(dx == packed)
        var worst = 0.0
        for b in 0..<s.batch {
            for i in 0..<s.inputs {
                var want = 0.0
                for o in 0..<s.outputs { want += Double(dy[b * s.outputs + o]) * Double(w[i * s.outputs + o]) }
                worst = max(worst, abs(Double(dx[b * s.inputs + i]) - want) / max(1, abs(want)))
            }
        }
        #expect(worst < 1e-5, "largest relative error \(worst)")
    }

    @Test("softmax cross-entropy: loss, accuracy count and logit gradient")
    func softmaxCrossEntropyGradient() {
        let batch = 6, classes = 10
        let z = randomArray(batch * classes, seed: 9, in: -3...3)
        let labels: [Int32] = [0, 3, 9, 2, 2, 7]
        func loss(_ z: [Float]) -> Double {
            softmaxCrossEntropy(logits: z, labels: labels, batch: batch, classes: classes, gradientScale: 1, logitGradient: nil).lossSum
        }
        var g = [Float](repeating: .nan, count: z.count)
        let result = g.withUnsafeMutableBufferPointer {
            softmaxCrossEntropy(logits: z, labels: labels, batch: batch, classes: classes, gradientScale: 1, logitGradient: $0.baseAddress!)
        }
        // Reference loss and accuracy.
        var want = 0.0, correct = 0
        for n in 0..<batch {
            let row = z[(n * classes)..<((n + 1) * classes)].map(Double.init)
            want += log(row.map(exp).reduce(0, +)) - row[Int(labels[n])]
            if row.firstIndex(of: row.max()!) == Int(labels[n]) { correct += 1 }
        }
        #expect(abs(result.lossSum - want) < 1e-5)
        #expect(result.correct == correct)
        #expect(finiteDifferenceError(z, analytic: g, eps: 1e-2, samples: 60, loss: loss) < 1e-2)
    }
}

#if canImport(Glibc)
import Glibc
#endif
