import ArgumentParser
import DDPTrainer
import Foundation

struct Models: SingleProcessCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the built-in models, or print one (or check a model file) in the model file format.",
        discussion: """
            Lists parameters, forward MFLOP per image and the default recipe.
              ddptrain models --show resnet20 > net.json   (edit it, then --model net.json)
              ddptrain models --show net.json              (checks it; prints it back)
              ddptrain models --show net.json --swift      (as a Swift ModelSpec expression)
            """)

    @Option(help: ArgumentHelp("Print this built-in model or model file (.json) as a model file.", valueName: "name-or-file"))
    var show: String?
    @Flag(help: "With --show: print the model as a Swift ModelSpec(...) expression instead.")
    var swift = false
    @Flag(help: "Print the list as JSON.")
    var json = false

    func validate() throws {
        if swift && show == nil { throw ValidationError("--swift goes with --show NAME") }
        if json && show != nil { throw ValidationError("--json is for the list; --show prints JSON already") }
    }

    /// One row of `--json`.
    struct Row: Encodable {
        let name: String
        let parameters: Int
        let forwardMFLOPs: Double
        let recipe: String
    }

    func run() throws {
        if let show {
            // A bad file throws ModelFileError: "Error: net.json:3:14: …" on stderr, status 1.
            let spec = try ModelSpec.resolve(show)
            print(swift ? spec.swiftExpression : spec.modelFileJSON, terminator: "")
            return
        }
        let rows = ModelSpec.all.map { spec in
            let network = Network(spec: spec, maxBatch: 1, threads: 1)
            return Row(name: spec.name, parameters: network.parameterCount,
                       forwardMFLOPs: (network.forwardFlopsPerImage / 1e4).rounded() / 100, recipe: spec.recipe.description)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            return
        }
        let header = ["model", "parameters", "MFLOP/image", "default recipe"]
        let cells = rows.map { [$0.name, grouped($0.parameters), String(format: "%.1f", $0.forwardMFLOPs), $0.recipe] }
        let widths = (0..<3).map { c in ([header] + cells).map { $0[c].count }.max()! }
        for row in [header] + cells {
            let name = row[0].padding(toLength: widths[0], withPad: " ", startingAt: 0)
            let numbers = (1..<3).map { String(repeating: " ", count: widths[$0] - row[$0].count) + row[$0] }
            print(([name] + numbers + [row[3]]).joined(separator: "  "))
        }
        print("\nForward MFLOP: multiply-adds ×2 for one 32x32 image. `ddptrain models --show NAME` prints a model as a file to edit.")
    }

    /// 1250858 → "1,250,858".
    private func grouped(_ n: Int) -> String {
        var digits = Array(String(n)), out: [Character] = []
        while digits.count > 3 { out = [","] + digits.suffix(3) + out; digits.removeLast(3) }
        return String(digits + out)
    }
}
