import DDPTrainer
import Foundation
import Testing

/// A real Slurm cluster (cluster/slurm-local.sh: munged, slurmctld and slurmd from Debian's
/// packages), started by each test and stopped when it ends. Where network namespaces can be
/// made it has 2 nodes, one slurmd on each host of a simulated multi-host cluster
/// (cluster/netns-cluster.sh); elsewhere one node. `DDPTRAIN_TEST_SLURM_HOSTS=1` asks for one
/// node anyway.
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

    /// Nodes of the tests' clusters: 2 where the simulated hosts can be made, else 1 (said once).
    static let hosts: Int = {
        if ProcessInfo.processInfo.environment["DDPTRAIN_TEST_SLURM_HOSTS"] == "1" {
            print("SlurmTests: one node (DDPTRAIN_TEST_SLURM_HOSTS=1); the 2-node cases are skipped")
            return 1
        }
        if NetnsCluster.available { return 2 }
        print("SlurmTests: one node, the 2-node cases are skipped: no simulated hosts here (needs root, iproute2, mpirun, unshare and permission to create network namespaces)")
        return 1
    }()

    let name = "ddpslurmt\(getpid())"
    /// The namespaces of the simulated hosts (PREFIX-h1, PREFIX-h2), beside MultiHostTests' own.
    static let prefix = NetnsCluster.prefix + "s"
    let hosts = SlurmCluster.hosts
    let conf: String

    init() throws {
        let up = try CLI.run(["DDP_SLURM_NAME=\(name)", "DDP_NETNS_PREFIX=\(SlurmCluster.prefix)", SlurmCluster.script, "up",
                              "--hosts", "\(hosts)"], timeout: 120)
        conf = "/tmp/\(name)/slurm.conf"
        if up.status != 0 { stop() }
        try #require(up.status == 0, "cluster/slurm-local.sh up --hosts \(hosts) failed: \(up.output)")
    }

    /// Stops the cluster; records whatever it leaves behind (a daemon, slurmstepd, a job's
    /// process or a namespace).
    func stop() {
        let down = try? CLI.run(["DDP_SLURM_NAME=\(name)", SlurmCluster.script, "down"], timeout: 120)
        #expect(down?.status == 0, "cluster/slurm-local.sh down: \(down?.output ?? "did not run")")
        #expect(processes(job: false).isEmpty, "processes of the cluster left running: \(processes(job: false))")
        let namespaces = NetnsCluster.namespaces(prefix: SlurmCluster.prefix)
        #expect(namespaces.isEmpty, "namespaces left behind: \(namespaces)")
    }

    /// A Slurm command, run from the repository's root (where cluster/slurm.sbatch expects to
    /// start) on the login node (host 1 of a multi-node cluster).
    func run(_ arguments: [String], timeout: TimeInterval = 600) throws -> CLI.Outcome {
        try CLI.run(["-C", CLI.root.path, "DDP_SLURM_NAME=\(name)", SlurmCluster.script, "run"] + arguments, timeout: timeout)
    }

    /// `--nodes` and `--ntasks-per-node` for 2 ranks on this cluster: one per node on 2 nodes.
    var twoRanks: [String] { ["--nodes", "\(hosts)", "--ntasks-per-node", "\(2 / hosts)"] }

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

    /// Processes of this cluster (their environment names its configuration or its name): with
    /// `job`, those started for its jobs (orted, the ranks, srun), else every one: the daemons
    /// (munged included) and slurmstepd too.
    func processes(job: Bool) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            let variables = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if job { return variables.contains("SLURM_CONF=\(conf)") && variables.contains { $0.hasPrefix("SLURM_JOB_ID=") } }
            return variables.contains("SLURM_CONF=\(conf)") || variables.contains("DDP_SLURM_NAME=\(name)")
        }
    }
    func jobProcesses() -> [Int32] { processes(job: true) }
}

/// ddptrain under a real Slurm: batch jobs through cluster/slurm.sbatch, a direct srun launch,
/// a time limit met by stop-and-requeue, and scancel; 2 ranks, one on each of 2 nodes where the
/// simulated hosts can be made (SlurmCluster.hosts), else both on one node.
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

    @Test("sbatch cluster/slurm.sbatch with 2 tasks (on 2 nodes where the simulated hosts can be made), and srun --mpi=pmix with 2 tasks: the parameters of 2 ranks under mpirun on one host")
    func batchAndSrun() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let straight = try reference(data: data, epochs: 1)
        let hostNames = (1...slurm.hosts).map { "\(SlurmCluster.prefix)-h\($0)" }

        if slurm.hosts == 2 {
            // Each node's tasks run in its host's network namespace (the kernel's view), under the node's name.
            let placement = try slurm.run(["srun", "--nodes", "2", "--ntasks", "2", "--label", "sh", "-c", "echo $(hostname) $(ip netns identify $$)"], timeout: 120)
            let lines = Set(placement.output.split(separator: "\n").map(String.init))
            #expect(lines == ["0: \(hostNames[0]) \(hostNames[0])", "1: \(hostNames[1]) \(hostNames[1])"], "\(placement.output)")
        }

        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(slurm.twoRanks + ["--output", dir + "/job.out", "cluster/slurm.sbatch"]
                                  + trainArguments(data: data, runDir: dir, epochs: 1))
        // Where the ranks run, from their network namespaces, while the job lasts.
        let byInode = NetnsCluster.namespacesByInode(prefix: SlurmCluster.prefix)
        var rankHosts = Set<String>()
        let watchUntil = Date().addingTimeInterval(300)
        var polls = 0
        while slurm.hosts == 2 && rankHosts.count < 2 && Date() < watchUntil {
            for pid in CLI.rankPIDs(marker: dir) { if let ns = NetnsCluster.namespaceInode(of: pid).flatMap({ byInode[$0] }) { rankHosts.insert(ns) } }
            polls += 1
            if polls % 20 == 0, let state = try slurm.job(id)["JobState"], !["PENDING", "RUNNING", "CONFIGURING"].contains(state) { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let end = try slurm.waitForEnd(id, timeout: 300)
        let output = (try? String(contentsOfFile: dir + "/job.out", encoding: .utf8)) ?? ""
        #expect(end["JobState"] == "COMPLETED" && end["ExitCode"] == "0:0", "\(end)\n\(output)")
        #expect(output.contains("2 ranks"), "\(output)")
        if slurm.hosts == 2 {
            #expect(end["NodeList"] == "\(SlurmCluster.prefix)-h[1-2]", "\(end)")
            #expect(rankHosts == Set(hostNames), "ranks seen running in \(rankHosts)")
        }
        #expect(try CLI.weights(dir + "/model.safetensors") == straight)

        let mpi = try slurm.run(["srun", "--mpi=list"])
        #expect(mpi.output.contains("pmix"), "srun --mpi=list: \(mpi.output)")
        let direct = CLI.temporaryDirectory()
        let r = try slurm.run(["srun", "--nodes", "\(slurm.hosts)", "--ntasks", "2", "--mpi=pmix", CLI.binary]
                              + trainArguments(data: data, runDir: direct, epochs: 1), timeout: 300)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("2 ranks"), "\(r.output)")
        #expect(try CLI.weights(direct + "/model.safetensors") == straight)
        #expect(slurm.jobProcesses().isEmpty, "processes of finished jobs left running")
    }

    /// --time=1 with the warning 45 s before it: Slurm looks at time limits every 30 s (and may
    /// send the warning up to a minute early), so the warning comes at most 45 s into each run.
    /// The training must outlast that whatever the machine's speed: its length in epochs is
    /// measured here and now (one epoch, start-up included, is at most 1/120 of it), and the
    /// uninterrupted reference runs beside the job, slowing it further.
    @Test("a time limit shorter than the training: warned, stopped with a checkpoint, requeued and finished, bit-for-bit the uninterrupted run")
    func requeueAtTimeLimit() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let probe = try CLI.run([CLI.launcher, "-n", "2", CLI.binary] + trainArguments(data: data, runDir: CLI.temporaryDirectory(), epochs: 1))
        try #require(probe.status == 0, "\(probe.output)")
        let epochs = min(200, max(8, Int((120 / probe.seconds).rounded(.up))))

        let straightDir = CLI.temporaryDirectory()
        let (straightRun, straightLog) = try CLI.start([CLI.launcher, "-n", "2", CLI.binary] + trainArguments(data: data, runDir: straightDir, epochs: epochs))
        defer { if straightRun.isRunning { straightRun.terminate() } }
        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(slurm.twoRanks + ["--time", "1", "--signal", "B:USR1@45",
                                   "--output", dir + "/job.out", "cluster/slurm.sbatch"] + trainArguments(data: data, runDir: dir, epochs: epochs))
        let end = try slurm.waitForEnd(id, timeout: 900)
        let straight = CLI.finish(straightRun, log: straightLog, timeout: 900)
        try #require(straight.status == 0, "the uninterrupted run: \(straight.output)")
        let output = (try? String(contentsOfFile: dir + "/job.out", encoding: .utf8)) ?? ""
        #expect(end["JobState"] == "COMPLETED" && end["ExitCode"] == "0:0", "\(end)\n\(output)")
        let restarts = Int(end["Restarts"] ?? "") ?? 0
        #expect(restarts >= 1, "\(epochs) epochs (one took \(probe.seconds) s); the uninterrupted run took \(straight.seconds) s; the job was never requeued:\n\(output)")
        #expect(output.contains("stopped on SIGUSR1 at global step"), "\(output)")
        #expect(output.contains("requeueing job \(id)"), "\(output)")
        #expect(try CLI.weights(dir + "/model.safetensors") == CLI.weights(straightDir + "/model.safetensors"), "\(output)")
        #expect(slurm.jobProcesses().isEmpty, "processes of finished jobs left running")
    }

    @Test("scancel during a run: every rank ends, nothing of the job is left running, latest names a valid checkpoint")
    func scancel() throws {
        let slurm = try SlurmCluster()
        defer { slurm.stop() }
        let data = try CLI.makeData(trainPerFile: 60)
        let dir = CLI.temporaryDirectory()
        let id = try slurm.submit(slurm.twoRanks + ["--output", dir + "/job.out", "cluster/slurm.sbatch"]
                                  + trainArguments(data: data, runDir: dir, epochs: 30))
        CLI.waitForFirstCheckpoint(dir, timeout: 180)
        try #require(CLI.rankPIDs(marker: dir, count: 2).count == 2, "2 ranks expected to be running")
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
