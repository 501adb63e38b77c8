import Foundation

/// What the background writer needs to serialise one checkpoint; it reads only the snapshot.
struct CheckpointJob: @unchecked Sendable {
    let spec: ModelSpec
    let tensors: [ParameterTensor]
    let bufferTensors: [ParameterTensor]
    /// Parameters, then optimizer state, then running statistics.
    let snapshot: UnsafeMutablePointer<Float>
    let parameterCount: Int
    let optimizerStateCount: Int
    let progress: TrainingProgress
    let config: TrainingConfig
    let worldSize: Int
    let dataFingerprint: String
    let tensorBoard: EventFileMark?
    /// What eval and predict need besides the weights (`TrainedModel.metadata`).
    let modelMetadata: [String: String]

    func encode() throws -> Data {
        try Checkpoint.encode(spec: spec, tensors: tensors, parameters: snapshot, optimizerState: snapshot + parameterCount,
                              bufferTensors: bufferTensors, buffers: snapshot + parameterCount + optimizerStateCount, progress: progress, config: config, worldSize: worldSize, dataFingerprint: dataFingerprint,
                              tensorBoard: tensorBoard, modelMetadata: modelMetadata)
    }
}
