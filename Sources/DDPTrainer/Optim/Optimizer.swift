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

    public init(_ config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        count = parameterCount
        let n = config.kind == .adam ? 2 * parameterCount : parameterCount
        state = .allocate(capacity: max(n, 1))
        state.initialize(repeating: 0, count: max(n, 1))
    }

    deinit { state.deallocate() }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>, pool: WorkerPool) {
        steps += 1
        let c = config
        switch c.kind {
        case .sgd:
            let buf = state
            forEachChunk(count, pool: pool) { start, end in
                for i in start..<end {
                    var d = g[i] + c.weightDecay * p[i]
                    if c.momentum != 0 {
                        buf[i] = c.momentum * buf[i] + d
                        d = c.nesterov ? d + c.momentum * buf[i] : buf[i]
                    }
                    p[i] -= c.learningRate * d
                }
            }
        case .adam:
            let m = state, v = state + count
            let correction1 = 1 - powf(c.beta1, Float(steps))
            let correction2Root = (1 - powf(c.beta2, Float(steps))).squareRoot()
            let stepSize = c.learningRate / correction1
            forEachChunk(count, pool: pool) { start, end in
                for i in start..<end {
                    let d = g[i] + c.weightDecay * p[i]
                    m[i] = c.beta1 * m[i] + (1 - c.beta1) * d
                    v[i] = c.beta2 * v[i] + (1 - c.beta2) * d * d
                    p[i] -= stepSize * m[i] / (v[i].squareRoot() / correction2Root + c.epsilon)
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
