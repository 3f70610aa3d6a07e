// Gated activations in bfloat16 for medboard's scoring passes: act(gate) * up, rounded once.
//
// The same arithmetic, operation for operation, as the kernel torch.compile writes for these
// layers (kernels.INDUCTOR_OPTIONS): bfloat16 inputs widened to float32, SiLU as
// x / (exp(-x) + 1), the tanh-approximated GELU with tanh(y) = 2 / (1 + exp(-2y)) - 1, the
// product with `up` in float32, one rounding to bfloat16 (round to nearest even). Only the
// exponential differs (Cephes' polynomial here, SLEEF's in torch; both within 1-2 ulp), which
// is where the time went: the compiled kernel spends twice the time its memory traffic needs.
#include <omp.h>
#include <stdint.h>

#include "vecmath.h"

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

// out[i] = act(gate[i]) * up[i] for n contiguous values; kind: SILU or GELU_TANH.
void mb_gated_act_bf16(const uint16_t *gate, const uint16_t *up, uint16_t *out, int64_t n,
                       int kind) {
    const int64_t chunk = 4096;  // values per unit of work
    const int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i += 16) {
            const __mmask16 m = end - i >= 16 ? 0xFFFF : (__mmask16)((1u << (end - i)) - 1);
            __m512 y = _mm512_mul_ps(activation(load_bf16(gate + i, m), kind), load_bf16(up + i, m));
            store_bf16(out + i, y, m);
        }
    }
}
