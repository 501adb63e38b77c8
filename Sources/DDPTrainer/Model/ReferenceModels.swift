/// The reference models, layer for layer as peers define them, so that a PyTorch or Keras
/// user can run exactly the same network (see ../shared/PRODUCT.md).
extension ModelSpec {
    /// Model S, the TensorFlow CNN tutorial: 122,570 parameters.
    public static let tfTutorial = ModelSpec(
        name: "tf-tutorial", inputHeight: 32, inputWidth: 32, inputChannels: 3, classes: 10,
        layers: [
            .conv(outChannels: 32, kernel: 3, stride: 1, padding: 0), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 64, kernel: 3, stride: 1, padding: 0), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 64, kernel: 3, stride: 1, padding: 0), .relu,
            .flatten,
            .dense(outputs: 64), .relu,
            .dense(outputs: 10),
        ])

    /// Model M, the Keras CIFAR-10 CNN example: 1,250,858 parameters.
    public static let kerasCNN = ModelSpec(
        name: "keras-cnn", inputHeight: 32, inputWidth: 32, inputChannels: 3, classes: 10,
        layers: [
            .conv(outChannels: 32, kernel: 3, stride: 1, padding: 1), .relu,
            .conv(outChannels: 32, kernel: 3, stride: 1, padding: 0), .relu,
            .maxPool(size: 2, stride: 2), .dropout(rate: 0.25),
            .conv(outChannels: 64, kernel: 3, stride: 1, padding: 1), .relu,
            .conv(outChannels: 64, kernel: 3, stride: 1, padding: 0), .relu,
            .maxPool(size: 2, stride: 2), .dropout(rate: 0.25),
            .flatten,
            .dense(outputs: 512), .relu, .dropout(rate: 0.5),
            .dense(outputs: 10),
        ])
}
