/* act(gate) * up for a fused gate/up bf16 tensor, rounding after each op as torch does:
 *   out = bf16(bf16(act(gate)) * up)   with act in float32. */
#include <math.h>
#include "bf16.h"

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

/* gate_up (M, 2 * I) contiguous: gate = [:, :I], up = [:, I:]; out (M, I). */
void sgl_silu_mul_bf16(const uint16_t *gate_up, uint16_t *out, int64_t M, int64_t I) {
#pragma omp parallel for schedule(static) if (M * I >= SGL_PARALLEL_MIN)
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *gate = gate_up + m * 2 * I, *up = gate + I;
        uint16_t *o = out + m * I;
#pragma omp simd
        for (int64_t i = 0; i < I; i++)
            o[i] = f32_to_bf16(round_bf16(silu(bf16_to_f32(gate[i]))) * bf16_to_f32(up[i]));
    }
}
