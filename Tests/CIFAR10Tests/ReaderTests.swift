import CIFAR10
import Foundation
import Testing

@Suite struct ReaderTests {
    @Test func loadsRecordsInFileOrderWithPlanarPixels() throws {
        let dir = try TemporaryDirectory()
        try writeKnownDataSet(in: dir)

        let train = try loadCIFAR10(directory: dir.path, split: .train)
        #expect(train.count == 10)
        #expect(train.labels == (0..<10).map { UInt8($0) })
        #expect(train.pixels.count == 10 * 3072)
        #expect(train.sources == CIFAR10.trainFiles.map { DataSource(name: $0, bytes: 2 * 3073) })
        for n in [0, 3, 9] {
            for (c, y, x) in [(0, 0, 0), (1, 5, 31), (2, 31, 17), (2, 31, 31)] {
                #expect(train.pixels[n * 3072 + c * 1024 + y * 32 + x] == knownPixel(record: n, channel: c, y: y, x: x))
            }
        }

        let test = try loadCIFAR10(directory: dir.path + "/", split: .test)
        #expect(test.count == 3)
        #expect(test.labels == [9, 0, 4])
        #expect(test.sources == [DataSource(name: "test_batch.bin", bytes: 3 * 3073)])
        #expect(test.pixels[2 * 3072 + 1024 + 40] == knownPixel(record: 102, channel: 1, y: 1, x: 8))
    }

    @Test func missingFileIsNamed() throws {
        let dir = try TemporaryDirectory()
        try writeKnownDataSet(in: dir)
        try FileManager.default.removeItem(atPath: dir.file("data_batch_3.bin"))
        let error = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .train) }
        guard case .fileMissing(let path)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(path == dir.file("data_batch_3.bin"))
        #expect(error!.description.hasPrefix(dir.file("data_batch_3.bin") + ": file not found"))
        // The test split does not need the training files.
        #expect(try loadCIFAR10(directory: dir.path, split: .test).count == 3)
    }

    @Test func emptyFileIsRefused() throws {
        let dir = try TemporaryDirectory()
        try writeKnownDataSet(in: dir)
        try dir.write("data_batch_2.bin", [])
        let error = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .train) }
        guard case .emptyFile(let path)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(path == dir.file("data_batch_2.bin"))
        #expect(error!.description.hasPrefix(dir.file("data_batch_2.bin") + ": file is empty"))
    }

    @Test func truncatedFileReportsSizeAndTrailingBytes() throws {
        let dir = try TemporaryDirectory()
        try writeKnownDataSet(in: dir)
        let records = knownRecords(labels: [1, 2, 3], firstRecord: 0)
        try dir.write("data_batch_4.bin", Array(records.prefix(2 * 3073 + 100)))
        let error = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .train) }
        guard case let .badSize(path, bytes)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(path == dir.file("data_batch_4.bin"))
        #expect(bytes == 6246)
        let text = error!.description
        #expect(text.hasPrefix(dir.file("data_batch_4.bin") + ": size 6246 bytes is not a multiple of the 3073-byte record size"))
        #expect(text.contains("2 whole records + 100 trailing bytes"))
    }

    @Test func labelAboveNineIsReportedWithRecordIndex() throws {
        let dir = try TemporaryDirectory()
        try writeKnownDataSet(in: dir)
        try dir.write("data_batch_5.bin", knownRecords(labels: [3, 10, 4], firstRecord: 0))
        let error = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .train) }
        guard case let .badLabel(path, record, label)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(path == dir.file("data_batch_5.bin"))
        #expect(record == 1 && label == 10)
        #expect(error!.description.hasPrefix(dir.file("data_batch_5.bin") + ": record 1 (byte offset 3073) has label 10"))

        try dir.write("test_batch.bin", knownRecords(labels: [255], firstRecord: 0))
        let testError = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .test) }
        #expect(testError?.description.hasPrefix(dir.file("test_batch.bin") + ": record 0 (byte offset 0) has label 255") == true)
    }

    @Test func directoryInPlaceOfFileIsUnreadable() throws {
        let dir = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.file("test_batch.bin"), withIntermediateDirectories: false)
        let error = #expect(throws: DataError.self) { try loadCIFAR10(directory: dir.path, split: .test) }
        #expect(error?.description == dir.file("test_batch.bin") + ": cannot read: not a regular file")
    }

    @Test func classNamesComeFromMetaFileOrDefaults() throws {
        let dir = try TemporaryDirectory()
        #expect(loadClassNames(directory: dir.path) == CIFAR10.defaultClassNames)
        try dir.write("batches.meta.txt", Array(((0..<10).map { "c\($0)" }.joined(separator: "\n") + "\n\n").utf8))
        #expect(loadClassNames(directory: dir.path) == (0..<10).map { "c\($0)" })
        try dir.write("batches.meta.txt", Array("only\ntwo\n".utf8))
        #expect(loadClassNames(directory: dir.path) == CIFAR10.defaultClassNames)
    }

    static let sample = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().appendingPathComponent("../../../shared/cifar10-sample").standardized.path

    @Test(.enabled(if: FileManager.default.fileExists(atPath: sample + "/data_batch_1.bin")))
    func realSampleLoadsWithKnownStatistics() throws {
        let train = try loadCIFAR10(directory: Self.sample, split: .train)
        #expect(train.count == 5 * 1017)
        #expect(train.labels.allSatisfy { $0 < 10 })
        #expect(Set(train.labels).count == 10)
        #expect(loadClassNames(directory: Self.sample) == CIFAR10.defaultClassNames)
        // The published statistics of the full training set are (0.4914, 0.4822, 0.4465) and
        // (0.2470, 0.2435, 0.2616); a 10% sample lands close.
        let n = Normalization.measure(train)
        for (measured, published) in zip(n.mean + n.std, [0.4914, 0.4822, 0.4465, 0.2470, 0.2435, 0.2616] as [Float]) {
            #expect(abs(measured - published) < 0.01)
        }
    }
}

@Suite struct DataDirectoryTests {
    @Test func explicitPathWins() throws {
        let good = try TemporaryDirectory(), other = try TemporaryDirectory()
        try writeKnownDataSet(in: good)
        try writeKnownDataSet(in: other)
        #expect(try resolveDataDirectory(explicit: good.path, environment: ["CIFAR10_DIR": other.path]) == good.path)
        #expect(try resolveDataDirectory(explicit: nil, environment: ["CIFAR10_DIR": other.path]) == other.path)
    }

    @Test func explicitPathWithoutDataIsAnErrorAboutThatPathOnly() throws {
        let empty = try TemporaryDirectory(), other = try TemporaryDirectory()
        try writeKnownDataSet(in: other)
        let error = #expect(throws: DataError.self) {
            try resolveDataDirectory(explicit: empty.path, environment: ["CIFAR10_DIR": other.path])
        }
        guard case .noDataDirectory(let tried)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(tried.map(\.path) == [empty.path])
        #expect(error!.description.contains(empty.path + " (--data)"))
        #expect(!error!.description.contains(other.path))
    }

    @Test func errorListsEveryPlaceTriedAndHowToGetData() throws {
        let empty = try TemporaryDirectory()
        let environment = ["CIFAR10_DIR": empty.path + "/nowhere"]
        if FileManager.default.fileExists(atPath: CIFAR10.defaultDirectory + "/data_batch_1.bin") {
            // Someone fetched the real data next to the tests: the default is then the answer.
            #expect(try resolveDataDirectory(explicit: nil, environment: environment) == CIFAR10.defaultDirectory)
            return
        }
        let error = #expect(throws: DataError.self) { try resolveDataDirectory(explicit: nil, environment: environment) }
        guard case .noDataDirectory(let tried)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(tried.map(\.path) == [empty.path + "/nowhere", "data/cifar-10-batches-bin"])
        let text = error!.description
        #expect(text.contains(empty.path + "/nowhere ($CIFAR10_DIR)"))
        #expect(text.contains("data/cifar-10-batches-bin (default, relative to "))
        #expect(text.contains("ddptrain synth --out DIR") && text.contains("cluster/fetch-cifar10.sh"))
    }
}
