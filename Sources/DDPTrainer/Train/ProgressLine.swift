import Foundation

/// How rank 0 shows progress between epoch lines.
public enum ProgressMode: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// `live` when standard output is a terminal (see `Terminal`), else `plain`.
    case auto
    /// One line redrawn in place, about five times a second.
    case live
    /// A line every `--log-every` steps, for logs and CI.
    case plain
    public var description: String { rawValue }
}

/// The text of a progress line, the same in live and plain mode:
///
/// ```
/// ep 3/30 41/79  loss 1.2345  acc 45.12%  5123 img/s  0:03<0:04  run 1:23<2:10
/// ```
///
/// Epoch and step within it; training loss and accuracy of the epoch so far, over the whole
/// global batch; images/s; elapsed `<` remaining time, for the epoch and for the run
/// (evaluations included; a resumed run counts from its resume). Short enough for 80 columns,
/// and never starting with "epoch", which begins the epoch lines scripts look for.
struct ProgressLine {
    var step: Int, steps: Int, epoch: Int, epochs: Int
    var loss: Double, accuracy: Double, imagesPerSecond: Double
    var epochElapsed: Double, epochRemaining: Double?
    var runElapsed: Double, runRemaining: Double?

    var text: String {
        String(format: "ep %d/%d %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ", epoch, epochs, step, steps,
               loss, 100 * accuracy, imagesPerSecond)
            + "\(Self.duration(epochElapsed))<\(Self.duration(epochRemaining))  run \(Self.duration(runElapsed))<\(Self.duration(runRemaining))"
    }

    /// `m:ss`, or `h:mm:ss` from an hour on; `?` while unknown.
    static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
