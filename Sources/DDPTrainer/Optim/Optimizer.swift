import ConvCore

/// Optimizer hyperparameters, with PyTorch's semantics for every field.
public struct OptimizerConfig: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case sgd, adam }
    public var kind: Kind
    public var learningRate: Float
    public var momentum: Float = 0.9
    public var nesterov = false
    public var weightDecay: Float = 0
    /// PyTorch decays every parameter; the common recipe (and ddptrain's default) decays only
    /// conv and dense weights, not biases or batch norm's scale and shift.
    public var decayAllParameters = false
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8

    public init(kind: Kind, learningRate: Float, momentum: Float = 0.9, nesterov: Bool = false,
                weightDecay: Float = 0, decayAllParameters: Bool = false) {
        self.kind = kind; self.learningRate = learningRate; self.momentum = momentum
        self.nesterov = nesterov; self.weightDecay = weightDecay; self.decayAllParameters = decayAllParameters
    }

    /// Checkpoints written before `decayAllParameters` existed decayed everything.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(kind: try c.decode(Kind.self, forKey: .kind), learningRate: try c.decode(Float.self, forKey: .learningRate),
                  momentum: try c.decode(Float.self, forKey: .momentum), nesterov: try c.decode(Bool.self, forKey: .nesterov),
                  weightDecay: try c.decode(Float.self, forKey: .weightDecay),
                  decayAllParameters: try c.decodeIfPresent(Bool.self, forKey: .decayAllParameters) ?? true)
        beta1 = try c.decode(Float.self, forKey: .beta1)
        beta2 = try c.decode(Float.self, forKey: .beta2)
        epsilon = try c.decode(Float.self, forKey: .epsilon)
    }
}

/// Updates a flat parameter buffer from a flat gradient buffer. State (momentum, or Adam's
/// two moments) lives in one allocation of the same layout, so a checkpoint is two memcpys.
public final class Optimizer {
    public let config: OptimizerConfig
    public let count: Int
    /// SGD: the momentum buffer. Adam: first moments, then second moments.
    public let state: UnsafeMutablePointer<Float>
    public var stateCount: Int { config.kind == .adam ? 2 * count : count }
    /// Number of updates applied so far (Adam's bias correction needs it).
    public var steps = 0
    /// The parameter buffer cut into runs of equal weight decay, in order.
    private let decaySegments: [(range: Range<Int>, decay: Float)]

    /// `tensors` say which parameters decay (`ParameterTensor.decays`, unless the config decays all).
    public init(_ config: OptimizerConfig, tensors: [ParameterTensor]) {
        self.config = config
        count = tensors.reduce(0) { $0 + $1.count }
        let n = config.kind == .adam ? 2 * count : count
        state = allocateAligned(Float.self, capacity: n)
        state.initialize(repeating: 0, count: max(n, 1))
        var segments: [(range: Range<Int>, decay: Float)] = []
        for t in tensors {
            let decay = config.decayAllParameters || t.decays ? config.weightDecay : 0
            if let last = segments.last, last.decay == decay, last.range.upperBound == t.offset {
                segments[segments.count - 1].range = last.range.lowerBound..<(t.offset + t.count)
            } else {
                segments.append((t.offset..<(t.offset + t.count), decay))
            }
        }
        decaySegments = segments
    }

    deinit { state.deallocate() }

    /// One update at `learningRate` (the schedule's rate for this step).
    public func step(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                     learningRate lr: Float, pool: WorkerPool) {
        steps += 1
        let c = config
        switch c.kind {
        case .sgd:
            let buf = state
            forEachSegment(pool: pool) { range, decay in
                sgdUpdate(SGDUpdate(learningRate: lr, weightDecay: decay, momentum: c.momentum, nesterov: c.nesterov),
                          parameters: p + range.lowerBound, gradients: g + range.lowerBound, momentumBuffer: buf + range.lowerBound,
                          count: range.count)
            }
        case .adam:
            let m = state, v = state + count, step = steps
            forEachSegment(pool: pool) { range, decay in
                let update = AdamUpdate(learningRate: lr, step: step, weightDecay: decay, beta1: c.beta1, beta2: c.beta2,
                                        epsilon: c.epsilon)
                adamUpdate(update, parameters: p + range.lowerBound, gradients: g + range.lowerBound,
                           firstMoments: m + range.lowerBound, secondMoments: v + range.lowerBound, count: range.count)
            }
        }
    }

    /// Fixed chunks of the whole buffer (one fork-join), each cut where the weight decay changes.
    private func forEachSegment(pool: WorkerPool, _ body: (Range<Int>, Float) -> Void) {
        let segments = decaySegments
        forEachChunk(count, pool: pool) { start, end in
            var lo = 0, hi = segments.count
            while lo < hi {  // the first segment ending after `start`
                let mid = (lo + hi) / 2
                if segments[mid].range.upperBound <= start { lo = mid + 1 } else { hi = mid }
            }
            var k = lo
            while k < segments.count && segments[k].range.lowerBound < end {
                let r = segments[k].range.clamped(to: start..<end)
                body(r, segments[k].decay)
                k += 1
            }
        }
    }
}
