#include "bf16_kernels.h"
#include <immintrin.h>

// 16 floats from p (zero past `count`) rounded to bfloat16.
static inline __m256bh round16(const float *p, long count) {
    __mmask16 m = count >= 16 ? 0xFFFF : (__mmask16)((1u << count) - 1);
    return _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, p));
}

void ddp_bf16_round_rows(const float *src, long ld_src, long rows, long count, uint32_t *dst, long ld_dst) {
    long pairs = (count + 1) / 2;
    for (long r = 0; r < rows; r++) {
        const float *s = src + r * ld_src;
        uint16_t *d = (uint16_t *)(dst + r * ld_dst);
        for (long k = 0; k < 2 * pairs; k += 16) {
            long left = 2 * pairs - k;
            __m256i v = (__m256i)round16(s + k, count - k);
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            _mm256_mask_storeu_epi16(d + k, m, v);
        }
    }
}

void ddp_bf16_interleave_rows(const float *src, long ld_src, long rows, long count, uint32_t *dst, long ld_dst) {
    // Word j of `both` is row r's value j for j < 16 and row r+1's value j-16 above; the
    // permutation puts each column's two values side by side.
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (long r = 0; r < rows; r += 2) {
        const float *s0 = src + r * ld_src, *s1 = s0 + ld_src;
        uint32_t *d = dst + (r / 2) * ld_dst;
        for (long j = 0; j < count; j += 16) {
            long left = count - j;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 lo = _mm512_maskz_loadu_ps(m, s0 + j);
            __m512 hi = r + 1 < rows ? _mm512_maskz_loadu_ps(m, s1 + j) : _mm512_setzero_ps();
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_mask_storeu_epi32(d + j, m, _mm512_permutexvar_epi16(order, both));
        }
    }
}

// One tile: R rows × V vectors of 16 columns, the last vector masked by `last`. R and V are
// constants where this is inlined, so the accumulators stay in registers.
static inline __attribute__((always_inline))
void tile(const int R, const int V, long pairs, const uint32_t *a, long a_row, long a_pair,
          const uint32_t *b, long b_pair, float *c, long ldc, __mmask16 last, int accumulate) {
    __m512 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            __mmask16 m = v == V - 1 ? last : 0xFFFF;
            acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(m, c + r * ldc + 16 * v) : _mm512_setzero_ps();
        }
    for (long p = 0; p < pairs; p++) {
        __m512bh bv[4];
        for (int v = 0; v < V; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * b_pair + 16 * v);
        for (int r = 0; r < R; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * a_row + p * a_pair]);
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            __mmask16 m = v == V - 1 ? last : 0xFFFF;
            _mm512_mask_storeu_ps(c + r * ldc + 16 * v, m, acc[r][v]);
        }
}

#define TILE_ROWS(R) \
    switch (V) { \
    case 1: tile(R, 1, pairs, a, a_row, a_pair, b, b_pair, c, ldc, last, accumulate); break; \
    case 2: tile(R, 2, pairs, a, a_row, a_pair, b, b_pair, c, ldc, last, accumulate); break; \
    case 3: tile(R, 3, pairs, a, a_row, a_pair, b, b_pair, c, ldc, last, accumulate); break; \
    default: tile(R, 4, pairs, a, a_row, a_pair, b, b_pair, c, ldc, last, accumulate); break; \
    }

static void tile_any(int R, int V, long pairs, const uint32_t *a, long a_row, long a_pair,
                     const uint32_t *b, long b_pair, float *c, long ldc, __mmask16 last, int accumulate) {
    switch (R) {
    case 1: TILE_ROWS(1) break;
    case 2: TILE_ROWS(2) break;
    case 3: TILE_ROWS(3) break;
    case 4: TILE_ROWS(4) break;
    case 5: TILE_ROWS(5) break;
    default: TILE_ROWS(6) break;
    }
}

void ddp_bf16_gemm(long pairs, const uint32_t *a, long a_row, long a_pair, long rows,
                   const uint32_t *b, long b_pair, long columns, float *c, long ldc, int accumulate) {
    for (long j = 0; j < columns; j += 64) {
        long width = columns - j < 64 ? columns - j : 64;
        int V = (int)((width + 15) / 16);
        long tail = width - 16 * (V - 1);
        __mmask16 last = tail >= 16 ? 0xFFFF : (__mmask16)((1u << tail) - 1);
        for (long i = 0; i < rows; i += 6) {
            int R = rows - i < 6 ? (int)(rows - i) : 6;
            if (R == 6 && V == 4)
                tile(6, 4, pairs, a + i * a_row, a_row, a_pair, b + j, b_pair, c + i * ldc + j, ldc, last, accumulate);
            else
                tile_any(R, V, pairs, a + i * a_row, a_row, a_pair, b + j, b_pair, c + i * ldc + j, ldc, last, accumulate);
        }
    }
}
