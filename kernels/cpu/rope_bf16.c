/* Rotary embedding of q and k heads in place, GPT-NeoX layout (rotate halves of the first
 * rotary_dim channels), rounding after each op as torch does with bf16 cos/sin:
 *   x1' = bf16(bf16(x1 * c) - bf16(x2 * s)),  x2' = bf16(bf16(x2 * c) + bf16(x1 * s)).
 * q and k are slices of the fused qkv output, so rows are strided. */
#include "bf16.h"
#include "simd.h"

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
            int64_t i = 0;
#ifdef __AVX512BF16__
            for (; i + 16 <= half; i += 16) {
                const __m512 x1 = load_bf16(x + i), x2 = load_bf16(x + i + half);
                const __m512 ci = load_bf16(c + i), si = load_bf16(s + i);
                const __m512 y1 = _mm512_sub_ps(round_bf16_ps(_mm512_mul_ps(x1, ci)), round_bf16_ps(_mm512_mul_ps(x2, si)));
                const __m512 y2 = _mm512_add_ps(round_bf16_ps(_mm512_mul_ps(x2, ci)), round_bf16_ps(_mm512_mul_ps(x1, si)));
                _mm256_storeu_si256((__m256i *)(x + i), (__m256i)_mm512_cvtneps_pbh(y1));
                _mm256_storeu_si256((__m256i *)(x + i + half), (__m256i)_mm512_cvtneps_pbh(y2));
            }
#elif defined(SGL_AVX2)
            for (; i + 8 <= half; i += 8) {
                const __m256 x1 = load8_bf16(x + i), x2 = load8_bf16(x + i + half);
                const __m256 ci = load8_bf16(c + i), si = load8_bf16(s + i);
                store8_bf16(x + i, _mm256_sub_ps(round8_bf16_ps(_mm256_mul_ps(x1, ci)), round8_bf16_ps(_mm256_mul_ps(x2, si))));
                store8_bf16(x + i + half, _mm256_add_ps(round8_bf16_ps(_mm256_mul_ps(x2, ci)), round8_bf16_ps(_mm256_mul_ps(x1, si))));
            }
#endif
            for (; i < half; i++) {
                const float x1 = bf16_to_f32(x[i]), x2 = bf16_to_f32(x[i + half]);
                const float ci = bf16_to_f32(c[i]), si = bf16_to_f32(s[i]);
                x[i] = f32_to_bf16(round_bf16(x1 * ci) - round_bf16(x2 * si));
                x[i + half] = f32_to_bf16(round_bf16(x2 * ci) + round_bf16(x1 * si));
            }
        }
    }
}
