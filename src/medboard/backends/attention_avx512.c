// Causal attention in bfloat16 with AVX-512 BF16 instructions, for CPUs without AMX tiles (AMD
// Zen 4 and 5, Intel before Sapphire Rapids with AVX512_BF16): the products of
// attention_core.h with VDPBF16PS, each accumulating a pair of bfloat16 products per float32
// lane, four query rows against four blocks of 16 keys (or 64 dims) at a time.
#include <immintrin.h>
#include <stdint.h>

typedef int kernel_state;  // no state to keep: these are ordinary vector registers
static void kernel_enter(kernel_state *saved) { (void)saved; }
static void kernel_leave(const kernel_state *saved) { (void)saved; }

// The 32-bit pair of bfloat16 values at x, in every lane.
static inline __m512bh pair(const uint16_t *x) {
    int32_t bits;
    __builtin_memcpy(&bits, x, 4);
    return (__m512bh)_mm512_set1_epi32(bits);
}

// Scores of query rows i .. i + 3 against `count` (1 to 4) key blocks from block b: one
// accumulator per row and block, each a sum over the dim pairs in order.
static inline __attribute__((always_inline)) void score_blocks(
    int count, const uint16_t *q0, int64_t qe, const uint16_t *kp, int64_t b, int64_t kst,
    float *s, int64_t spitch) {
    const int64_t bstep = kst * 512;  // elements between key blocks
    __m512 acc[4][4];
    for (int x = 0; x < 4; x++)
        for (int y = 0; y < count; y++) acc[x][y] = _mm512_setzero_ps();
    for (int64_t st = 0; st < kst; st++) {
        const uint16_t *kt = kp + (b * kst + st) * 512;
        for (int64_t r = 0; r < 16; r++) {
            __m512bh kv[4];
            for (int y = 0; y < count; y++)
                kv[y] = (__m512bh)_mm512_load_si512(kt + y * bstep + r * 32);
            for (int x = 0; x < 4; x++) {
                const __m512bh qv = pair(q0 + x * qe + st * 32 + 2 * r);
                for (int y = 0; y < count; y++) acc[x][y] = _mm512_dpbf16_ps(acc[x][y], qv, kv[y]);
            }
        }
    }
    for (int x = 0; x < 4; x++)
        for (int y = 0; y < count; y++)
            _mm512_storeu_ps(s + x * spitch + (b + y) * 16, acc[x][y]);
}

static void scores_rows(const uint16_t *qrows, int64_t qpitch, int64_t rows, const uint16_t *kp,
                        int64_t nkb, int64_t kst, float *s, int64_t spitch) {
    const int64_t qe = qpitch / 2;  // elements between query rows
    for (int64_t i = 0; i < rows; i += 4) {  // rows past `rows` (up to 16) are zero
        const uint16_t *q0 = qrows + i * qe;
        float *srow = s + i * spitch;
        int64_t b = 0;
        for (; b + 4 <= nkb; b += 4) score_blocks(4, q0, qe, kp, b, kst, srow, spitch);
        switch (nkb - b) {  // the last one to three blocks, as many accumulators
            case 3: score_blocks(3, q0, qe, kp, b, kst, srow, spitch); break;
            case 2: score_blocks(2, q0, qe, kp, b, kst, srow, spitch); break;
            case 1: score_blocks(1, q0, qe, kp, b, kst, srow, spitch); break;
            default: break;
        }
    }
}

static void values_rows(const uint16_t *p, int64_t t32, int64_t rows, const uint16_t *vp,
                        int64_t nts, int64_t db, int64_t c, float *obuf) {
    for (int64_t i = 0; i < rows; i += 4) {  // P's rows past `rows` (up to 16) are zero
        __m512 acc[4][4];
        for (int x = 0; x < 4; x++)
            for (int y = 0; y < 4; y++) acc[x][y] = _mm512_setzero_ps();
        for (int64_t st = 0; st < nts; st++) {
            const uint16_t *vt = vp + (st * db + c * 4) * 512;
            for (int64_t r = 0; r < 16; r++) {
                __m512bh vv[4];
                for (int y = 0; y < 4; y++)
                    vv[y] = (__m512bh)_mm512_load_si512(vt + y * 512 + r * 32);
                for (int x = 0; x < 4; x++) {
                    const __m512bh pv = pair(p + (i + x) * t32 + st * 32 + 2 * r);
                    for (int y = 0; y < 4; y++)
                        acc[x][y] = _mm512_dpbf16_ps(acc[x][y], pv, vv[y]);
                }
            }
        }
        for (int x = 0; x < 4; x++)
            for (int y = 0; y < 4; y++) _mm512_storeu_ps(obuf + (i + x) * 64 + y * 16, acc[x][y]);
    }
}

#include "attention_core.h"
