/* RMS norm of bf16 rows, as transformers' LlamaRMSNorm computes it in bf16:
 *   out = bf16(w * bf16(x * rsqrt(mean(x^2) + eps)))   with x, the mean and rsqrt in float32.
 * One call replaces the eight torch ops of layers/norm.py (~30 us a row at decode: ~2 ms a
 * step over the 61 norms of a 30-layer model). */
#include <math.h>
#include "bf16.h"
#include "simd.h"

/* 1 / sqrt(mean(row^2) + eps) in float32, the sum in a fixed order per level */
static inline float inverse_rms(const uint16_t *row, int64_t D, float eps) {
    int64_t d = 0;
    float sum = 0.0f;
#ifdef __AVX512BF16__
    __m512 squares = _mm512_setzero_ps();
    for (; d + 16 <= D; d += 16) {
        const __m512 v = load_bf16(row + d);
        squares = _mm512_fmadd_ps(v, v, squares);
    }
    sum = _mm512_reduce_add_ps(squares);
#elif defined(SGL_AVX2)
    __m256 squares = _mm256_setzero_ps();
    for (; d + 8 <= D; d += 8) {
        const __m256 v = load8_bf16(row + d);
        squares = _mm256_fmadd_ps(v, v, squares);
    }
    sum = hsum8_ps(squares);
#endif
    for (; d < D; d++) {
        const float v = bf16_to_f32(row[d]);
        sum += v * v;
    }
    return 1.0f / sqrtf(sum / (float)D + eps);
}

/* x (M, D) with row stride x_stride, weight (D,), out (M, D) contiguous. gemma (a constant at
 * each call): bf16((x * scale) * (offset + w)), one rounding; else Llama's
 * bf16(w * bf16(x * scale)). Rows may be normed in place (each is read whole before it is
 * written). */
static inline __attribute__((always_inline)) void norm_rows(const uint16_t *x, int64_t x_stride, const uint16_t *weight,
                                                            uint16_t *out, int64_t M, int64_t D, float eps,
                                                            float offset, const int gemma) {
#pragma omp parallel for schedule(static) if (M * D >= SGL_PARALLEL_MIN)
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *row = x + m * x_stride;
        uint16_t *o = out + m * D;
        const float scale = inverse_rms(row, D, eps);
        int64_t d = 0;
#ifdef __AVX512BF16__
        const __m512 s16 = _mm512_set1_ps(scale), off16 = _mm512_set1_ps(offset);
        for (; d + 16 <= D; d += 16) {
            const __m512 xs = _mm512_mul_ps(load_bf16(row + d), s16), w = load_bf16(weight + d);
            const __m512 y = gemma ? _mm512_mul_ps(xs, _mm512_add_ps(off16, w)) : _mm512_mul_ps(w, round_bf16_ps(xs));
            _mm256_storeu_si256((__m256i *)(o + d), (__m256i)_mm512_cvtneps_pbh(y));
        }
#elif defined(SGL_AVX2)
        const __m256 s8 = _mm256_set1_ps(scale), off8 = _mm256_set1_ps(offset);
        for (; d + 8 <= D; d += 8) {
            const __m256 xs = _mm256_mul_ps(load8_bf16(row + d), s8), w = load8_bf16(weight + d);
            store8_bf16(o + d, gemma ? _mm256_mul_ps(xs, _mm256_add_ps(off8, w)) : _mm256_mul_ps(w, round8_bf16_ps(xs)));
        }
#endif
        for (; d < D; d++) {
            const float xs = bf16_to_f32(row[d]) * scale, w = bf16_to_f32(weight[d]);
            o[d] = f32_to_bf16(gemma ? xs * (offset + w) : w * round_bf16(xs));
        }
    }
}

void sgl_rmsnorm_bf16(const uint16_t *x, int64_t x_stride, const uint16_t *weight, uint16_t *out,
                      int64_t M, int64_t D, float eps) {
    norm_rows(x, x_stride, weight, out, M, D, eps, 0.0f, 0);
}

/* Gemma's RMS norm, as transformers' Gemma*RMSNorm computes it: everything in float32, rounded
 * once: out = bf16(x * rsqrt(mean(x^2) + eps) * (offset + w)). */
void sgl_rmsnorm_offset_bf16(const uint16_t *x, int64_t x_stride, const uint16_t *weight, uint16_t *out,
                             int64_t M, int64_t D, float eps, float offset) {
    norm_rows(x, x_stride, weight, out, M, D, eps, offset, 1);
}
