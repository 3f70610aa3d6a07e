// Causal attention in bfloat16 on AMX tiles, for short prompts (medboard's scoring passes).
//
// The same arithmetic as torch's CPU flash-attention kernel for bfloat16 inputs: scores
// q.k accumulated in float32, scaled, softmax in float32 (each row's maximum subtracted, the
// exponentials summed unrounded), the exponentials rounded to bfloat16 and multiplied with the
// values in float32, then divided by the sum and rounded to bfloat16. torch works in blocks of
// 32 queries whose fixed cost outweighs their arithmetic at a hundred-token prompt; here a
// whole key range is one pass of 16 x 16 tiles (the sequence fits in cache).
//
// The tile state is saved and restored around the kernel for oneDNN's sake (amx.h).
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "amx.h"
#include "vecmath.h"

// Key blocks of 16, rounded up to a multiple of 4: the score pass computes four at a time.
static inline int64_t key_blocks(int64_t T) { return ((T + 15) / 16 + 3) / 4 * 4; }

// A 16 x 16 matrix of 32-bit values, one row per register, transposed in place.
static inline void transpose16_epi32(__m512i m[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(m[i], m[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(m[i], m[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        m[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        m[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        m[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        m[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(m[i], m[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(m[i], m[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(m[i + 8], m[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(m[i + 8], m[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        m[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        m[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        m[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        m[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

// Scores of 16 queries (rows of qrows, qpitch bytes apart) against `count` (1 to 3) key blocks
// of packed K from kt, as the four-block loop computes each of them, stored to s (pitch: floats
// per row).
static void scores_tail(int64_t count, const uint16_t *qrows, int64_t qpitch, const uint16_t *kt,
                        int64_t kst, float *s, int64_t spitch) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    for (int64_t st = 0; st < kst; st++, kt += 512) {
        _tile_loadd(4, qrows + st * 32, qpitch);
        _tile_loadd(5, kt, 64);
        _tile_dpbf16ps(0, 4, 5);
        if (count > 1) {
            _tile_loadd(6, kt + kst * 512, 64);
            _tile_dpbf16ps(1, 4, 6);
        }
        if (count > 2) {
            _tile_loadd(7, kt + 2 * kst * 512, 64);
            _tile_dpbf16ps(2, 4, 7);
        }
    }
    _tile_stored(0, s, spitch * 4);
    if (count > 1) _tile_stored(1, s + 16, spitch * 4);
    if (count > 2) _tile_stored(2, s + 32, spitch * 4);
}

// Probabilities times values for one block of 16 query rows (i0 .. i0 + rows - 1) of query head
// qh: P (16 rows of t32 bfloat16, zero past each row's keys) times the packed V over nts steps of
// 32 keys, divided by each row's sum, rounded to bfloat16 into out.
static void values_block(const uint16_t *p, const uint16_t *vp, const float *sums, uint16_t *out,
                         float *obuf, int64_t i0, int64_t rows, int64_t nts, int64_t t32,
                         int64_t D, int64_t Hq, int64_t qh) {
    const int64_t db = D / 16;
    for (int64_t c = 0; c < D / 64; c++) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        // V tiles in three registers in turn, so that a load need not wait for the
        // product that read the register before it.
        for (int64_t st = 0; st < nts; st++) {
            const uint16_t *vt = vp + (st * db + c * 4) * 512;
            _tile_loadd(5, p + st * 32, t32 * 2);
            _tile_loadd(6, vt, 64);
            _tile_loadd(7, vt + 512, 64);
            _tile_dpbf16ps(0, 5, 6);
            _tile_loadd(4, vt + 1024, 64);
            _tile_dpbf16ps(1, 5, 7);
            _tile_loadd(6, vt + 1536, 64);
            _tile_dpbf16ps(2, 5, 4);
            _tile_dpbf16ps(3, 5, 6);
        }
        _tile_stored(0, obuf, 256);
        _tile_stored(1, obuf + 16, 256);
        _tile_stored(2, obuf + 32, 256);
        _tile_stored(3, obuf + 48, 256);
        for (int64_t r = 0; r < rows; r++) {
            uint16_t *dst = out + ((i0 + r) * Hq + qh) * D + c * 64;
            // x / sum, correctly rounded as a division would be, without one: q = x y
            // with y = 1 / sum rounded, then q + (x - sum q) y (Markstein's theorem:
            // exact for a correctly rounded reciprocal; sum is in [1, T]).
            const __m512 sum = _mm512_set1_ps(sums[r]), y = _mm512_set1_ps(1.0f / sums[r]);
            for (int64_t j = 0; j < 64; j += 16) {
                const __m512 x = _mm512_loadu_ps(obuf + r * 64 + j);
                const __m512 q = _mm512_mul_ps(x, y);
                store_bf16(dst + j, _mm512_fmadd_ps(_mm512_fnmadd_ps(sum, q, x), y, q),
                           0xFFFF);
            }
        }
    }
}

// One (sequence, key/value head) pair: its query heads, every query row.
static void attend_group(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out,
                         int64_t T, int64_t Hq, int64_t D, int64_t group, int64_t qh0,
                         const int64_t *qs, const int64_t *ks, const int64_t *vs, float scale,
                         uint16_t *kp, uint16_t *vp, float *s, uint16_t *p, uint16_t *qbuf,
                         float *obuf) {
    const int64_t nb = (T + 15) / 16, nb4 = key_blocks(T), t32 = (T + 31) / 32 * 32;
    const int64_t kst = D / 32, db = D / 16;
    const int64_t spitch = nb4 * 16;  // floats per score row
    // K as B tiles: tile (block, step) row r holds, per key j, the pair of dims 2r, 2r+1: the
    // transpose of 16 keys x 16 dim pairs, 32 bits each (keys past T are zero).
    for (int64_t b = 0; b < nb4; b++)
        for (int64_t st = 0; st < kst; st++) {
            __m512i rows16[16];
            for (int64_t j = 0; j < 16; j++) {
                const int64_t key = b * 16 + j;
                rows16[j] = key < T ? _mm512_loadu_si512(k + key * ks[2] + st * 32)
                                    : _mm512_setzero_si512();
            }
            transpose16_epi32(rows16);
            __m512i *tile = (__m512i *)(kp + (b * kst + st) * 512);
            for (int64_t r = 0; r < 16; r++) _mm512_store_si512(tile + r, rows16[r]);
        }
    // V as B tiles: tile (step of 32 keys, block of 16 dims) row r holds keys 2r, 2r+1 per dim,
    // interleaved (keys past T are zero).
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9,
                                        40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1,
                                        32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int64_t t = 0; t < t32; t += 2) {
        const int64_t st = t / 32, r = (t % 32) / 2;
        for (int64_t c = 0; c < db; c += 2) {  // 32 dims of both keys: two tile rows
            __m512i v0 = t < T ? _mm512_loadu_si512(v + t * vs[2] + c * 16)
                               : _mm512_setzero_si512();
            __m512i v1 = t + 1 < T ? _mm512_loadu_si512(v + (t + 1) * vs[2] + c * 16)
                                   : _mm512_setzero_si512();
            _mm512_store_si512(vp + ((st * db + c) * 16 + r) * 32,
                               _mm512_permutex2var_epi16(v0, lo, v1));
            _mm512_store_si512(vp + ((st * db + c + 1) * 16 + r) * 32,
                               _mm512_permutex2var_epi16(v0, hi, v1));
        }
    }
    for (int64_t g = 0; g < group; g++) {
        const int64_t qh = qh0 + g;
        const uint16_t *qhead = q + qh * qs[1];
        float sums2[2][16];
        int64_t prev_nts = 0;
        for (int64_t qb = 0; qb < nb; qb++) {
            const int64_t i0 = qb * 16, rows = T - i0 < 16 ? T - i0 : 16;
            // A whole block's query rows are read where they are; a last, shorter one is
            // copied, zero rows after it (its rows past the sequence would be read past the end
            // of the tensor; they are never used).
            const uint16_t *qrows = qhead + i0 * qs[2];
            int64_t qpitch = qs[2] * 2;
            if (rows < 16) {
                for (int64_t r = 0; r < 16; r++) {
                    if (r < rows)
                        memcpy(qbuf + r * D, qhead + (i0 + r) * qs[2], D * 2);
                    else
                        memset(qbuf + r * D, 0, D * 2);
                }
                qrows = qbuf;
                qpitch = D * 2;
            }
            const int64_t last = i0 + rows - 1, nkb = last / 16 + 1, nts = (last + 32) / 32;
            // Four key blocks at a time: one query tile load feeds four independent products;
            // the last one to three blocks of a causal row alone (each score is its own sum).
            const int64_t nkb4 = nkb / 4 * 4;
            if (nkb4 < nkb) scores_tail(nkb - nkb4, qrows, qpitch, kp + nkb4 * kst * 512, kst,
                                        s + nkb4 * 16, spitch);
            for (int64_t b = 0; b < nkb4; b += 4) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int64_t st = 0; st < kst; st++) {
                    const uint16_t *kt = kp + (b * kst + st) * 512;
                    _tile_loadd(4, qrows + st * 32, qpitch);
                    _tile_loadd(5, kt, 64);
                    _tile_dpbf16ps(0, 4, 5);
                    _tile_loadd(6, kt + kst * 512, 64);
                    _tile_dpbf16ps(1, 4, 6);
                    _tile_loadd(7, kt + 2 * kst * 512, 64);
                    _tile_dpbf16ps(2, 4, 7);
                    _tile_loadd(5, kt + 3 * kst * 512, 64);
                    _tile_dpbf16ps(3, 4, 5);
                }
                _tile_stored(0, s + b * 16, spitch * 4);
                _tile_stored(1, s + b * 16 + 16, spitch * 4);
                _tile_stored(2, s + b * 16 + 32, spitch * 4);
                _tile_stored(3, s + b * 16 + 48, spitch * 4);
            }
            float *sums = sums2[qb & 1];
            for (int64_t r = 0; r < 16; r++) {
                uint16_t *prow = p + ((qb & 1) * 16 + r) * t32;
                float *srow = s + r * spitch;
                const int64_t n = r < rows ? i0 + r + 1 : 0;  // keys this query sees
                __m512 vmax = _mm512_set1_ps(-INFINITY);
                for (int64_t j = 0; j < n; j += 16) {
                    __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
                    __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, srow + j), _mm512_set1_ps(scale));
                    vmax = _mm512_mask_max_ps(vmax, m, vmax, x);
                }
                const float mx = _mm512_reduce_max_ps(vmax);
                __m512 vsum = _mm512_setzero_ps();
                const int64_t seen = (n + 15) / 16 * 16;  // past it, probabilities are zero
                for (int64_t j = 0; j < seen; j += 16) {
                    int64_t left = n - j;
                    __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
                    __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, srow + j), _mm512_set1_ps(scale));
                    __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(x, _mm512_set1_ps(mx))));
                    vsum = _mm512_add_ps(vsum, e);
                    store_bf16(prow + j, e, 0xFFFF);
                }
                for (int64_t j = seen; j < nts * 32; j += 16)
                    _mm256_storeu_si256((__m256i *)(prow + j), _mm256_setzero_si256());
                sums[r] = n ? _mm512_reduce_add_ps(vsum) : 1.0f;
            }
            // The previous block's values now, this one's next time: the tile loads of P wait
            // for the stores that wrote it, which have had a block's work to complete.
            if (qb > 0) values_block(p + (1 - (qb & 1)) * 16 * t32, vp, sums2[1 - (qb & 1)], out,
                                     obuf, i0 - 16, 16, prev_nts, t32, D, Hq, qh);
            prev_nts = nts;
            if (qb == nb - 1) values_block(p + (qb & 1) * 16 * t32, vp, sums2[qb & 1], out, obuf,
                                           i0, rows, nts, t32, D, Hq, qh);
        }
    }
}

// Every (sequence, key head) pair of a batch, in parallel. A batch is either B rows of T
// positions (starts NULL: sequence b at offset b of the batch axis, out [B, T, Hq, D]) or B
// sequences packed along the position axis of one row (sequence b at positions starts[b] to
// starts[b + 1] - 1, T the longest, out [positions, Hq, D]). Returns 0, or -1 when a buffer
// could not be allocated.
static int attend_batch(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out,
                        const int64_t *starts, int64_t B, int64_t T, int64_t Hq, int64_t Hk,
                        int64_t D, const int64_t *qs, const int64_t *ks, const int64_t *vs,
                        float scale) {
    const int64_t group = Hq / Hk, nb = key_blocks(T), t32 = (T + 31) / 32 * 32;
    const size_t kp_bytes = (size_t)nb * 16 * D * 2, vp_bytes = (size_t)t32 * D * 2;
    const size_t s_bytes = (size_t)16 * nb * 16 * 4, p_bytes = (size_t)2 * 16 * t32 * 2;
    const size_t q_bytes = (size_t)16 * D * 2, o_bytes = 16 * 64 * 4;
    const size_t each = kp_bytes + vp_bytes + s_bytes + p_bytes + q_bytes + o_bytes + 6 * 64;
    const size_t stride = (each + 63) / 64 * 64;
    const int threads = omp_get_max_threads();
    unsigned char *mem = aligned_alloc(64, stride * threads);
    if (!mem) return -1;
#pragma omp parallel num_threads(threads)
    {
        unsigned char *at = mem + stride * omp_get_thread_num();
#define TAKE(n) (at += ((n) + 63) / 64 * 64, at - ((n) + 63) / 64 * 64)
        uint16_t *kp = (uint16_t *)TAKE(kp_bytes), *vp = (uint16_t *)TAKE(vp_bytes);
        float *s = (float *)TAKE(s_bytes);
        uint16_t *p = (uint16_t *)TAKE(p_bytes), *qbuf = (uint16_t *)TAKE(q_bytes);
        float *obuf = (float *)TAKE(o_bytes);
#undef TAKE
        tile_config saved;
        amx_enter(&saved);
#pragma omp for schedule(dynamic)
        for (int64_t w = 0; w < B * Hk; w++) {
            const int64_t b = w / Hk, h = w % Hk;
            const int64_t length = starts ? starts[b + 1] - starts[b] : T;
            if (length <= 0) continue;
            // Offsets of the sequence's first position: along the position axis when packed.
            const int64_t qo = starts ? starts[b] * qs[2] : b * qs[0];
            const int64_t ko = starts ? starts[b] * ks[2] : b * ks[0];
            const int64_t vo = starts ? starts[b] * vs[2] : b * vs[0];
            const int64_t oo = (starts ? starts[b] : b * T) * Hq * D;
            attend_group(q + qo, k + ko + h * ks[1], v + vo + h * vs[1], out + oo, length, Hq, D,
                         group, h * group, qs, ks, vs, scale, kp, vp, s, p, qbuf, obuf);
        }
        amx_leave(&saved);
    }
    free(mem);
    return 0;
}

// q, k, v: bfloat16 [B, heads, T, D] with any strides (elements: batch, head, position) and
// contiguous last dimension; out: [B, T, Hq, D] contiguous. D a multiple of 64, Hq a multiple
// of Hk. Returns 0, or -1 when a buffer could not be allocated.
int mb_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out,
                      int64_t B, int64_t T, int64_t Hq, int64_t Hk, int64_t D, const int64_t *qs,
                      const int64_t *ks, const int64_t *vs, float scale) {
    return attend_batch(q, k, v, out, NULL, B, T, Hq, Hk, D, qs, ks, vs, scale);
}

// The same for S sequences packed into one row: q, k, v [1, heads, positions, D], sequence b at
// positions starts[b] .. starts[b + 1] - 1 (starts ascending, S + 1 of them), T the longest
// sequence; out: [positions, Hq, D] contiguous. Each sequence attends only to itself.
int mb_attention_packed_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v,
                             uint16_t *out, const int64_t *starts, int64_t S, int64_t T,
                             int64_t Hq, int64_t Hk, int64_t D, const int64_t *qs,
                             const int64_t *ks, const int64_t *vs, float scale) {
    return attend_batch(q, k, v, out, starts, S, T, Hq, Hk, D, qs, ks, vs, scale);
}
