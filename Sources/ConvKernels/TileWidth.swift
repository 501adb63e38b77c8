/// 256-bit registers: one SIMD16 vector (two ymm), 16 output channels, per tile row.
let vectorsPerRow = 1
/// Input channels per weight-gradient tile (6 rows × 2 ymm: 12 of the 16 registers).
let weightGradientRows = 6
