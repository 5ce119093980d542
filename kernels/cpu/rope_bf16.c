/* Rotary embedding of q and k heads in place, GPT-NeoX layout (rotate halves of the first
 * rotary_dim channels), rounding after each op as torch does with bf16 cos/sin:
 *   x1' = bf16(bf16(x1 * c) - bf16(x2 * s)),  x2' = bf16(bf16(x2 * c) + bf16(x1 * s)).
 * q and k are slices of the fused qkv output, so rows are strided. */
#include "bf16.h"

/* qkv (T, row_stride): heads [0, heads) of head_dim channels each start at column 0 (q then
 * k heads back to back); cos/sin (T, rotary_dim / 2) bf16, already gathered per token. */
void sgl_rope_neox_bf16(uint16_t *qkv, int64_t row_stride, int64_t T, int64_t heads, int64_t head_dim,
                        int64_t rotary_dim, const uint16_t *cos, const uint16_t *sin) {
    const int64_t half = rotary_dim / 2;
#pragma omp parallel for schedule(static) if (T * heads * head_dim >= SGL_PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) {
        const uint16_t *c = cos + t * half, *s = sin + t * half;
        for (int64_t h = 0; h < heads; h++) {
            uint16_t *x = qkv + t * row_stride + h * head_dim;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                const float x1 = bf16_to_f32(x[i]), x2 = bf16_to_f32(x[i + half]);
                const float ci = bf16_to_f32(c[i]), si = bf16_to_f32(s[i]);
                x[i] = f32_to_bf16(round_bf16(x1 * ci) - round_bf16(x2 * si));
                x[i + half] = f32_to_bf16(round_bf16(x2 * ci) + round_bf16(x1 * si));
            }
        }
    }
}
