#ifndef DDPTRAIN_BF16_KERNELS_H
#define DDPTRAIN_BF16_KERNELS_H

/// bfloat16 products on AVX512_BF16 (`vdpbf16ps`): Swift cannot name that instruction, so these
/// few functions are C. Call them only where the CPU has `avx512_bf16` (ConvCore checks).
///
/// A "pair" is two bfloat16 values in one 32-bit word, the lower half first: `vdpbf16ps` adds
/// both products of a pair from A and the matching pair from B to a float32 lane. A product
/// over K therefore runs over K/2 pairs; an odd K is padded with a zero.

#include <stdint.h>

/// Rounds `rows` rows of `count` floats (`ld_src` apart) to bfloat16 (round to nearest even),
/// into rows of ⌈count/2⌉ pairs (`ld_dst` pairs apart): element k of a row lands in pair k/2.
/// An odd count's last pair is completed with zero.
void ddp_bf16_round_rows(const float *src, long ld_src, long rows, long count, uint32_t *dst, long ld_dst);

/// Rounds `rows` rows of `count` floats (`ld_src` apart) to bfloat16 and interleaves each two
/// consecutive rows: pair j of output row r/2 holds (src[r][j], src[r+1][j]); an odd last row is
/// paired with zeros. Output rows are `ld_dst` pairs apart and hold `count` pairs.
void ddp_bf16_interleave_rows(const float *src, long ld_src, long rows, long count, uint32_t *dst, long ld_dst);

/// C[i][j] (+)= Σ_p dot(A pair (i, p), B pair (p, j)) for i < rows, j < columns, p < pairs, in
/// float32: A pair (i, p) at a[i·a_row + p·a_pair], B pair (p, j) at b[p·b_pair + j] (each B row
/// readable to a whole 16 pairs past `columns`), C[i][j] at c[i·ldc + j]. Overwrites C unless
/// `accumulate`. Tiles of 6 rows × 64 columns; each sum runs over p in order, so the result
/// depends on neither the tiling nor the caller's split of rows and columns.
void ddp_bf16_gemm(long pairs, const uint32_t *a, long a_row, long a_pair, long rows,
                   const uint32_t *b, long b_pair, long columns, float *c, long ldc, int accumulate);

#endif
