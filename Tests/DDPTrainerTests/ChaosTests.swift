import Foundation
import Testing

/// cluster/chaos.sh, short: a seeded handful of faults on 4 ranks, then the run must finish with
/// the bits of an uninterrupted run. The long soaks are run by hand (RELIABILITY.md).
@Suite(.serialized)
struct ChaosTests {
    static var script: String { CLI.root.appendingPathComponent("cluster/chaos.sh").path }

    @Test("a rank killed, a rank stalled and the writer killed mid-checkpoint: every job ends with a message, nothing is left running, and the resumed run ends bit-identical to an uninterrupted one")
    func shortSoak() throws {
        let data = try CLI.makeData()
        let work = CLI.temporaryDirectory()
        let r = try CLI.run([Self.script, "--seed", "3", "--faults", "3", "--kinds", "kill,stop,kill-writer",
                             "--window", "200:800", "--ranks", "4", "--collective-timeout", "5", "--work", work, "--binary", CLI.binary, "--",
                             "--data", data, "--model", "tf-tutorial", "--batch-size", "8", "--epochs", "20",
                             "--checkpoint-every", "10", "--threads", "1", "--seed", "2"], timeout: 900)
        #expect(r.status == 0, "\(r.output)")
        let faults = r.output.split(separator: "\n").filter { $0.hasPrefix("fault ") }
        #expect(faults.count == 3, "\(r.output)")
        for kind in ["kill ", "stop ", "kill-writer "] {
            #expect(faults.contains { $0.contains(" \(kind)") }, "no \(kind)fault:\n\(r.output)")
        }
        // The stall is ended by the watchdog, so within its 5 s plus mpirun's clean-up.
        #expect(faults.allSatisfy { !$0.contains("HANG") && !$0.contains("LEFTOVER") && !$0.contains("INVALID") }, "\(r.output)")
        #expect(faults.contains { $0.contains("kill-writer") && $0.contains("a half-written checkpoint left behind") },
                "the writer was not killed mid-write:\n\(r.output)")
        #expect(r.output.contains("hangs 0, leftover processes 0, invalid latest 0, other failures 0"), "\(r.output)")
        #expect(r.output.contains("final weights bit-identical to the uninterrupted run"), "\(r.output)")
        #expect(CLI.rankPIDs(marker: work + "/run").isEmpty, "ranks left running")
    }
}
