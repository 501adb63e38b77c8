import CIFAR10
import Foundation
import Testing

@Suite struct SyntheticTests {
    @Test func roundTripsThroughTheReader() throws {
        let dir = try TemporaryDirectory()
        try writeSyntheticCIFAR10(to: dir.path + "/nested/syn", trainPerFile: 20, testCount: 20, seed: 5)
        let path = dir.path + "/nested/syn"

        let train = try loadCIFAR10(directory: path, split: .train)
        let test = try loadCIFAR10(directory: path, split: .test)
        #expect(train.count == 100 && test.count == 20)
        #expect(train.sources.map(\.bytes) == Array(repeating: 20 * 3073, count: 5))
        #expect(train.labels.allSatisfy { $0 < 10 } && test.labels.allSatisfy { $0 < 10 })
        for c in 0..<10 {
            #expect(train.labels.filter { $0 == c }.count == 10)
            #expect(test.labels.filter { $0 == c }.count == 2)
        }
        #expect(loadClassNames(directory: path) == SyntheticCIFAR10.classNames)

        // Record 3 of data_batch_3.bin, straight from the file bytes.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path + "/data_batch_3.bin"))
        let record = Array(raw[(3 * 3073)..<(4 * 3073)])
        let loaded = 2 * 20 + 3
        #expect(train.labels[loaded] == record[0])
        #expect(Array(train.pixels[loaded * 3072..<(loaded + 1) * 3072]) == Array(record[1...]))
        #expect(Array(record[1...]) == SyntheticCIFAR10.image(seed: 5, file: 2, record: 3))
        #expect(Int(record[0]) == SyntheticCIFAR10.label(file: 2, record: 3))
        #expect(Array(test.pixels[7 * 3072..<8 * 3072]) == SyntheticCIFAR10.image(seed: 5, file: 5, record: 7))
    }

    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let a = try TemporaryDirectory(), b = try TemporaryDirectory(), c = try TemporaryDirectory()
        try writeSyntheticCIFAR10(to: a.path, trainPerFile: 10, testCount: 10, seed: 1)
        try writeSyntheticCIFAR10(to: b.path, trainPerFile: 10, testCount: 10, seed: 1)
        try writeSyntheticCIFAR10(to: c.path, trainPerFile: 10, testCount: 10, seed: 2)
        for name in CIFAR10.trainFiles + [CIFAR10.testFile] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: a.file(name)))
            #expect(bytes == (try Data(contentsOf: URL(fileURLWithPath: b.file(name)))))
            #expect(bytes != (try Data(contentsOf: URL(fileURLWithPath: c.file(name)))))
        }
    }

    @Test func unwritableDestinationIsNamed() throws {
        let dir = try TemporaryDirectory()
        try dir.write("blocker", [1])
        let error = #expect(throws: DataError.self) {
            try writeSyntheticCIFAR10(to: dir.file("blocker/syn"), trainPerFile: 1, testCount: 1, seed: 0)
        }
        #expect(error?.description == dir.file("blocker") + ": cannot write: exists and is not a directory")
    }

    @Test func imagesUseTheRangeAndDifferWithinAClass() {
        let a = SyntheticCIFAR10.image(seed: 0, file: 0, record: 0)
        let b = SyntheticCIFAR10.image(seed: 0, file: 0, record: 10)  // same class
        #expect(SyntheticCIFAR10.label(file: 0, record: 0) == SyntheticCIFAR10.label(file: 0, record: 10))
        #expect(a != b)
        #expect(Set(a).count > 100)
    }
}
