import DDPTrainer
import Foundation
import Testing

/// Rank 0's console under real mpirun: a live line in a terminal, plain lines in a file,
/// epoch lines only with --quiet, and nothing from the other ranks.
@Suite(.serialized) struct ProgressTests {
    /// tf-tutorial on 2 ranks: 200 images, batch 8, 25 steps per epoch.
    func command(data: String, _ extra: [String]) -> [String] {
        [CLI.launcher, "-n", "2", CLI.binary, "--data", data, "--run-dir", CLI.temporaryDirectory(),
         "--batch-size", "8", "--epochs", "2", "--threads", "1"] + extra
    }

    /// The command with its standard output on a pseudo-terminal (util-linux `script`), which
    /// mpirun's output then is.
    func terminal(_ arguments: [String]) -> [String] {
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        return ["script", "-qfec", quoted, "/dev/null"]
    }

    func inTerminal(_ arguments: [String]) throws -> CLI.Outcome { try CLI.run(terminal(arguments)) }

    @Test("output to a file: a plain line every --log-every steps and the epoch lines, from rank 0 only")
    func plainLines() throws {
        let data = try CLI.makeData()
        let r = try CLI.run(command(data: data, ["--log-every", "10"]))
        try #require(r.status == 0, "\(r.output)")
        #expect(!r.output.contains("\r") && !r.output.contains("\u{1B}"), "\(r.output)")
        let lines = r.output.split(separator: "\n").map(String.init)
        let progress = lines.filter { $0.hasPrefix("ep ") }
        // Global steps 10, 20, 30, 40; not at the epoch ends (25, 50), which have the epoch lines.
        #expect(progress.map { $0.split(separator: " ").prefix(3).joined(separator: " ") }
                    == ["ep 1/2 10/25", "ep 1/2 20/25", "ep 2/2 5/25", "ep 2/2 15/25"], "\(r.output)")
        for line in progress {
            #expect(line.range(of: #"^ep \d/2 \d+/25  loss \d\.\d{4}  acc \d+\.\d\d%  \d+ img/s  \d+:\d\d<\d+:\d\d  run \d+:\d\d<\d+:\d\d$"#,
                               options: .regularExpression) != nil, "\(line)")
        }
        #expect(lines.filter { $0.hasPrefix("epoch ") }.count == 2, "\(r.output)")
        #expect(lines.filter { $0.hasPrefix("ddptrain: ") }.count == 1, "only rank 0 speaks:\n\(r.output)")
    }

    @Test("on a terminal: one line redrawn in place, at most about 5 times a second, even when every step is logged")
    func liveLine() throws {
        let data = try CLI.makeData()
        let started = Date()
        let r = try inTerminal(command(data: data, ["--log-every", "1", "--epochs", "3"]))
        let seconds = Date().timeIntervalSince(started)
        try #require(r.status == 0, "\(r.output)")
        let redraws = r.output.components(separatedBy: "\r" + "ep ").count - 1
        #expect(redraws >= 3, "\(r.output.debugDescription)")
        // The first step and each epoch's last are always drawn; otherwise at most every 0.2 s.
        #expect(Double(redraws) <= 6 * seconds + 4, "\(redraws) redraws in \(seconds) s")
        // Each redraw returns to the line's start and clears what was left of the last.
        let segments = r.output.components(separatedBy: "\r").filter { $0.hasPrefix("ep ") }
        #expect(segments.allSatisfy { $0.hasSuffix("\u{1B}[K") }, "\(segments)")
        #expect(segments.contains { $0.hasPrefix("ep 3/3 25/25  loss ") }, "\(segments)")
        // What the terminal shows: the epoch lines and messages on rows of their own, and no
        // progress line left behind (it is erased before anything else is printed).
        let rows = r.output.components(separatedBy: "\r\n").map { row in
            String(row.components(separatedBy: "\r").last ?? "").replacingOccurrences(of: "\u{1B}[K", with: "")
        }
        #expect(!rows.contains { $0.hasPrefix("ep ") }, "\(rows)")
        #expect(rows.filter { $0.hasPrefix("epoch ") }.count == 3, "\(rows)")
        #expect(rows.contains { $0.hasPrefix("wrote ") }, "\(rows)")
    }

    @Test("--progress plain on a terminal prints plain lines; --progress live into a file redraws")
    func forcedModes() throws {
        let data = try CLI.makeData()
        let plain = try inTerminal(command(data: data, ["--log-every", "10", "--progress", "plain"]))
        #expect(plain.status == 0 && !plain.output.contains("\u{1B}[K"), "\(plain.output.debugDescription)")
        #expect(plain.output.contains("\nep 1/2 10/25  loss "), "\(plain.output.debugDescription)")
        let live = try CLI.run(command(data: data, ["--progress", "live"]))
        #expect(live.status == 0 && live.output.contains("\rep 1/2 1/25  loss "), "\(live.output.debugDescription)")
    }

    /// One process on a terminal, signalled once its live line is up: it stops at the next step,
    /// and the terminal keeps the progress line as last drawn, ended, with the stop message on the
    /// row below, not erased or run over (under mpirun the other ranks print theirs at once).
    @Test("a stop signal on a terminal ends the live line; the stop message starts on a row of its own")
    func stopEndsLiveLine() throws {
        let data = try CLI.makeData()
        let dir = CLI.temporaryDirectory()
        let (process, log) = try CLI.start(terminal([CLI.binary, "--data", data, "--run-dir", dir, "--batch-size", "8",
                                                     "--epochs", "20", "--threads", "1", "--progress", "live"]))
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline
                && !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\rep ") {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let pid = try #require(CLI.rankPIDs(marker: dir).first, "ddptrain is not running")
        kill(pid, SIGTERM)
        let r = CLI.finish(process, log: log, timeout: 120)
        #expect(r.status == StopSignal.exitStatus, "\(r.output.debugDescription)")
        // What the terminal shows on each row (the terminal turns every newline into "\r\n"): the
        // last text a carriage return went back over.
        let rows = r.output.components(separatedBy: "\r\n").map { row in
            (row.components(separatedBy: "\r").filter { !$0.isEmpty }.last ?? "").replacingOccurrences(of: "\u{1B}[K", with: "")
        }
        let stop = try #require(rows.firstIndex { $0.hasPrefix("ddptrain: stopped on SIGTERM at global step ") }, "\(rows)")
        // The row above is that progress line, or, when the stop came at an epoch's last step,
        // that epoch's line with the progress line above it.
        let above = rows[..<stop].suffix(2)
        #expect(above.last?.hasPrefix("ep ") == true || (above.last?.hasPrefix("epoch ") == true && above.first?.hasPrefix("ep ") == true),
                "\(rows)")
    }

    @Test("--quiet prints only the epoch lines, on a terminal too")
    func quiet() throws {
        let data = try CLI.makeData()
        let r = try inTerminal(command(data: data, ["--quiet", "--log-every", "5"]))
        try #require(r.status == 0, "\(r.output)")
        let lines = r.output.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.count == 2 && lines.allSatisfy { $0.hasPrefix("epoch ") }, "\(r.output.debugDescription)")
        let bad = try CLI.run(command(data: data, ["--log-every", "0"]))
        #expect(bad.status != 0 && bad.output.contains("--log-every must be at least 1"), "\(bad.output)")
    }
}
