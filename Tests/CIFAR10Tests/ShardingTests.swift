import CIFAR10
import Testing

@Suite struct PermutationTests {
    @Test func isADeterministicPermutation() {
        let p = epochPermutation(count: 1000, seed: 7, epoch: 3)
        #expect(p.sorted() == (0..<1000).map { Int32($0) })
        #expect(p != (0..<1000).map { Int32($0) })
        #expect(epochPermutation(count: 1000, seed: 7, epoch: 3) == p)
    }

    @Test func differsAcrossEpochsAndSeeds() {
        let p = epochPermutation(count: 1000, seed: 7, epoch: 3)
        #expect(epochPermutation(count: 1000, seed: 7, epoch: 4) != p)
        #expect(epochPermutation(count: 1000, seed: 8, epoch: 3) != p)
    }

    @Test func smallCounts() {
        #expect(epochPermutation(count: 0, seed: 1, epoch: 0) == [])
        #expect(epochPermutation(count: 1, seed: 1, epoch: 0) == [0])
        #expect(epochPermutation(count: 2, seed: 1, epoch: 0).sorted() == [0, 1])
    }
}

@Suite struct ShardPlanTests {
    @Test(arguments: [1, 2, 3, 4, 6, 12])
    func ranksTileTheGlobalBatch(worldSize: Int) throws {
        let plans = try (0..<worldSize).map { try ShardPlan(globalBatch: 12, worldSize: worldSize, rank: $0) }
        for step in 0..<4 {
            let ranges = plans.map { $0.localRange(step: step) }
            #expect(ranges.allSatisfy { $0.count == 12 / worldSize })
            #expect(ranges.first!.lowerBound == step * 12)
            #expect(ranges.last!.upperBound == (step + 1) * 12)
            for r in 1..<worldSize { #expect(ranges[r - 1].upperBound == ranges[r].lowerBound) }
            #expect(Set(ranges.flatMap { Array($0) }) == Set(step * 12..<(step + 1) * 12))
        }
        #expect(plans.allSatisfy { $0.localBatch == 12 / worldSize })
    }

    @Test func indivisibleOrInvalidBatchesAreRefused() {
        let error = #expect(throws: ShardError.self) { try ShardPlan(globalBatch: 10, worldSize: 4, rank: 0) }
        #expect(error?.description.hasPrefix("global batch 10 is not divisible by 4 ranks") == true)
        #expect(error?.description.contains("8 or 12") == true)
        #expect(throws: ShardError.self) { try ShardPlan(globalBatch: 0, worldSize: 1, rank: 0) }
        #expect(throws: ShardError.self) { try ShardPlan(globalBatch: 8, worldSize: 0, rank: 0) }
        #expect(throws: ShardError.self) { try ShardPlan(globalBatch: 8, worldSize: 2, rank: 2) }
        #expect(throws: ShardError.self) { try ShardPlan(globalBatch: 8, worldSize: 2, rank: -1) }
    }

    @Test func lastPartialGlobalBatchIsDropped() throws {
        let plan = try ShardPlan(globalBatch: 32, worldSize: 4, rank: 3)
        #expect(plan.stepsPerEpoch(samples: 96) == 3)
        #expect(plan.stepsPerEpoch(samples: 127) == 3)
        #expect(plan.stepsPerEpoch(samples: 31) == 0)
        // The last step's slice stays inside the epoch for every rank.
        #expect(plan.localRange(step: plan.stepsPerEpoch(samples: 127) - 1).upperBound <= 127)
    }
}
