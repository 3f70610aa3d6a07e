// Vector arithmetic shared by medboard's kernels (AVX-512 with bfloat16 conversions).
#ifndef MEDBOARD_VECMATH_H
#define MEDBOARD_VECMATH_H
#include <immintrin.h>
#include <stdint.h>

static inline __m512 exp512(__m512 x) {
    // exp(x): 2^n * p(r), r = x - n ln 2, Cephes' expf polynomial (1-2 ulp).
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // exp(-104) is 0 in float32
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// The lanes of m rounded to bfloat16 (to nearest even, as torch converts) and stored.
static inline void store_bf16(uint16_t *dst, __m512 x, __mmask16 m) {
    _mm256_mask_storeu_epi16(dst, m, (__m256i)_mm512_cvtneps_pbh(x));
}

// 16 bfloat16 values widened to float32 (exactly: a bfloat16 is a float32's upper half).
static inline __m512 widen_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Up to 16 bfloat16 values (the lanes of m) widened to float32; the other lanes are 0.
static inline __m512 load_bf16(const uint16_t *src, __mmask16 m) {
    return widen_bf16(_mm256_maskz_loadu_epi16(m, src));
}

// gated_act.c's and gated_mlp_amx.c's activations (their kinds, as activation.py numbers them).
enum { SILU = 0, GELU_TANH = 1 };

// a / b for b >= 1: a reciprocal estimate refined by one Newton step, the quotient corrected
// once with its exact remainder (fused multiply-add), which gave the correctly rounded quotient
// on every value tried, in a fraction of the time of a vector division. Lanes with a huge b
// (where the estimate underflows; an infinite exponential) take the division.
static inline __m512 divide(__m512 a, __m512 b) {
    __m512 r = _mm512_rcp14_ps(b);
    r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(b, r, _mm512_set1_ps(1.0f)), r);
    __m512 q = _mm512_mul_ps(a, r);
    q = _mm512_fmadd_ps(_mm512_fnmadd_ps(b, q, a), r, q);
    __mmask16 huge = _mm512_cmp_ps_mask(b, _mm512_set1_ps(0x1p100f), _CMP_GT_OQ);
    return huge ? _mm512_mask_div_ps(q, huge, a, b) : q;
}

static inline __m512 activation(__m512 x, int kind) {
    const __m512 one = _mm512_set1_ps(1.0f);
    if (kind == GELU_TANH) {  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        __m512 half = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
        __m512 cube = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        __m512 inner = _mm512_add_ps(x, _mm512_mul_ps(cube, _mm512_set1_ps(0.044715f)));
        __m512 y = _mm512_mul_ps(inner, _mm512_set1_ps(0.7978845608028654f));
        __m512 e = exp512(_mm512_mul_ps(y, _mm512_set1_ps(-2.0f)));
        __m512 tanh = _mm512_sub_ps(divide(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)), one);
        return _mm512_mul_ps(half, _mm512_add_ps(tanh, one));
    }
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));  // SiLU: x / (exp(-x) + 1)
    return divide(x, _mm512_add_ps(e, one));
}

// x rounded to bfloat16 (to nearest even) and widened back to float32.
static inline __m512 round_bf16(__m512 x) { return widen_bf16((__m256i)_mm512_cvtneps_pbh(x)); }
#endif
