import CBFloat16
import ConvKernels
import ConvKernelsAVX512
import Foundation

/// The two ways of splitting Winograd's work for layers whose transformed weights or per-group
/// sums outgrow L2 (VGG-11's 256- and 512-channel layers): the convolution by positions and the
/// weight gradient by blocks of channels. Both give the bits of the plain splits in Winograd.swift.

/// How a Winograd layer's weight gradient is split into tasks. Both give the same bits.
///
/// `groups`: one task per sample group, which sums its tiles' products into the whole dU
/// (positions × Cin × Cout floats) and transforms it to its dW; the groups' dW are then added
/// in their tree order. Where dU is large and a group's tiles few (VGG's 512-channel layers
/// at 2x2 and 4x4 pixels: 16 and 38 MB of dU for 8 tiles) that streams every group's dU and dW
/// through memory for a handful of products per float.
///
/// `blocks`: every tile's transformed operands are written once for the whole batch; then one
/// task per block of `winogradBlockRows` input × `winogradBlockColumns` output channels forms
/// each group's dU and dW of that block and adds them over the groups while they are in L2.
///
/// `automatic` takes `blocks` where a group's dU would outgrow L2 and the group has few tiles
/// (`gradientByBlocks`; `DDPTRAIN_WINOGRAD_GRADIENT` = `groups` or `blocks` forces one, for comparison).
public enum WinogradGradientSplit: String, Sendable {
    case automatic, groups, blocks

    static let fromEnvironment = WinogradGradientSplit(rawValue: ProcessInfo.processInfo.environment["DDPTRAIN_WINOGRAD_GRADIENT"] ?? "") ?? .automatic
}

/// How a Winograd convolution (forward, and the input gradient) is split into tasks. Both give
/// the same bits.
///
/// `tiles`: one task per `tilesPerTask` tiles transforms them, multiplies them by every
/// position's transformed weights U and transforms the products back. Each task reads all of
/// U: 38 MB for VGG-11's 512-channel layers at 4x4 pixels (F(4x4)), read 6 times per pass.
///
/// `positions`: all tiles are transformed first; then one task per position and block of
/// `positionRows` tiles multiplies them by that position's U; then all are transformed back.
///
/// `automatic` takes `positions` where U takes 16 MB or more (`DDPTRAIN_WINOGRAD_CONVOLUTION` =
/// `tiles` or `positions` forces one, for comparison): VGG-11's 512-channel layers at 4x4 pixels.
/// Below that the tasks find U in the last-level cache, while the split by positions streams V
/// and M through memory. On a Zen4 (alternated runs, either kernel set), forward ms per step:
/// VGG-11's conv2 (64 → 128 channels at 16x16, U 1.2 MB) 8.0 by positions and 4.3–4.6 by tiles,
/// conv4 (256 → 256 at 8x8, U 9.4 MB) 8.3–10.2 and 7.3–8.5, conv5 (256 → 512 at 4x4, U 19 MB)
/// 6.1–6.9 and 7.5–8.7, conv6 (512 → 512 at 4x4, U 38 MB) 11.4–13.3 and 14.0–16.6.
public enum WinogradConvolutionSplit: String, Sendable {
    case automatic, tiles, positions

    static let fromEnvironment = WinogradConvolutionSplit(rawValue: ProcessInfo.processInfo.environment["DDPTRAIN_WINOGRAD_CONVOLUTION"] ?? "") ?? .automatic
}

/// Rows of the weight transform per task: a multiple of 16, so a transposed kernel's gathers
/// use each cache line 16 times in a row.
let transformRows = 64

/// Tiles per product task of the split by positions: a block of V (128 × 512 floats) stays in
/// L2 while the position's U streams past it.
let positionRows = 128

/// A block of the split by blocks: whole SIMD16 vectors and outer-product tiles of both kernel
/// sets (6 or 8 rows × 16 or 32 columns); a block's operands for a few dozen tiles stay in L1.
let winogradBlockRows = 48, winogradBlockColumns = 32

extension WinogradAlgorithm {
    /// Whether the weight gradient of `s` runs by blocks under `split`, for sample groups of
    /// `groupSize`. Automatically where a group's dU outgrows L2 and the group has at most 32
    /// tiles to amortise each float of it: VGG-11 at 8x8 pixels (256 → 256 channels) took 35 %
    /// less time by blocks, at 16x16 (64 → 128, 128 tiles a group) 30 % more.
    func gradientByBlocks(_ s: ConvShape, _ split: WinogradGradientSplit, groupSize: Int) -> Bool {
        switch split {
        case .groups: return false
        case .blocks: return true
        case .automatic: return positions * s.inChannels * s.outChannels >= 1 << 16 && tilesPerImage(s) * groupSize <= 32
        }
    }

    /// Whether the convolution of `s` runs by positions under `split`.
    func convolvesByPositions(_ s: ConvShape, _ split: WinogradConvolutionSplit) -> Bool {
        switch split {
        case .tiles: return false
        case .positions: return true
        case .automatic: return positions * s.inChannels * s.outChannels >= 1 << 22
        }
    }

    /// Floats of the split by blocks' scratch: the batch's operands V and D in blocks, each
    /// group's Σ dY, then per worker a block's dU and the tree's slots of dW.
    func blockScratchCount(_ s: ConvShape, groups: Int, workers: Int) -> Int {
        let (v, d) = blockOperands(s)
        return v.count + d.count + groups * s.outChannels + workers * blockScratchPerWorker(groups: groups)
    }
    /// The split by blocks' operands: V in blocks of `winogradBlockRows` input channels, D in
    /// blocks of `winogradBlockColumns` output channels, so a task's rows are contiguous.
    func blockOperands(_ s: ConvShape) -> (v: OperandLayout, d: OperandLayout) {
        (OperandLayout(blocksOf: winogradBlockRows, channels: s.inChannels, tiles: tiles(s), positions: positions),
         OperandLayout(blocksOf: winogradBlockColumns, channels: s.outChannels, tiles: tiles(s), positions: positions))
    }
    /// Floats of the split by positions' operands (V, then the products M).
    func operandCount(_ s: ConvShape) -> Int { positions * tiles(s) * (operandRow(s.inChannels) + operandRow(s.outChannels)) }
    func blockScratchPerWorker(groups: Int) -> Int {
        gradientPlanesCount(rows: winogradBlockRows, columns: winogradBlockColumns)
            + SampleGroups.treeSlots(groups) * 9 * winogradBlockRows * winogradBlockColumns
    }
}

/// Floats between rows of the operands: a power-of-two row (512 channels) would put a block's
/// rows in the same few L1 sets.
private func operandRow(_ channels: Int) -> Int { channels + 16 }

/// Where Winograd operands go (`ConvKernels.OperandLayout`), for either kernel set.
struct OperandLayout {
    let perPosition: Int, row: Int, blockWidth: Int, blockStride: Int, count: Int

    /// Rows of `row` floats, `tiles` rows a position.
    init(row: Int, tiles: Int, positions: Int) {
        (perPosition, self.row, blockWidth, blockStride, count) = (tiles * row, row, .max, 0, positions * tiles * row)
    }
    /// Blocks of `width` channels, each positions × tiles × `width` floats.
    init(blocksOf width: Int, channels: Int, tiles: Int, positions: Int) {
        (perPosition, row, blockWidth, blockStride) = (tiles * width, width, width, positions * tiles * width)
        count = (channels + width - 1) / width * blockStride
    }

    var avx2: ConvKernels.OperandLayout { .init(perPosition: perPosition, row: row, blockWidth: blockWidth, blockStride: blockStride) }
    var avx512: ConvKernelsAVX512.OperandLayout {
        .init(perPosition: perPosition, row: row, blockWidth: blockWidth, blockStride: blockStride)
    }
}

extension ConvWorkspace {
    /// The same sums split by blocks of channels (`WinogradGradientSplit.blocks`).
    func winogradBackwardWeightsByBlocks(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                                                 outputGradient dy: UnsafePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
                                                 biasGradient db: UnsafeMutablePointer<Float>?) {
        let sampleGroups = pool.sampleGroups, groups = sampleGroups.count(batch: s.batch)
        precondition(winogradBlockScratchCapacity >= algorithm.blockScratchCount(s, groups: groups, workers: pool.threads),
                     "conv workspace too small for \(s)")
        let cin = s.inChannels, cout = s.outChannels, m = algorithm.m, kernels = self.kernels.forColumns(cout)
        let (vLayout, dLayout) = algorithm.blockOperands(s), tilesPerImage = algorithm.tilesPerImage(s)
        let v = winogradBlockScratch, d = v + vLayout.count, biasSums = d + dLayout.count
        let blocks = biasSums + groups * cout, perWorker = algorithm.blockScratchPerWorker(groups: groups)
        func tiles(of group: Int) -> (first: Int, count: Int) {
            let images = sampleGroups.samples(group, batch: s.batch)
            return (images.lowerBound * tilesPerImage, images.count * tilesPerImage)
        }
        pool.run(tasks: groups) { group, _ in
            let (first, count) = tiles(of: group)
            let bias = db == nil ? nil : biasSums + group * cout
            bias?.update(repeating: 0, count: cout)
            switch kernels {
            case .avx2:
                ConvKernels.winogradGradientOperands(m: m, s.geometry, input: x, outputGradient: dy, first: first, count: count,
                                                     v: v + first * vLayout.row, vLayout.avx2, d: d + first * dLayout.row, dLayout.avx2,
                                                     biasSum: bias)
            case .avx512:
                ConvKernelsAVX512.winogradGradientOperands(m: m, s.geometry.avx512, input: x, outputGradient: dy, first: first, count: count,
                                                           v: v + first * vLayout.row, vLayout.avx512, d: d + first * dLayout.row,
                                                           dLayout.avx512, biasSum: bias)
            }
        }
        let columnBlocks = (cout + winogradBlockColumns - 1) / winogradBlockColumns
        let rowBlocks = (cin + winogradBlockRows - 1) / winogradBlockRows
        pool.run(tasks: rowBlocks * columnBlocks) { task, worker in
            let rowBlock = task / columnBlocks, columnBlock = task % columnBlocks
            let ci0 = rowBlock * winogradBlockRows, co0 = columnBlock * winogradBlockColumns
            let rows = min(winogradBlockRows, cin - ci0), columns = min(winogradBlockColumns, cout - co0), slice = 9 * rows * columns
            let du = blocks + worker * perWorker, slots = du + algorithm.gradientPlanesCount(rows: winogradBlockRows, columns: winogradBlockColumns)
            SampleGroups.sumInTree(groups, form: { group, slot in
                let (first, count) = tiles(of: group)
                let a = UnsafePointer(v + rowBlock * vLayout.blockStride + first * vLayout.row)
                let b = UnsafePointer(d + columnBlock * dLayout.blockStride + first * dLayout.row), out = slots + slot * slice
                switch kernels {
                case .avx2:
                    ConvKernels.winogradWeightGradientBlock(m: m, count: count, v: a, vPerPosition: vLayout.perPosition, vRow: vLayout.row,
                                                            d: b, dPerPosition: dLayout.perPosition, dRow: dLayout.row, rows: rows,
                                                            columns: columns, du: du, into: out)
                case .avx512:
                    ConvKernelsAVX512.winogradWeightGradientBlock(m: m, count: count, v: a, vPerPosition: vLayout.perPosition,
                                                                  vRow: vLayout.row, d: b, dPerPosition: dLayout.perPosition,
                                                                  dRow: dLayout.row, rows: rows, columns: columns, du: du, into: out)
                }
            }, add: { into, from in addInPlace(slots + into * slice, slots + from * slice, count: slice) })
            for tap in 0..<9 {
                for row in 0..<rows {
                    (dw + (tap * cin + ci0 + row) * cout + co0).update(from: slots + (tap * rows + row) * columns, count: columns)
                }
            }
        }
        if let db {
            addSlicesInTree(biasSums, slice: cout, count: cout, groups: groups)
            db.update(from: biasSums, count: cout)
        }
    }

    /// The same convolution in three passes over the whole batch (`WinogradConvolutionSplit.positions`):
    /// every tile's V, then per position and block of `positionRows` tiles V[ξ]·U[ξ] with U[ξ]
    /// read once per block instead of once per task of `tilesPerTask` tiles, then every tile's
    /// output. Each product is the same dot product over Cin in the same order. Under
    /// `bfloat16Products` each block of V is rounded to pairs as its product task starts and
    /// multiplied by U's pairs (WinogradBFloat16.swift).
    func convolveByPositions(_ algorithm: WinogradAlgorithm, _ s: ConvShape, input x: UnsafePointer<Float>,
                                     epilogue: OutputEpilogue, output y: UnsafeMutablePointer<Float>) {
        precondition(winogradBlockScratchCapacity >= algorithm.operandCount(s), "conv workspace too small for \(s)")
        let cin = s.inChannels, cout = s.outChannels, m = algorithm.m, kernels = self.kernels.forColumns(cout), tiles = algorithm.tiles(s)
        let vLayout = OperandLayout(row: operandRow(cin), tiles: tiles, positions: algorithm.positions)
        let mLayout = OperandLayout(row: operandRow(cout), tiles: tiles, positions: algorithm.positions)
        let vRow = vLayout.row, mRow = mLayout.row, vPerPosition = vLayout.perPosition, mPerPosition = mLayout.perPosition
        let uPerPosition = kernels == .avx2 ? ConvKernels.winogradWeightsPerPosition(k: cin, n: cout)
                                            : ConvKernelsAVX512.winogradWeightsPerPosition(k: cin, n: cout)
        let v = winogradBlockScratch, products = v + algorithm.positions * vPerPosition, u = UnsafePointer(packedWeights)
        let pairs = bfloat16Products(algorithm) ? (u: pairWeights(algorithm, k: cin, n: cout), v: bfloat16Scratch) : nil
        let inPairs = cin / 2
        let perTask = algorithm.tilesPerTask, tileTasks = (tiles + perTask - 1) / perTask
        pool.run(tasks: tileTasks) { task, _ in
            let first = task * perTask, count = min(perTask, tiles - first)
            switch kernels {
            case .avx2:
                ConvKernels.winogradInputTiles(m: m, s.geometry, input: x, first: first, count: count, v: v + first * vRow, vLayout.avx2)
            case .avx512:
                ConvKernelsAVX512.winogradInputTiles(m: m, s.geometry.avx512, input: x, first: first, count: count, v: v + first * vRow,
                                                     vLayout.avx512)
            }
        }
        let rowBlocks = (tiles + positionRows - 1) / positionRows
        pool.run(tasks: algorithm.positions * rowBlocks) { task, _ in
            let xi = task / rowBlocks, first = task % rowBlocks * positionRows, count = min(positionRows, tiles - first)
            let a = UnsafePointer(v + xi * vPerPosition + first * vRow), c = products + xi * mPerPosition + first * mRow
            if let pairs {
                let aPairs = pairs.v + (xi * tiles + first) * inPairs
                ddp_bf16_round_rows(a, vRow, count, cin, aPairs, inPairs)
                ddp_bf16_gemm(inPairs, aPairs, inPairs, 1, count, pairs.u + xi * inPairs * cout, cout, cout, c, mRow, 0)
                return
            }
            switch kernels {
            case .avx2:
                ConvKernels.gemmBlock(kc: cin, a: a, lda: vRow, rows: count, packedB: u + xi * uPerPosition, columns: cout, c: c, ldc: mRow)
            case .avx512:
                ConvKernelsAVX512.gemmBlock(kc: cin, a: a, lda: vRow, rows: count, packedB: u + xi * uPerPosition, columns: cout, c: c, ldc: mRow)
            }
        }
        pool.run(tasks: tileTasks) { task, _ in
            let first = task * perTask, count = min(perTask, tiles - first)
            let m0 = UnsafePointer(products + first * mRow)
            switch kernels {
            case .avx2:
                ConvKernels.winogradOutputTiles(m: m, s.geometry, products: m0, mLayout.avx2, first: first, count: count,
                                                epilogue: epilogue.avx2, output: y)
            case .avx512:
                ConvKernelsAVX512.winogradOutputTiles(m: m, s.geometry.avx512, products: m0, mLayout.avx512, first: first, count: count,
                                                      epilogue: epilogue.avx512, output: y)
            }
        }
    }
}
