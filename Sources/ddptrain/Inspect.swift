import ArgumentParser
import DDPTrainer
import Foundation

struct Inspect: SingleProcessCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's (or model.safetensors') metadata and tensors, and whether its checksum holds.",
        discussion: "Example: ddptrain inspect runs/tf-tutorial/checkpoints/step-00000790.safetensors")

    @Argument(help: "A checkpoint, a run's model.safetensors, or any safetensors file.")
    var path: String

    func run() throws {
        let report: CheckpointReport
        do {
            report = try CheckpointReport(path: path)
        } catch {
            throw ValidationError("\(error)")
        }
        print(report.text)
        if report.checksumHolds == false {
            FileHandle.standardError.write(Data("error: \(path): checksum mismatch: the file is corrupt (truncated or modified)\n".utf8))
            throw ExitCode(1)
        }
    }
}
