// swift-tools-version:6.0
import PackageDescription

// AVX2 + FMA is the baseline every target machine has. Without it Swift's SIMD
// `addingProduct` becomes a libm call per lane (about 100x slower); see ../shared/SWIFT-NOTES.md.
let simd: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v3"])]

let package = Package(
    name: "ddptrain",
    products: [
        .executable(name: "ddptrain", targets: ["ddptrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Open MPI's handles are macros over incomplete globals; this shim is the only C.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        // libpng and libjpeg-turbo behind a static-inline shim that keeps their longjmp error
        // handling in C.
        .systemLibrary(name: "CImageCodecs", path: "Sources/CImageCodecs",
                       providers: [.apt(["libpng-dev", "libjpeg-dev"])]),
        // The convolution register tiles, compiled for AVX2+FMA and (same source) for AVX-512;
        // ConvCore chooses at start-up, so one binary runs on both kinds of machine.
        .target(name: "ConvKernels", swiftSettings: simd),
        .target(name: "ConvKernelsAVX512", swiftSettings: [.unsafeFlags(["-Xcc", "-march=x86-64-v4"])]),
        // The bfloat16 products (`vdpbf16ps`, which Swift cannot name): C compiled for AVX512_BF16,
        // called only where the CPU has it.
        .target(name: "CBFloat16", cSettings: [.unsafeFlags(["-O3", "-march=x86-64-v4", "-mavx512bf16"])]),
        // Numerics over raw buffers: no MPI, no files, no CLI.
        .target(name: "ConvCore", dependencies: ["ConvKernels", "ConvKernelsAVX512", "CBFloat16"], swiftSettings: simd),
        // The CIFAR-10 binary format, sharding and augmentation.
        .target(name: "CIFAR10", dependencies: ["ConvCore"], swiftSettings: simd),
        // The Protocol Buffers wire format (writing), for the files other tools read: TensorBoard
        // event files, ONNX models.
        .target(name: "Protobuf"),
        // Image files: PNG, JPEG and PPM to RGB, PNG out, resizing to a model's input.
        .target(name: "Images", dependencies: ["CImageCodecs"]),
        // Models, optimizers, the communicator and the training loop.
        .target(name: "DDPTrainer", dependencies: ["ConvCore", "CIFAR10", "CMPI", "Protobuf"], swiftSettings: simd),
        .executableTarget(name: "ddptrain", dependencies: [
            "DDPTrainer", "CIFAR10", "ConvCore", "Images",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: simd),
        .testTarget(name: "CIFAR10Tests", dependencies: ["CIFAR10", "ConvCore"], swiftSettings: simd),
        .testTarget(name: "ConvCoreTests", dependencies: ["ConvCore", "CBFloat16"], swiftSettings: simd),
        .testTarget(name: "ProtobufTests", dependencies: ["Protobuf"]),
        .testTarget(name: "ImagesTests", dependencies: ["Images"]),

        .testTarget(name: "DDPTrainerTests", dependencies: ["DDPTrainer", "CIFAR10", "ConvCore", "Images"], swiftSettings: simd),
    ]
)
