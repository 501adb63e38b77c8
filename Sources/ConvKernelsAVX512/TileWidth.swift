/// 512-bit registers: two SIMD16 vectors, 32 output channels, per tile row.
let vectorsPerRow = 2
