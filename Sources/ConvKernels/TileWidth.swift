/// 256-bit registers: one SIMD16 vector (two ymm), 16 output channels, per tile row.
let vectorsPerRow = 1
