// Causal attention in bfloat16 for short prompts: what medboard's attention kernels share
// (attention_amx.c on AMX tiles, attention_avx512.c with AVX-512 BF16 instructions).
//
// The same arithmetic as torch's CPU flash-attention kernel for bfloat16 inputs: scores
// q.k accumulated in float32, scaled, softmax in float32 (each row's maximum subtracted, the
// exponentials summed unrounded), the exponentials rounded to bfloat16 and multiplied with the
// values in float32, then divided by the sum and rounded to bfloat16. torch works in blocks of
// 32 queries whose fixed cost outweighs their arithmetic at a hundred-token prompt; here a
// whole key range is one pass (the sequence fits in cache).
//
// Keys and values are packed once per (sequence, key/value head) as the B operands of
// bfloat16 pair products (16 lanes of 32 bits, each a pair of bfloat16 values), the layout
// both AMX tiles and VDPBF16PS read. The file that includes this one defines, before it:
//
//   typedef ... kernel_state;                 saved around a thread's work
//   static void kernel_enter(kernel_state *); static void kernel_leave(const kernel_state *);
//   static void scores_rows(const uint16_t *qrows, int64_t qpitch, int64_t rows,
//                           const uint16_t *kp, int64_t nkb, int64_t kst, float *s,
//                           int64_t spitch);
//       scores of 16 query rows (qpitch bytes apart; rows past `rows` are zero) against key
//       blocks 0 .. nkb - 1 of packed K, into s (spitch floats per row; s and K have room for
//       nkb rounded up to a multiple of 4 blocks, zero keys past the sequence);
//   static void values_rows(const uint16_t *p, int64_t t32, int64_t rows, const uint16_t *vp,
//                           int64_t nts, int64_t db, int64_t c, float *obuf);
//       16 rows of P (bfloat16, t32 apart, zero past each row's keys and in rows past `rows`)
//       times packed V over nts steps of 32 keys, dims c * 64 .. c * 64 + 63, into obuf
//       (16 x 64 floats).
#ifndef MEDBOARD_ATTENTION_CORE_H
#define MEDBOARD_ATTENTION_CORE_H
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

// K packed: block b of 16 keys, step st of 32 dims, row r holds, per key j, the pair of dims
// st * 32 + 2r, + 1: the transpose of 16 keys x 16 dim pairs, 32 bits each (keys past T zero).
static void pack_keys(const uint16_t *k, int64_t T, int64_t D, int64_t kpitch, uint16_t *kp) {
    const int64_t nb4 = key_blocks(T), kst = D / 32;
    for (int64_t b = 0; b < nb4; b++)
        for (int64_t st = 0; st < kst; st++) {
            __m512i rows16[16];
            for (int64_t j = 0; j < 16; j++) {
                const int64_t key = b * 16 + j;
                rows16[j] = key < T ? _mm512_loadu_si512(k + key * kpitch + st * 32)
                                    : _mm512_setzero_si512();
            }
            transpose16_epi32(rows16);
            __m512i *tile = (__m512i *)(kp + (b * kst + st) * 512);
            for (int64_t r = 0; r < 16; r++) _mm512_store_si512(tile + r, rows16[r]);
        }
}

// V packed: step st of 32 keys, block of 16 dims, row r holds keys st * 32 + 2r, + 1 per dim,
// interleaved (keys past T are zero).
static void pack_values(const uint16_t *v, int64_t T, int64_t D, int64_t vpitch, uint16_t *vp) {
    const int64_t t32 = (T + 31) / 32 * 32, db = D / 16;
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9,
                                        40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1,
                                        32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int64_t t = 0; t < t32; t += 2) {
        const int64_t st = t / 32, r = (t % 32) / 2;
        for (int64_t c = 0; c < db; c += 2) {  // 32 dims of both keys: two rows
            __m512i v0 = t < T ? _mm512_loadu_si512(v + t * vpitch + c * 16)
                               : _mm512_setzero_si512();
            __m512i v1 = t + 1 < T ? _mm512_loadu_si512(v + (t + 1) * vpitch + c * 16)
                                   : _mm512_setzero_si512();
            _mm512_store_si512(vp + ((st * db + c) * 16 + r) * 32,
                               _mm512_permutex2var_epi16(v0, lo, v1));
            _mm512_store_si512(vp + ((st * db + c + 1) * 16 + r) * 32,
                               _mm512_permutex2var_epi16(v0, hi, v1));
        }
    }
}

// The first key query i sees: i - window + 1 under a sliding window (0: none), else 0.
static inline int64_t first_key(int64_t i, int64_t window) {
    return window > 0 && i + 1 > window ? i + 1 - window : 0;
}

// Keys lo .. n - 1 among the 16 from key j, as a lane mask.
static inline __mmask16 key_mask(int64_t j, int64_t lo, int64_t n) {
    const int64_t a = lo > j ? lo - j : 0, b = n - j < 16 ? n - j : 16;
    return b <= a ? 0 : (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

// Softmax of 16 score rows of query block qb (rows i0 .. i0 + rows - 1 of the sequence, row r
// seeing keys first_key(i0 + r, window) .. i0 + r; scores of the keys before a row's first are
// never read): the exponentials rounded to bfloat16 into p (t32 apart, zero before each row's
// first key and up to nts * 32 past its last, and in rows past `rows`), their unrounded sums
// into sums. Without a window (or within it) every row starts at key 0.
static void softmax_rows(const float *s, int64_t spitch, int64_t i0, int64_t rows, int64_t nts,
                         int64_t t32, float scale, int64_t window, uint16_t *p, float *sums) {
    for (int64_t r = 0; r < 16; r++) {
        uint16_t *prow = p + r * t32;
        const float *srow = s + r * spitch;
        const int64_t n = r < rows ? i0 + r + 1 : 0;  // keys up to this query
        const int64_t lo = r < rows ? first_key(i0 + r, window) : 0;  // the first it sees
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (int64_t j = lo / 16 * 16; j < n; j += 16) {
            const __mmask16 m = key_mask(j, lo, n);
            __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, srow + j), _mm512_set1_ps(scale));
            vmax = _mm512_mask_max_ps(vmax, m, vmax, x);
        }
        const float mx = _mm512_reduce_max_ps(vmax);
        __m512 vsum = _mm512_setzero_ps();
        const int64_t seen = (n + 15) / 16 * 16;  // past it, probabilities are zero
        for (int64_t j = 0; j < lo / 16 * 16; j += 16)  // and before the row's first key
            _mm256_storeu_si256((__m256i *)(prow + j), _mm256_setzero_si256());
        for (int64_t j = lo / 16 * 16; j < seen; j += 16) {
            const __mmask16 m = key_mask(j, lo, n);
            __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, srow + j), _mm512_set1_ps(scale));
            __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(x, _mm512_set1_ps(mx))));
            vsum = _mm512_add_ps(vsum, e);
            store_bf16(prow + j, e, 0xFFFF);
        }
        for (int64_t j = seen; j < nts * 32; j += 16)
            _mm256_storeu_si256((__m256i *)(prow + j), _mm256_setzero_si256());
        sums[r] = n ? _mm512_reduce_add_ps(vsum) : 1.0f;
    }
}

// Probabilities times values for one block of 16 query rows (i0 .. i0 + rows - 1) of query head
// qh, over steps st0 .. nts - 1 of 32 keys (P is zero before), divided by each row's sum,
// rounded to bfloat16 into out. The steps skipped would add exact zeros: the same sums.
static void values_block(const uint16_t *p, const uint16_t *vp, const float *sums, uint16_t *out,
                         float *obuf, int64_t i0, int64_t rows, int64_t st0, int64_t nts,
                         int64_t t32, int64_t D, int64_t Hq, int64_t qh) {
    const int64_t db = D / 16;
    for (int64_t c = 0; c < D / 64; c++) {
        values_rows(p + st0 * 32, t32, rows, vp + st0 * db * 512, nts - st0, db, c, obuf);
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

// One (sequence, key/value head) pair: its query heads, every query row (each seeing the last
// `window` keys up to itself; window 0: all of them). Key blocks and value steps wholly before a
// query block's first key are skipped.
static void attend_group(const uint16_t *q, const uint16_t *k, const uint16_t *v, uint16_t *out,
                         int64_t T, int64_t Hq, int64_t D, int64_t group, int64_t qh0,
                         const int64_t *qs, const int64_t *ks, const int64_t *vs, float scale,
                         int64_t window, uint16_t *kp, uint16_t *vp, float *s, uint16_t *p, uint16_t *qbuf,
                         float *obuf) {
    const int64_t nb = (T + 15) / 16, t32 = (T + 31) / 32 * 32;
    const int64_t kst = D / 32;
    const int64_t spitch = key_blocks(T) * 16;  // floats per score row
    pack_keys(k, T, D, ks[2], kp);
    pack_values(v, T, D, vs[2], vp);
    for (int64_t g = 0; g < group; g++) {
        const int64_t qh = qh0 + g;
        const uint16_t *qhead = q + qh * qs[1];
        float sums2[2][16];
        int64_t prev_nts = 0, prev_st0 = 0;
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
            const int64_t lo = first_key(i0, window), kb0 = lo / 16, st0 = lo / 32;
            scores_rows(qrows, qpitch, rows, kp + kb0 * kst * 512, nkb - kb0, kst, s + kb0 * 16,
                        spitch);
            float *sums = sums2[qb & 1];
            softmax_rows(s, spitch, i0, rows, nts, t32, scale, window, p + (qb & 1) * 16 * t32,
                         sums);
            // The previous block's values now, this one's next time: the loads of P wait for
            // the stores that wrote it, which have had a block's work to complete.
            if (qb > 0) values_block(p + (1 - (qb & 1)) * 16 * t32, vp, sums2[1 - (qb & 1)], out,
                                     obuf, i0 - 16, 16, prev_st0, prev_nts, t32, D, Hq, qh);
            prev_nts = nts;
            prev_st0 = st0;
            if (qb == nb - 1) values_block(p + (qb & 1) * 16 * t32, vp, sums2[qb & 1], out, obuf,
                                           i0, rows, st0, nts, t32, D, Hq, qh);
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
                        float scale, int64_t window) {
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
        kernel_state saved;
        kernel_enter(&saved);
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
                         group, h * group, qs, ks, vs, scale, window, kp, vp, s, p, qbuf,
                         obuf);
        }
        kernel_leave(&saved);
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
    return attend_batch(q, k, v, out, NULL, B, T, Hq, Hk, D, qs, ks, vs, scale, 0);
}

// The same for S sequences packed into one row: q, k, v [1, heads, positions, D], sequence b at
// positions starts[b] .. starts[b + 1] - 1 (starts ascending, S + 1 of them), T the longest
// sequence; out: [positions, Hq, D] contiguous. Each sequence attends only to itself, each
// query to the last `window` positions up to itself (a sliding window; 0: all of them).
int mb_attention_packed_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v,
                             uint16_t *out, const int64_t *starts, int64_t S, int64_t T,
                             int64_t Hq, int64_t Hk, int64_t D, const int64_t *qs,
                             const int64_t *ks, const int64_t *vs, float scale, int64_t window) {
    return attend_batch(q, k, v, out, starts, S, T, Hq, Hk, D, qs, ks, vs, scale, window);
}
#endif
