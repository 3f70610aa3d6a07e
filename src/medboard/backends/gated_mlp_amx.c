// The first half of a gated MLP on AMX tiles: act(x gate^T) * (x up^T) in bfloat16, one kernel.
//
// What torch computes as two products and an elementwise kernel (gated_act.c): each product
// accumulated in float32 and rounded to bfloat16, then act(gate) * up in float32 from those
// bfloat16 values, rounded once. Here both products run on the same tiles of x (16 output
// columns of gate and of up side by side), and the activation of one 32 x 16 block runs on the
// vector units while the tile unit multiplies the next block, so it costs little time of its
// own; gate and up are never written to memory. The accumulation runs over K in steps of 32,
// in the order oneDNN's AMX products use: on large inputs the results are bit-identical to
// torch's products followed by gated_act.c.
//
// Work: each thread takes a range of 16-column groups; x is read in chunks of 16 row blocks
// (512 rows) that stay in L2 while a pair of groups' weights (2 x 2 x K x 16) run from L1 and
// L2; the next pair's weights and each block's output lines are fetched ahead of their use.
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "amx.h"
#include "vecmath.h"

enum { CHUNK = 16 };  // row blocks of 32 per chunk of x

// gate, up: [N, K] bfloat16 (row-major, as torch stores a linear layer's weight) into tiles:
// per group of 16 outputs, K / 32 gate tiles then K / 32 up tiles, tile row r holding for
// each output c the input pair 2r, 2r + 1. N a multiple of 16, K of 32.
void mb_pack_gated_bf16(const uint16_t *gate, const uint16_t *up, uint16_t *out, int64_t N,
                        int64_t K) {
    const int64_t steps = K / 32;
    for (int64_t g = 0; g < N / 16; g++)
        for (int w = 0; w < 2; w++) {
            const uint16_t *src = w ? up : gate;
            for (int64_t s = 0; s < steps; s++) {
                uint16_t *tile = out + ((g * 2 + w) * steps + s) * 512;
                for (int64_t r = 0; r < 16; r++)
                    for (int64_t c = 0; c < 16; c++) {
                        const uint16_t *pair = src + (g * 16 + c) * K + s * 32 + 2 * r;
                        tile[r * 32 + c * 2] = pair[0];
                        tile[r * 32 + c * 2 + 1] = pair[1];
                    }
            }
        }
}

// Row r of a finished 32 x 16 block: acc holds the gate and up tiles of rows 0-15, then those
// of rows 16-31 (float32, 16 x 16 each). The 16 results go to `half` (the first group of a
// pair, whose half cache line waits there) or, with the waiting half before them, to `dst` as
// one whole cache line; a group without a pair stores its half line directly.
enum { DIRECT, FIRST, SECOND };
static inline void finish_row(const float *acc, int64_t r, uint16_t *dst, uint16_t *half,
                              int kind, int role) {
    const float *gate = acc + (r < 16 ? 0 : 512) + (r % 16) * 16, *up = gate + 256;
    __m512 g = round_bf16(_mm512_load_ps(gate)), u = round_bf16(_mm512_load_ps(up));
    __m256i y = (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(activation(g, kind), u));
    if (role == FIRST)
        _mm256_store_si256((__m256i *)(half + r * 16), y);
    else if (role == SECOND)
        _mm512_storeu_si512(dst - 16, _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_load_si256(
                                          (const __m256i *)(half + r * 16))), y, 1));
    else
        _mm256_storeu_si256((__m256i *)dst, y);
}

// out[M, N] = act(x gate^T) * (x up^T); x: M rows of K bfloat16 values, `xs` values apart;
// packed: mb_pack_gated_bf16's. Returns 0, or -1 when a buffer could not be allocated.
int mb_gated_mlp_bf16(const uint16_t *x, const uint16_t *packed, uint16_t *out, int64_t M,
                      int64_t N, int64_t K, int64_t xs, int kind) {
    const int64_t steps = K / 32, groups = N / 16, blocks = (M + 31) / 32;
    const int64_t per_step = (32 + steps - 1) / steps;  // rows finished per step of the next
    const int threads = omp_get_max_threads();
    uint16_t *pads = aligned_alloc(64, (size_t)threads * 32 * K * 2);  // a short last block
    if (!pads) return -1;
#pragma omp parallel num_threads(threads)
    {
        const int nt = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t pairs = (groups + 1) / 2;  // threads take whole pairs of groups
        const int64_t g0 = 2 * (pairs * me / nt), end = 2 * (pairs * (me + 1) / nt);
        const int64_t g1 = end < groups ? end : groups;
        uint16_t *pad = pads + (size_t)me * 32 * K;
        float acc[2][1024] __attribute__((aligned(64)));  // the block in work, the one before
        uint16_t half[32 * 16] __attribute__((aligned(64)));  // a pair's first half lines
        int slot = 0, pending = 0, pending_role = DIRECT;
        int64_t pending_rows = 0;
        uint16_t *pending_out = NULL;
        tile_config saved;
        amx_enter(&saved);
        for (int64_t c0 = 0; c0 < blocks && g0 < g1; c0 += CHUNK) {
            const int64_t c1 = c0 + CHUNK < blocks ? c0 + CHUNK : blocks;
            for (int64_t gp = g0; gp < g1; gp += 2) {  // pairs of groups: whole cache lines
                const int64_t next = gp + 2 < g1 ? gp + 2 : g0;  // the pair after this one
                const char *next_pair = (const char *)(packed + next * 2 * steps * 512);
                const int64_t next_lines = (next + 2 <= g1 ? 4 : 2) * steps * 16;
                for (int64_t b = c0; b < c1; b++)
                    for (int64_t g = gp; g < gp + 2 && g < g1; g++) {
                    const uint16_t *bg = packed + g * 2 * steps * 512, *bu = bg + steps * 512;
                    const int role = gp + 1 < g1 ? (g == gp ? FIRST : SECOND) : DIRECT;
                    const int64_t rows = M - b * 32 < 32 ? M - b * 32 : 32;
                    const uint16_t *a = x + b * 32 * xs;
                    int64_t as = xs;
                    if (rows < 32) {  // the last block: its rows, zeros after them
                        if (g == g0 && gp == g0) {
                            memset(pad, 0, 32 * K * 2);
                            for (int64_t r = 0; r < rows; r++) memcpy(pad + r * K, a + r * xs, K * 2);
                        }
                        a = pad;
                        as = K;
                    }
                    _tile_zero(0);
                    _tile_zero(1);
                    _tile_zero(2);
                    _tile_zero(3);
                    int64_t done = 0;
                    for (int64_t s = 0; s < steps; s++) {
                        const int64_t at = ((b - c0) * 2 + (g - gp)) * steps + s;
                        for (int64_t l = 2 * at; l < 2 * at + 2 && l < next_lines; l++)
                            _mm_prefetch(next_pair + l * 64, _MM_HINT_T1);
                        if (s < 16) {  // this block's output lines, written after the next one
                            uint16_t *line = out + (b * 32 + 2 * s) * N + gp * 16;
                            __builtin_prefetch(line, 1, 3);
                            __builtin_prefetch(line + N, 1, 3);
                        }
                        _tile_loadd(4, a + s * 32, as * 2);
                        _tile_loadd(6, bg + s * 512, 64);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_loadd(7, bu + s * 512, 64);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_loadd(5, a + 16 * as + s * 32, as * 2);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                        if (pending) {  // the previous block's activation, a few rows per step
                            const int64_t upto = (s + 1) * per_step;
                            for (; done < upto && done < pending_rows; done++)
                                finish_row(acc[slot ^ 1], done, pending_out + done * N, half, kind, pending_role);
                        }
                    }
                    for (; pending && done < pending_rows; done++)
                        finish_row(acc[slot ^ 1], done, pending_out + done * N, half, kind, pending_role);
                    _tile_stored(0, acc[slot], 64);
                    _tile_stored(1, acc[slot] + 256, 64);
                    _tile_stored(2, acc[slot] + 512, 64);
                    _tile_stored(3, acc[slot] + 768, 64);
                    pending = 1;
                    pending_rows = rows;
                    pending_out = out + b * 32 * N + g * 16;
                    pending_role = role;
                    slot ^= 1;
                }
            }
        }
        for (int64_t r = 0; pending && r < pending_rows; r++)
            finish_row(acc[slot ^ 1], r, pending_out + r * N, half, kind, pending_role);
        amx_leave(&saved);
    }
    free(pads);
    return 0;
}
