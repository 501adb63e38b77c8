import Foundation

/// Whether rank 0's standard output reaches a terminal, and how wide that terminal is.
///
/// Under mpirun every rank's standard output is a pseudo-terminal Open MPI opens for it, even
/// when mpirun's own output goes to a file or a pipe, so `isatty(1)` alone would say "terminal"
/// in a batch job. A rank launched by mpirun therefore looks at what its parent (mpirun, which
/// starts the ranks of its own node) writes to: `/proc/PPID/fd/1` must be a terminal device too.
/// A rank whose parent is a remote node's daemon sees no terminal there, and prints plain lines.
///
/// ```swift
/// if let terminal = Terminal.standardOutput() { print(terminal.columns ?? 80) }
/// ```
final class Terminal {
    /// The descriptor whose window size is the user's terminal's (standard output, or a
    /// read-only handle on mpirun's); nil when there is none to ask.
    private let sizeSource: Int32?

    private init(sizeSource: Int32?) { self.sizeSource = sizeSource }

    deinit { if let sizeSource, sizeSource != STDOUT_FILENO { close(sizeSource) } }

    /// For `--progress live` where no terminal can be found: a width of 80 is assumed.
    static func unknown() -> Terminal { Terminal(sizeSource: nil) }

    /// The terminal standard output is shown on, or nil for a file, a pipe or /dev/null.
    static func standardOutput() -> Terminal? {
        guard isatty(STDOUT_FILENO) == 1 else { return nil }
        let env = ProcessInfo.processInfo.environment
        guard env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil else { return Terminal(sizeSource: STDOUT_FILENO) }
        let parentOutput = "/proc/\(getppid())/fd/1"
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: parentOutput),
              target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty") else { return nil }
        let fd = open(parentOutput, O_RDONLY | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0, isatty(fd) == 1 else {
            if fd >= 0 { close(fd) }
            return nil
        }
        return Terminal(sizeSource: fd)
    }

    /// The terminal's width now (it may be resized), or nil if it does not say.
    var columns: Int? {
        var size = winsize()
        guard let sizeSource, ioctl(sizeSource, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }
}
