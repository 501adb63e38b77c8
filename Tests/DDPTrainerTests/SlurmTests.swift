import DDPTrainer
import Foundation
import Testing

/// A real single-node Slurm cluster (cluster/slurm-local.sh: munged, slurmctld, slurmd from
/// Debian's packages), started by each test and stopped when it ends.
struct SlurmCluster {
    static let script = CLI.root.appendingPathComponent("cluster/slurm-local.sh").path

    /// Why Slurm cannot start on this machine, or nil when it can.
    static let unavailable: String? = {
        if getuid() != 0 { return "not root: slurmd must run as root to start jobs" }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin"
        for tool in ["munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue"] {
            let found = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
            if !found { return "\(tool) not installed (scripts/install-deps.sh --tests installs slurm-wlm and munge)" }
        }
        return nil
    }()

    let name = "ddpslurmt\(getpid())"
    let conf: String

    init() throws {
        let up = try CLI.run(["DDP_SLURM_NAME=\(name)", SlurmCluster.script, "up"], timeout: 120)
        try #require(up.status == 0, "cluster/slurm-local.sh up failed: \(up.output)")
        conf = "/tmp/\(name)/slurm.conf"
    }

    func stop() {
        let down = try? CLI.run(["DDP_SLURM_NAME=\(name)", SlurmCluster.script, "down"], timeout: 120)
        #expect(down?.status == 0, "cluster/slurm-local.sh down: \(down?.output ?? "did not run")")
    }

    /// A Slurm command, run from the repository's root (where cluster/slurm.sbatch expects to start).
    func run(_ arguments: [String], timeout: TimeInterval = 600) throws -> CLI.Outcome {
        try CLI.run(["-C", CLI.root.path, "SLURM_CONF=\(conf)"] + arguments, timeout: timeout)
    }

    /// Submits a batch job and returns its id.
    func submit(_ arguments: [String]) throws -> Int {
        let r = try run(["sbatch", "--parsable"] + arguments)
        try #require(r.status == 0, "sbatch: \(r.output)")
        return try #require(Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first ?? ""), "sbatch printed \(r.output)")
    }

    /// `scontrol show job`'s fields (JobState, Restarts, ExitCode, …).
    func job(_ id: Int) throws -> [String: String] {
        let r = try run(["scontrol", "show", "job", "-o", "\(id)"])
        return Dictionary(r.output.split(whereSeparator: \.isWhitespace).compactMap { field -> (String, String)? in
            guard let eq = field.firstIndex(of: "=") else { return nil }
            return (String(field[..<eq]), String(field[field.index(after: eq)...]))
        }, uniquingKeysWith: { first, _ in first })
    }

    /// Waits until the job has ended for good (not pending, running, requeued or completing).
    func waitForEnd(_ id: Int, timeout: TimeInterval) throws -> [String: String] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let fields = try job(id)
            if let state = fields["JobState"], ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(state) {
                return fields
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        Issue.record("job \(id) did not end within \(timeout) s: \(try job(id))")
        _ = try run(["scancel", "\(id)"])
        return try job(id)
    }

    /// Processes started for this cluster's jobs (their environment names its configuration
    /// and a job): orted, the ranks, srun; not the daemons.
    func jobProcesses() -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            let variables = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return variables.contains("SLURM_CONF=\(conf)") && variables.contains { $0.hasPrefix("SLURM_JOB_ID=") }
        }
    }
}

/// ddptrain under a real Slurm: batch jobs through cluster/slurm.sbatch, a direct srun launch,
/// a time limit met by stop-and-requeue, and scancel.
@Suite(.serialized, .enabled(if: SlurmCluster.unavailable == nil, "Slurm cannot start here: \(SlurmCluster.unavailable ?? "")"))
struct SlurmTests {
    func trainArguments(data: String, runDir: String, epochs: Int) -> [String] {
        ["--data", data, "--run-dir", runDir, "--model", "keras-cnn", "--batch-size", "8", "--epochs", "\(epochs)",
         "--optimizer", "adam", "--augment", "--seed", "7", "--threads", "1", "--checkpoint-every", "10", "--progress", "plain"]
    }

    /// The weights of the same training as 2 ranks on this host, outside Slurm.
    func reference(data: String, epochs: Int) throws -> [String: [Float]] {
        let dir = CLI.temporaryDirectory()
        let r = try CLI.run([CLI.launcher, "-n", "2", CLI.binary] + trainArguments(data: data, runDir: dir, epochs: epochs))
        try #require(r.status == 0, "\(r.output)")
        return try CLI.weights(dir + "/model.safetensors")
    }

    @Test("sbatch cluster/slurm.sbatch with 2 tasks, and srun --mpi=pmix with 2 tasks: the parameters of 2 ranks under mpirun")
    func batchAndSrun() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let straight = try reference(data: data, epochs: 1)

        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(["--nodes", "1", "--ntasks-per-node", "2", "--output", dir + "/job.out", "cluster/slurm.sbatch"]
                                  + trainArguments(data: data, runDir: dir, epochs: 1))
        let end = try slurm.waitForEnd(id, timeout: 300)
        let output = (try? String(contentsOfFile: dir + "/job.out", encoding: .utf8)) ?? ""
        #expect(end["JobState"] == "COMPLETED" && end["ExitCode"] == "0:0", "\(end)\n\(output)")
        #expect(output.contains("2 ranks"), "\(output)")
        #expect(try CLI.weights(dir + "/model.safetensors") == straight)

        let mpi = try slurm.run(["srun", "--mpi=list"])
        #expect(mpi.output.contains("pmix"), "srun --mpi=list: \(mpi.output)")
        let direct = CLI.temporaryDirectory()
        let r = try slurm.run(["srun", "-n", "2", "--mpi=pmix", CLI.binary] + trainArguments(data: data, runDir: direct, epochs: 1), timeout: 300)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("2 ranks"), "\(r.output)")
        #expect(try CLI.weights(direct + "/model.safetensors") == straight)
        #expect(slurm.jobProcesses().isEmpty, "processes of finished jobs left running")
    }

    /// --time=1 with the warning 45 s before it: Slurm checks time limits every 30 s, so the
    /// warning comes 15–45 s into each run. The training takes longer than that.
    @Test("a time limit shorter than the training: warned, stopped with a checkpoint, requeued and finished, bit-for-bit the uninterrupted run")
    func requeueAtTimeLimit() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let epochs = 8
        let started = Date()
        let straight = try reference(data: data, epochs: epochs)
        let referenceSeconds = Date().timeIntervalSince(started)

        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(["--nodes", "1", "--ntasks-per-node", "2", "--time", "1", "--signal", "B:USR1@45",
                                   "--output", dir + "/job.out", "cluster/slurm.sbatch"] + trainArguments(data: data, runDir: dir, epochs: epochs))
        let end = try slurm.waitForEnd(id, timeout: 900)
        let output = (try? String(contentsOfFile: dir + "/job.out", encoding: .utf8)) ?? ""
        #expect(end["JobState"] == "COMPLETED" && end["ExitCode"] == "0:0", "\(end)\n\(output)")
        let restarts = Int(end["Restarts"] ?? "") ?? 0
        #expect(restarts >= 1, "the uninterrupted run took \(referenceSeconds) s; the job was never requeued:\n\(output)")
        #expect(output.contains("stopped on SIGUSR1 at global step"), "\(output)")
        #expect(output.contains("requeueing job \(id)"), "\(output)")
        #expect(try CLI.weights(dir + "/model.safetensors") == straight, "\(output)")
        #expect(slurm.jobProcesses().isEmpty, "processes of finished jobs left running")
    }

    @Test("scancel during a run: every rank ends, nothing of the job is left running, latest names a valid checkpoint")
    func scancel() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(["--nodes", "1", "--ntasks-per-node", "2", "--output", dir + "/job.out", "cluster/slurm.sbatch"]
                                  + trainArguments(data: data, runDir: dir, epochs: 30))
        let deadline = Date().addingTimeInterval(180)
        while Date() < deadline && !FileManager.default.fileExists(atPath: dir + "/latest") { Thread.sleep(forTimeInterval: 0.05) }
        try #require(CLI.rankPIDs(marker: dir).count == 2, "2 ranks expected to be running")
        let cancel = try slurm.run(["scancel", "\(id)"])
        #expect(cancel.status == 0, "\(cancel.output)")
        let end = try slurm.waitForEnd(id, timeout: 120)
        #expect(end["JobState"] == "CANCELLED", "\(end)")
        // Slurm sends SIGKILL KillWait (20 s here) after SIGTERM; allow for a slow machine.
        let gone = Date().addingTimeInterval(60)
        while Date() < gone && !(CLI.rankPIDs(marker: dir).isEmpty && slurm.jobProcesses().isEmpty) { Thread.sleep(forTimeInterval: 0.2) }
        #expect(CLI.rankPIDs(marker: dir).isEmpty, "ranks left running")
        #expect(slurm.jobProcesses().isEmpty, "processes of the cancelled job left running")
        let pointer = try #require(try? String(contentsOfFile: dir + "/latest", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)
        let probe = Network(spec: .kerasCNN, maxBatch: 1, threads: 1)
        #expect(throws: Never.self) { try Checkpoint.load(dir + "/" + pointer, for: probe, optimizer: .adam) }
    }
}
