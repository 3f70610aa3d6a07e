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
