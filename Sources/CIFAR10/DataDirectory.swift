import Foundation

/// Picks the data directory: `explicit` (the `--data` option), else `$CIFAR10_DIR`, else
/// `data/cifar-10-batches-bin` relative to the working directory. A place counts when it
/// holds `data_batch_1.bin`; the files themselves are validated later by `loadCIFAR10`.
///
/// An explicit path that lacks the data is an error about that path alone: silently falling
/// back to another data set would train on something the user did not ask for.
public func resolveDataDirectory(explicit: String?,
                                 environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
    if let explicit {
        if holdsCIFAR10(explicit) { return explicit }
        throw DataError.noDataDirectory(tried: [(explicit, "--data")])
    }
    var tried: [(path: String, origin: String)] = []
    if let fromEnvironment = environment["CIFAR10_DIR"], !fromEnvironment.isEmpty {
        if holdsCIFAR10(fromEnvironment) { return fromEnvironment }
        tried.append((fromEnvironment, "$CIFAR10_DIR"))
    }
    if holdsCIFAR10(CIFAR10.defaultDirectory) { return CIFAR10.defaultDirectory }
    // Under mpirun the working directory is easy to get wrong, so say which one was used.
    tried.append((CIFAR10.defaultDirectory, "default, relative to \(FileManager.default.currentDirectoryPath)"))
    throw DataError.noDataDirectory(tried: tried)
}

private func holdsCIFAR10(_ directory: String) -> Bool {
    var isDirectory: ObjCBool = false
    let path = joinPath(directory, CIFAR10.trainFiles[0])
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
}
