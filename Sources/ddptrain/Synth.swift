import ArgumentParser
import CIFAR10

struct Synth: SingleProcessCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a learnable synthetic data set in the CIFAR-10 binary layout.",
        discussion: "For trying ddptrain without the download, and for tests:\n  ddptrain synth --out data/synthetic")

    @Option(help: "Directory to write data_batch_1..5.bin, test_batch.bin and batches.meta.txt into.")
    var out: String

    @Option(help: "Images per training file (five files).")
    var trainPerFile = 1000

    @Option(help: "Images in test_batch.bin.")
    var test = 1000

    @Option(help: "Seed of the generated images.")
    var seed: UInt64 = 0

    func validate() throws {
        if trainPerFile < 1 || test < 1 { throw ValidationError("--train-per-file and --test must be at least 1") }
    }

    func run() throws {
        try writeSyntheticCIFAR10(to: out, trainPerFile: trainPerFile, testCount: test, seed: seed)
        print("wrote \(5 * trainPerFile) training and \(test) test images to \(out)")
    }
}
