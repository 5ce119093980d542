/* act(gate) * up for a fused gate/up bf16 tensor, rounding after each op as torch does:
 *   out = bf16(bf16(silu(gate)) * up)   with silu in float32.
 * The AVX-512 path evaluates exp with a degree-6 polynomial on 2^fraction (relative error
 * ~2e-7, far below bf16's 2^-8); libm's expf does not vectorize and made this kernel slower
 * than torch at prefill sizes (2.1 ms against 1.3 ms for 512 x 1536). */
#include <math.h>
#include "bf16.h"
#ifdef __AVX512BF16__
#include <immintrin.h>

static inline __m512 exp_ps(__m512 x) {
    const __m512 t = _mm512_mul_ps(_mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f)),
                                   _mm512_set1_ps(1.44269504088896341f)); /* x * log2(e) */
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n); /* in [-0.5, 0.5]: 2^f by its Taylor series in f ln 2 */
    __m512 p = _mm512_set1_ps(1.5403530393381609954e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443423e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284771619e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821579953e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071233e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994530942e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n); /* p * 2^n */
}

static inline __m512 load_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

static inline __m512 round_bf16_ps(__m512 x) { /* to bf16 (nearest even) and back */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x)), 16));
}
#endif

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

/* gate_up (M, 2 * I) contiguous: gate = [:, :I], up = [:, I:]; out (M, I). */
void sgl_silu_mul_bf16(const uint16_t *gate_up, uint16_t *out, int64_t M, int64_t I) {
#pragma omp parallel for schedule(static) if (M * I >= SGL_PARALLEL_MIN)
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *gate = gate_up + m * 2 * I, *up = gate + I;
        uint16_t *o = out + m * I;
        int64_t i = 0;
#ifdef __AVX512BF16__
        for (; i + 16 <= I; i += 16) {
            const __m512 g = load_bf16(gate + i);
            const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
            const __m512 y = _mm512_mul_ps(round_bf16_ps(s), load_bf16(up + i));
            _mm256_storeu_si256((__m256i *)(o + i), (__m256i)_mm512_cvtneps_pbh(y));
        }
#endif
        for (; i < I; i++) o[i] = f32_to_bf16(round_bf16(silu(bf16_to_f32(gate[i]))) * bf16_to_f32(up[i]));
    }
}
