/// The model zoo. The reference models are layer for layer as peers define them, so that a
/// PyTorch or Keras user can run exactly the same network (see ../shared/PRODUCT.md); the
/// classic families are the lesson's, sized for 32x32 inputs. `ddptrain models --show NAME`
/// prints any of them as a model file.
extension ModelSpec {
    /// Model S, the TensorFlow CNN tutorial: 122,570 parameters.
    public static let tfTutorial = ModelSpec(
        name: "tf-tutorial",
        layers: [
            .conv(outChannels: 32, kernel: 3), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 64, kernel: 3), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 64, kernel: 3), .relu,
            .flatten,
            .dense(outputs: 64), .relu,
            .dense(outputs: 10),
        ])

    /// Model M, the Keras CIFAR-10 CNN example: 1,250,858 parameters.
    public static let kerasCNN = ModelSpec(
        name: "keras-cnn",
        layers: [
            .conv(outChannels: 32, kernel: 3, padding: 1), .relu,
            .conv(outChannels: 32, kernel: 3), .relu,
            .maxPool(size: 2, stride: 2), .dropout(rate: 0.25),
            .conv(outChannels: 64, kernel: 3, padding: 1), .relu,
            .conv(outChannels: 64, kernel: 3), .relu,
            .maxPool(size: 2, stride: 2), .dropout(rate: 0.25),
            .flatten,
            .dense(outputs: 512), .relu, .dropout(rate: 0.5),
            .dense(outputs: 10),
        ])

    /// LeNet-5 (LeCun et al. 1998) on 32x32x3, with ReLU and max pooling in place of the
    /// original scaled tanh and trainable subsampling, as modern ports do: 62,006 parameters.
    public static let lenet5 = ModelSpec(
        name: "lenet5",
        layers: [
            .conv(outChannels: 6, kernel: 5), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 16, kernel: 5), .relu, .maxPool(size: 2, stride: 2),
            .flatten,
            .dense(outputs: 120), .relu,
            .dense(outputs: 84), .relu,
            .dense(outputs: 10),
        ],
        recipe: Recipe(epochs: 30, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.02, momentum: 0.9, nesterov: true, weightDecay: 5e-4),
                       schedule: LearningRateSchedule(warmupEpochs: 1, decay: .cosine), augment: true))

    /// AlexNet (Krizhevsky et al. 2012) for 32x32 inputs: five 3x3 convolutions at half the
    /// original widths (48-128-192-192-128), three max pools, three dense layers with dropout.
    public static let alexnet = ModelSpec(
        name: "alexnet",
        layers: [
            .conv(outChannels: 48, kernel: 3, padding: 1), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 128, kernel: 3, padding: 1), .relu, .maxPool(size: 2, stride: 2),
            .conv(outChannels: 192, kernel: 3, padding: 1), .relu,
            .conv(outChannels: 192, kernel: 3, padding: 1), .relu,
            .conv(outChannels: 128, kernel: 3, padding: 1), .relu, .maxPool(size: 2, stride: 2),
            .flatten,
            .dropout(rate: 0.5), .dense(outputs: 512), .relu,
            .dropout(rate: 0.5), .dense(outputs: 256), .relu,
            .dense(outputs: 10),
        ],
        recipe: Recipe(epochs: 40, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.02, momentum: 0.9, nesterov: true, weightDecay: 5e-4),
                       schedule: LearningRateSchedule(warmupEpochs: 2, decay: .cosine), labelSmoothing: 0.1, augment: true))

    /// VGG-11 (Simonyan & Zisserman 2015) with batch norm, narrowed for CIFAR as is common:
    /// eight 3x3 conv + BN + ReLU at 64-128-256-256-512-512-512-512, five max pools, one dense classifier.
    public static let vgg11: ModelSpec = {
        func stage(_ widths: Int...) -> [LayerSpec] {
            widths.flatMap { LayerSpec.convBN($0) + [.relu] } + [.maxPool(size: 2, stride: 2)]
        }
        return ModelSpec(
            name: "vgg11",
            layers: stage(64) + stage(128) + stage(256, 256) + stage(512, 512) + stage(512, 512)
                + [.flatten, .dense(outputs: 10)],
            recipe: .sgdCosine(learningRate: 0.05, epochs: 40, warmupEpochs: 2))
    }()

    /// CIFAR ResNet-6n+2 (He et al. 2016, section 4.2): a 3x3 conv to 16 channels, three stages
    /// of n basic blocks at 16, 32 and 64 channels (the first block of stages 2 and 3 halves the
    /// resolution), global average pooling and a dense classifier.
    public static func cifarResNet(depth: Int) -> ModelSpec {
        precondition((depth - 2) % 6 == 0, "a CIFAR ResNet has depth 6n+2")
        let n = (depth - 2) / 6
        func stage(_ channels: Int, stride: Int) -> [LayerSpec] {
            LayerSpec.basicBlock(channels, stride: stride) + (1..<n).flatMap { _ in LayerSpec.basicBlock(channels) }
        }
        return ModelSpec(
            name: "resnet\(depth)",
            layers: LayerSpec.convBN(16) + [.relu]
                + stage(16, stride: 1) + stage(32, stride: 2) + stage(64, stride: 2)
                + [.globalAvgPool, .flatten, .dense(outputs: 10)],
            recipe: .sgdCosine(learningRate: 0.1, epochs: 60))
    }

    public static let resnet20 = cifarResNet(depth: 20)
    public static let resnet56 = cifarResNet(depth: 56)
}
