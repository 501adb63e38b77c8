/// 512-bit registers: two SIMD16 vectors, 32 output channels, per tile row.
let vectorsPerRow = 2
/// Input channels per weight-gradient tile (8 rows × 2 zmm: 16 of the 32 registers).
let weightGradientRows = 8
