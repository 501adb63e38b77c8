import Foundation
import Testing

/// cluster/chaos.sh, short: a seeded handful of faults on 4 ranks, then the run must finish with
/// the bits of an uninterrupted run. The long soaks are run by hand (RELIABILITY.md).
@Suite(.serialized)
struct ChaosTests {
    static var script: String { CLI.root.appendingPathComponent("cluster/chaos.sh").path }

    @Test("a rank killed, a rank stalled, the writer killed mid-checkpoint and (as root) a full disk: every job ends with a message, nothing is left running, and the resumed run ends bit-identical to an uninterrupted one")
    func shortSoak() throws {
        let data = try CLI.makeData()
        let work = CLI.temporaryDirectory()
        // disk-full mounts a tmpfs, which needs root.
        let kinds = ["kill", "stop", "kill-writer"] + (getuid() == 0 ? ["disk-full"] : [])
        let r = try CLI.run([Self.script, "--seed", "3", "--faults", "\(kinds.count)", "--kinds", kinds.joined(separator: ","),
                             "--window", "200:800", "--ranks", "4", "--collective-timeout", "5", "--work", work, "--binary", CLI.binary, "--",
                             "--data", data, "--model", "tf-tutorial", "--batch-size", "8", "--epochs", "20",
                             "--checkpoint-every", "10", "--threads", "1", "--seed", "2"], timeout: 900)
        #expect(r.status == 0, "\(r.output)")
        let faults = r.output.split(separator: "\n").filter { $0.hasPrefix("fault ") }
        #expect(faults.count == kinds.count, "\(r.output)")
        for kind in kinds {
            #expect(faults.contains { $0.contains(" \(kind) ") }, "no \(kind) fault:\n\(r.output)")
        }
        // No fault may hang, crash or leave a process behind, and latest always names a valid checkpoint.
        #expect(faults.allSatisfy { !$0.contains("HANG") && !$0.contains("CRASH") && !$0.contains("LEFTOVER") && !$0.contains("INVALID") }, "\(r.output)")
        #expect(faults.contains { $0.contains("kill-writer") && $0.contains("a half-written checkpoint left behind") },
                "the writer was not killed mid-write:\n\(r.output)")
        #expect(r.output.contains("hangs 0, crashes 0, leftover processes 0, invalid latest 0, other failures 0"), "\(r.output)")
        #expect(r.output.contains("final weights bit-identical to the uninterrupted run"), "\(r.output)")
        #expect(CLI.rankPIDs(marker: work + "/run").isEmpty, "ranks left running")
    }
}
