/* Vector helpers shared by the kernels: bf16 loads and rounding, a vectorized exp; AVX-512
 * (16 lanes) where built with AVX-512 BF16, else AVX2 + FMA (8 lanes: bf16 widened by a shift,
 * rounded to nearest even with integer ops as bf16.h does, NaN kept). */
#ifndef SGL_SIMD_H
#define SGL_SIMD_H
#ifdef __AVX512BF16__
#include <immintrin.h>

/* exp(x) as 2^n * 2^f, n = round(x log2 e), f in [-0.5, 0.5] by a degree-6 polynomial:
 * relative error ~2e-7, far below bf16's 2^-8. */
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

/* exp(x) for x <= 0 whose result is rounded to bf16 (softmax numerators): a degree-4
 * polynomial (relative error ~4e-6) and no clamping, 4 ops fewer than exp_ps; very negative x
 * give 0 (scalef by a huge negative power). */
static inline __m512 exp_nonpositive_bf16_ps(__m512 x) {
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(9.6181291076284771619e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821579953e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071233e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994530942e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 load_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

static inline __m512 round_bf16_ps(__m512 x) { /* to bf16 (nearest even) and back */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x)), 16));
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SGL_AVX2 1

/* exp_ps's polynomial on 8 lanes; 2^n built in the exponent bits (x clamped to [-87, 88], so
 * n + 127 stays in [1, 254]). */
static inline __m256 exp8_ps(__m256 x) {
    const __m256 t = _mm256_mul_ps(_mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f)),
                                   _mm256_set1_ps(1.44269504088896341f));
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(1.5403530393381609954e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443423e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284771619e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821579953e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071233e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994530942e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

static inline __m256 load8_bf16(const uint16_t *p) { /* 8 bf16 -> 8 floats: a shift left by 16 */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

static inline __m256i bf16_bits8(__m256 x) { /* each lane's bf16 (nearest even) in its low 16 bits */
    const __m256i u = _mm256_castps_si256(x);
    const __m256i high = _mm256_srli_epi32(u, 16);
    const __m256i odd = _mm256_and_si256(high, _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(rounded, _mm256_or_si256(high, _mm256_set1_epi32(0x40)), nan);
}

static inline __m256 round8_bf16_ps(__m256 x) { /* to bf16 and back */
    return _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits8(x), 16));
}

static inline void store8_bf16(uint16_t *p, __m256 x) {
    const __m256i packed = _mm256_packus_epi32(bf16_bits8(x), _mm256_setzero_si256()); /* per 128-bit lane */
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
}

static inline float hsum8_ps(__m256 v) { /* a fixed order: high half + low half, then pairs */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
#endif
