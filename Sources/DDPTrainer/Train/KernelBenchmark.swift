import ConvCore
import Dispatch

/// The conv-core micro-benchmark: GEMM at 1024³, a dense layer's forward product at 1024³ in
/// `precision` (in bf16, `vdpbf16ps` with the rounding of both operands included), and every
/// distinct convolution of the given models at a given batch, forward, input gradient and weight
/// gradient, in GFLOP/s (median of repeats; Winograd layers in the direct convolution's FLOPs),
/// and each as a share of the float32 FMA peak of the threads' cores, measured right after the
/// row (the machine may be shared). Winograd layers whose forward pass runs tile by tile also
/// get the shares of its phases, measured on one thread (median of repeats).
public struct KernelBenchmarkRow: Codable, Sendable {
    public let name: String
    public let shape: String
    public let gflops: [String: Double]
    /// FMA peak of the row's threads' cores at the kernels' vector width, GFLOP/s.
    public let peakGflops: Double
    public var forwardPhases: WinogradPhaseShares? = nil
}

public func runKernelBenchmark(models: [ModelSpec], batch: Int, threads: Int, repeats: Int,
                               precision: Precision = .float32) -> [KernelBenchmarkRow] {
    var rows: [KernelBenchmarkRow] = []
    func medianRate(_ flops: Double, _ body: () -> Void) -> Double {
        body()  // warm-up
        var rates: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            rates.append(flops / Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        return median(rates)
    }

    let n = 1024
    let a = randomBuffer(n * n), b = randomBuffer(n * n), c = allocateAligned(Float.self, capacity: n * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    let ws = ConvWorkspace(threads: threads, precision: precision)
    // Weight gradients are summed over the sample groups training uses, not sample by sample.
    ws.pool.sampleGroups = .standard(globalBatch: batch)
    func peak(_ threads: Int) -> Double { ws.kernels.measuredPeakGflopsPerCore() * Double(threads) }
    for t in Set([1, threads]).sorted() {
        let pool = WorkerPool(threads: t), scratch = GemmScratch(workers: t)
        let rate = medianRate(2 * Double(n * n * n)) {
            gemm(m: n, n: n, k: n, a: GemmOperand(a, stride: n), b: GemmOperand(b, stride: n), c: c, ldc: n,
                 accumulate: false, scratch: scratch, pool: pool)
        }
        rows.append(KernelBenchmarkRow(name: "gemm", shape: "1024x1024x1024", gflops: ["\(t) thread\(t == 1 ? "" : "s")": rate],
                                       peakGflops: peak(t)))
    }
    let dense = DenseShape(batch: n, inputs: n, outputs: n), bias = randomBuffer(n)
    defer { bias.deallocate() }
    for t in Set([1, threads]).sorted() {
        let denseWorkspace = ConvWorkspace(threads: t, precision: precision)
        denseWorkspace.reserve(for: dense)
        let rate = medianRate(dense.forwardFlops) {
            denseForward(dense, input: a, weights: b, bias: bias, output: c, workspace: denseWorkspace)
        }
        rows.append(KernelBenchmarkRow(name: "dense forward", shape: "1024 x 1024 → 1024, \(precision.rawValue)",
                                       gflops: ["\(t) thread\(t == 1 ? "" : "s")": rate], peakGflops: peak(t)))
    }

    for spec in models {
        var seen: [ConvShape] = []
        for (index, shape) in convolutionShapes(of: spec, batch: batch).enumerated() where !seen.contains(shape) {
            seen.append(shape)
            ws.reserve(for: shape)
            let x = randomBuffer(shape.inputCount), w = randomBuffer(shape.weightCount), bias = randomBuffer(shape.outChannels)
            let y = randomBuffer(shape.outputCount), dx = randomBuffer(shape.inputCount), dw = randomBuffer(shape.weightCount)
            let db = randomBuffer(shape.outChannels)
            defer { [x, w, bias, y, dx, dw, db].forEach { $0.deallocate() } }
            let f = shape.forwardFlops
            let algorithm = shape.forwardAlgorithm + (shape.winograd == nil && !shape.inputGradientIsConvolution ? ", strided" : "")
            let rates = [
                "forward": medianRate(f) { conv2DForward(shape, input: x, weights: w, bias: bias, output: y, workspace: ws) },
                "input gradient": medianRate(f) { conv2DBackwardData(shape, outputGradient: y, weights: w, inputGradient: dx, workspace: ws) },
                "weight gradient": medianRate(f) {
                    conv2DBackwardWeights(shape, input: x, outputGradient: y, weightGradient: dw, biasGradient: db, workspace: ws)
                },
            ]
            let phases = (0..<repeats).compactMap { _ in ws.winogradForwardPhases(shape, input: x, weights: w, output: y) }
            rows.append(KernelBenchmarkRow(
                name: "\(spec.name) conv\(index + 1)",
                shape: "\(shape.height)x\(shape.width)x\(shape.inChannels) → \(shape.outHeight)x\(shape.outWidth)x\(shape.outChannels), k\(shape.kernelHeight) s\(shape.stride) p\(shape.padding), \(algorithm)",
                gflops: rates, peakGflops: peak(threads),
                forwardPhases: phases.isEmpty ? nil : WinogradPhaseShares(inputTransform: median(phases.map(\.inputTransform)),
                                                                          products: median(phases.map(\.products)),
                                                                          outputTransform: median(phases.map(\.outputTransform)))))
        }
    }
    return rows
}

func convolutionShapes(of spec: ModelSpec, batch: Int) -> [ConvShape] {
    func shapes(_ nodes: [LayerPlan.Node]) -> [ConvShape] {
        nodes.flatMap { node -> [ConvShape] in
            switch node.step {
            case let .conv(shape, _, _): return [shape.batched(batch)]
            case let .residual(body, shortcut): return shapes(body) + shapes(shortcut)
            default: return []
            }
        }
    }
    return (try? LayerPlan(spec)).map { shapes($0.nodes) } ?? []
}

private func randomBuffer(_ count: Int) -> UnsafeMutablePointer<Float> {
    let p = allocateAligned(Float.self, capacity: count)
    var rng = KeyedRandom(seed: UInt64(count), stream: .synthetic)
    for i in 0..<count { p[i] = rng.nextFloat() - 0.5 }
    return p
}
