import Foundation

/// A path for `name` in a fresh directory under one root per test process, removed when the
/// process exits.
func temporaryFile(_ name: String) -> String {
    let dir = imagesTestsRoot + "/" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}

private let imagesTestsRoot: String = {
    let root = imagesTestsRootPath(pid: getpid())
    try! FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: imagesTestsRootPath(pid: getpid())) }
    return root
}()

private func imagesTestsRootPath(pid: Int32) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("images-tests-\(pid)").path
}
