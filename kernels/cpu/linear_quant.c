/* Linear over quantized weights: y (M, N) bf16 = x (M, K) bf16 . W^T (+ bias), W in blocks.
 *
 * Weights (sgl_qweight, unpacked once at load from the GGUF types by sgl.kernels.quant):
 *   kind 0 "q4": 4-bit unsigned q in [0, 15], per 32 columns a scale d and a min m, w = d q + m
 *     (Q4_0, Q4_1, Q4_K). qs (N, K/2): in each 64-column group byte j holds column j in its low
 *     nibble and column j + 32 in its high one (a last group of 32: column j and j + 16).
 *   kind 1 "q8": int8 q, per 16 columns d and m, w = d q + m (Q8_0, Q5_0, Q5_1, Q5_K, Q6_K).
 *   d and m are float32 (N, K/32) or (N, K/16); m may be NULL (all zero).
 * Activations are quantized per row to int8 blocks of 32 (as llama.cpp's q8_0): dx = amax / 127,
 * q = round(x / dx) by x * (1 / dx), ties to even. Then per output
 *   y = sum_b dx_b d_b isum_b + sum_b m_b (dx_b sum_b(qx))
 * with isum_b the integer dot product of block b (vpdpbusd on AVX-512 VNNI, maddubs + madd on
 * AVX2, plain C at level none), the first sum in float32 lanes reduced in a fixed order.
 *
 * NOTE: each output's sums run in the same order whatever M is or where the row sits in the
 * call, so a row's result is independent of the other rows (decode = the same row alone).
 * K must be a multiple of 32. Threads: OpenMP over blocks of 4 weight rows.
 */
#include <math.h>
#include <stdlib.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define WROWS 4 /* weight rows per tile */

#if defined(__AVX2__)
static inline int hsum8_epi32(__m256i p) { /* the 8 int32 lanes' sum */
    const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    const __m128i h2 = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(h2, _mm_shuffle_epi32(h2, 0xb1)));
}
#endif

/* x (M, K) bf16 -> qx (M, K) int8, dx (M, K/32), xs16 (M, K/16) = dx * sum of each 16's q,
 * xs32 (M, K/32) = dx * sum of each 32's q. */
void sgl_quantize_rows_q8(const uint16_t *x, int64_t M, int64_t K, int8_t *qx, float *dx, float *xs16,
                          float *xs32) {
    const int64_t nb = K / 32;
#pragma omp parallel for schedule(static) if (M * K >= 4 * SGL_PARALLEL_MIN)
    for (int64_t i = 0; i < M; i++) {
        for (int64_t b = 0; b < nb; b++) {
            const uint16_t *src = x + i * K + b * 32;
            float v[32], amax = 0.0f;
            for (int j = 0; j < 32; j++) {
                v[j] = bf16_to_f32(src[j]);
                const float a = fabsf(v[j]);
                amax = a > amax ? a : amax;
            }
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            int8_t *q = qx + i * K + b * 32;
            int s0 = 0, s1 = 0;
            for (int j = 0; j < 32; j++) {
                q[j] = (int8_t)nearbyintf(v[j] * id);
                if (j < 16) s0 += q[j];
                else s1 += q[j];
            }
            dx[i * nb + b] = d;
            xs16[i * 2 * nb + 2 * b] = d * (float)s0;
            xs16[i * 2 * nb + 2 * b + 1] = d * (float)s1;
            xs32[i * nb + b] = d * (float)(s0 + s1);
        }
    }
}

/* sum_b m_b xs_b over n blocks, in order (0 where m is NULL) */
static inline float min_term(const float *m, const float *xs, int64_t n) {
    if (!m) return 0.0f;
    float s = 0.0f;
    for (int64_t b = 0; b < n; b++) s += m[b] * xs[b];
    return s;
}

typedef struct {
    const int8_t *qx;
    const float *dx, *xs16, *xs32;
} qrows;

/* ---- the integer dot products of one weight row against one x row, per level ---------------- */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define SGL_QUANT_LEVEL 2
static inline __m512 dx_pairs(const float *dx, const float *d, int64_t b) { /* lanes 0-7: block b, 8-15: b + 1 */
    const __m128 s = _mm_mul_ps(_mm_castpd_ps(_mm_load_sd((const double *)(dx + b))),
                                _mm_castpd_ps(_mm_load_sd((const double *)(d + b))));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(s));
}

/* R weight rows (from w row n0) x MS x rows (from m0): float sums of the q4 blocks */
static inline __attribute__((always_inline)) void tile_q4(const sgl_qweight *w, const qrows *x, float *out,
        int64_t K, int64_t n0, int64_t m0, const int R, const int MS) {
    __m512 acc[MS][R];
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    const int64_t nb = K / 32, full = K / 64;
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (int64_t g = 0; g < full; g++) {
        __m512i wv[R];
        for (int r = 0; r < R; r++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w->qs + (n0 + r) * (K / 2) + g * 32));
            wv[r] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, low)),
                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), low), 1);
        }
        for (int i = 0; i < MS; i++) {
            const __m512i xv = _mm512_loadu_si512(x->qx + (m0 + i) * K + g * 64);
            for (int r = 0; r < R; r++) {
                const __m512 isum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[r], xv));
                acc[i][r] = _mm512_fmadd_ps(isum, dx_pairs(x->dx + (m0 + i) * nb, w->d + (n0 + r) * nb, 2 * g),
                                            acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            float s = _mm512_reduce_add_ps(acc[i][r]);
            if (K % 64) { /* a last block of 32: 16 bytes, column j and j + 16 */
                const int64_t b = nb - 1;
                const __m128i v = _mm_loadu_si128((const __m128i *)(w->qs + (n0 + r) * (K / 2) + full * 32));
                const __m256i wq = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, _mm_set1_epi8(15))),
                                                           _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)), 1);
                const __m256i xq = _mm256_loadu_si256((const __m256i *)(x->qx + (m0 + i) * K + b * 32));
                const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, xq);
                const int isum = hsum8_epi32(p);
                s += (x->dx[(m0 + i) * nb + b] * w->d[(n0 + r) * nb + b]) * (float)isum;
            }
            out[i * WROWS + r] = s;
        }
}

static inline __m512 dx_quads(const float *dx, const float *d, int64_t h) { /* 4 blocks of 16 from h */
    const __m128 dd = _mm_loadu_ps(d + h);
    const __m128 xx = _mm_castpd_ps(_mm_load_sd((const double *)(dx + h / 2))); /* dx of 32-blocks h/2, h/2+1 */
    const __m128 xs = _mm_unpacklo_ps(xx, xx); /* dx0 dx0 dx1 dx1 */
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(_mm_mul_ps(dd, xs)));
}

static inline __attribute__((always_inline)) void tile_q8(const sgl_qweight *w, const qrows *x, float *out,
        int64_t K, int64_t n0, int64_t m0, const int R, const int MS) {
    __m512 acc[MS][R];
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    const int64_t nb = K / 32, nh = K / 16, full = K / 64;
    for (int64_t g = 0; g < full; g++) {
        __m512i aw[R];
        __mmask64 neg[R];
        for (int r = 0; r < R; r++) {
            const __m512i v = _mm512_loadu_si512(w->qs + (n0 + r) * K + g * 64);
            aw[r] = _mm512_abs_epi8(v);
            neg[r] = _mm512_movepi8_mask(v);
        }
        for (int i = 0; i < MS; i++) {
            const __m512i xv = _mm512_loadu_si512(x->qx + (m0 + i) * K + g * 64);
            for (int r = 0; r < R; r++) { /* |w| . (x with w's sign): unsigned times signed */
                const __m512i sx = _mm512_mask_sub_epi8(xv, neg[r], _mm512_setzero_si512(), xv);
                const __m512 isum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), aw[r], sx));
                acc[i][r] = _mm512_fmadd_ps(isum, dx_quads(x->dx + (m0 + i) * nb, w->d + (n0 + r) * nh, 4 * g),
                                            acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            float s = _mm512_reduce_add_ps(acc[i][r]);
            for (int64_t h = 4 * full; h < nh; h++) { /* a last block of 32: two 16s, in order */
                const int8_t *wq = (const int8_t *)w->qs + (n0 + r) * K + h * 16, *xq = x->qx + (m0 + i) * K + h * 16;
                int isum = 0;
                for (int j = 0; j < 16; j++) isum += wq[j] * xq[j];
                s += (x->dx[(m0 + i) * nb + h / 2] * w->d[(n0 + r) * nh + h]) * (float)isum;
            }
            out[i * WROWS + r] = s;
        }
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SGL_QUANT_LEVEL 1
static inline __m256i dot_u8s8(__m256i u, __m256i s) { /* 8 int32 sums of 4 byte products each */
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

static inline __attribute__((always_inline)) void tile_q4(const sgl_qweight *w, const qrows *x, float *out,
        int64_t K, int64_t n0, int64_t m0, const int R, const int MS) {
    __m256 acc[MS][R];
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm256_setzero_ps();
    const int64_t nb = K / 32, full = K / 64;
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (int64_t g = 0; g < full; g++) {
        __m256i lo[R], hi[R];
        for (int r = 0; r < R; r++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w->qs + (n0 + r) * (K / 2) + g * 32));
            lo[r] = _mm256_and_si256(v, low);
            hi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        }
        for (int i = 0; i < MS; i++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(x->qx + (m0 + i) * K + g * 64));
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)(x->qx + (m0 + i) * K + g * 64 + 32));
            const float *dx = x->dx + (m0 + i) * nb + 2 * g;
            for (int r = 0; r < R; r++) {
                const float *d = w->d + (n0 + r) * nb + 2 * g;
                acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(lo[r], x0)), _mm256_set1_ps(dx[0] * d[0]), acc[i][r]);
                acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(hi[r], x1)), _mm256_set1_ps(dx[1] * d[1]), acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            float s = hsum8_ps(acc[i][r]);
            if (K % 64) {
                const int64_t b = nb - 1;
                const __m128i v = _mm_loadu_si128((const __m128i *)(w->qs + (n0 + r) * (K / 2) + full * 32));
                const __m256i wq = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, _mm_set1_epi8(15))),
                                                           _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)), 1);
                const __m256i p = dot_u8s8(wq, _mm256_loadu_si256((const __m256i *)(x->qx + (m0 + i) * K + b * 32)));
                const int isum = hsum8_epi32(p);
                s += (x->dx[(m0 + i) * nb + b] * w->d[(n0 + r) * nb + b]) * (float)isum;
            }
            out[i * WROWS + r] = s;
        }
}

static inline __attribute__((always_inline)) void tile_q8(const sgl_qweight *w, const qrows *x, float *out,
        int64_t K, int64_t n0, int64_t m0, const int R, const int MS) {
    __m256 acc[MS][R];
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm256_setzero_ps();
    const int64_t nb = K / 32, nh = K / 16;
    for (int64_t b = 0; b < nb; b++) { /* 32 columns: two 16s, lanes 0-3 and 4-7 */
        __m256i aw[R], wv[R];
        for (int r = 0; r < R; r++) {
            wv[r] = _mm256_loadu_si256((const __m256i *)(w->qs + (n0 + r) * K + b * 32));
            aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
        }
        for (int i = 0; i < MS; i++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qx + (m0 + i) * K + b * 32));
            const float dx = x->dx[(m0 + i) * nb + b];
            for (int r = 0; r < R; r++) {
                const float *d = w->d + (n0 + r) * nh + 2 * b;
                const __m256 scale = _mm256_set_m128(_mm_set1_ps(dx * d[1]), _mm_set1_ps(dx * d[0]));
                const __m256 isum = _mm256_cvtepi32_ps(dot_u8s8(aw[r], _mm256_sign_epi8(xv, wv[r])));
                acc[i][r] = _mm256_fmadd_ps(isum, scale, acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) out[i * WROWS + r] = hsum8_ps(acc[i][r]);
}
#else
#define SGL_QUANT_LEVEL 0
/* portable C: per block an integer sum, then the scaled sums in order */
static void tile_q4(const sgl_qweight *w, const qrows *x, float *out, int64_t K, int64_t n0, int64_t m0,
                    const int R, const int MS) {
    const int64_t nb = K / 32;
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            const uint8_t *qs = w->qs + (n0 + r) * (K / 2);
            const int8_t *xq = x->qx + (m0 + i) * K;
            float s = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int64_t g = b / 2, base = g * 32, half = (b * 32 + 32 <= (K / 64) * 64) ? 32 : 16;
                int isum = 0;
                for (int j = 0; j < 32; j++) { /* column b*32 + j of the group's byte layout */
                    const int64_t c = (b % 2) * 32 + j; /* column within the group (a last 32: 0..31) */
                    const int64_t byte = c % half, shift = c >= half ? 4 : 0;
                    isum += ((qs[base + byte] >> shift) & 15) * xq[b * 32 + j];
                }
                s += (x->dx[(m0 + i) * nb + b] * w->d[(n0 + r) * nb + b]) * (float)isum;
            }
            out[i * WROWS + r] = s;
        }
}

static void tile_q8(const sgl_qweight *w, const qrows *x, float *out, int64_t K, int64_t n0, int64_t m0,
                    const int R, const int MS) {
    const int64_t nb = K / 32, nh = K / 16;
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            const int8_t *wq = (const int8_t *)w->qs + (n0 + r) * K, *xq = x->qx + (m0 + i) * K;
            float s = 0.0f;
            for (int64_t h = 0; h < nh; h++) {
                int isum = 0;
                for (int j = 0; j < 16; j++) isum += wq[h * 16 + j] * xq[h * 16 + j];
                s += (x->dx[(m0 + i) * nb + h / 2] * w->d[(n0 + r) * nh + h]) * (float)isum;
            }
            out[i * WROWS + r] = s;
        }
}
#endif

static void finish(const sgl_qweight *w, const qrows *x, const float *sums, const uint16_t *bias, uint16_t *y,
                   int64_t N, int64_t K, int64_t n0, int64_t m0, int R, int MS) {
    const int q4 = w->kind == 0;
    const int64_t nm = q4 ? K / 32 : K / 16;
    for (int i = 0; i < MS; i++)
        for (int r = 0; r < R; r++) {
            const int64_t n = n0 + r, m = m0 + i;
            float s = sums[i * WROWS + r] + min_term(w->m ? w->m + n * nm : NULL, q4 ? x->xs32 + m * nm : x->xs16 + m * nm, nm);
            if (bias) s += bf16_to_f32(bias[n]);
            y[m * N + n] = f32_to_bf16(s);
        }
}

#define TILE(R, MS) do { if (q4) tile_q4(w, x, sums, K, n0, m, R, MS); else tile_q8(w, x, sums, K, n0, m, R, MS); \
                         finish(w, x, sums, bias, y, N, K, n0, m, R, MS); } while (0)

static void weight_block(const sgl_qweight *w, const qrows *x, const uint16_t *bias, uint16_t *y, int64_t M,
                         int64_t N, int64_t K, int64_t n0) {
    const int q4 = w->kind == 0;
    float sums[4 * WROWS];
    if (N - n0 < WROWS) {
        for (; n0 < N; n0++)
            for (int64_t m = 0; m < M; m++) TILE(1, 1);
        return;
    }
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) TILE(WROWS, 4);
    for (; m < M; m++) TILE(WROWS, 1);
}

/* x quantized (qrows) against w; every row count, the same sums per row */
void sgl_linear_q_rows(const int8_t *qx, const float *dx, const float *xs16, const float *xs32, const sgl_qweight *w,
                       const uint16_t *bias, uint16_t *y, int64_t M, int64_t N, int64_t K) {
    const qrows x = {qx, dx, xs16, xs32};
#pragma omp parallel for schedule(static) if (M * N * K >= 4 * SGL_PARALLEL_MIN) /* decode's too */
    for (int64_t n0 = 0; n0 < N; n0 += WROWS) weight_block(w, &x, bias, y, M, N, K, n0);
}

/* x (M, K) bf16: quantized here (scratch of its own), then the product. */
void sgl_linear_quant_bf16(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, uint16_t *y, int64_t M,
                           int64_t N, int64_t K) {
    char *buf = malloc((size_t)M * K + (size_t)M * (K / 32) * 2 * sizeof(float) + (size_t)M * (K / 16) * sizeof(float));
    if (!buf) abort();
    int8_t *qx = (int8_t *)buf;
    float *dx = (float *)(buf + M * K), *xs32 = dx + M * (K / 32), *xs16 = xs32 + M * (K / 32);
    sgl_quantize_rows_q8(x, M, K, qx, dx, xs16, xs32);
    sgl_linear_q_rows(qx, dx, xs16, xs32, w, bias, y, M, N, K);
    free(buf);
}

/* W back as bf16 (N, K) rows n0..n1 (for the float GEMM of a prefill). Plain loops per block,
 * so the compiler vectorizes them. */
void sgl_dequantize_bf16(const sgl_qweight *w, uint16_t *out, int64_t n0, int64_t n1, int64_t K) {
    const int q4 = w->kind == 0;
    const int64_t nd = q4 ? K / 32 : K / 16, full = K / 64;
#pragma omp parallel for schedule(static) if ((n1 - n0) * K >= SGL_PARALLEL_MIN)
    for (int64_t n = n0; n < n1; n++) {
        const float *d = w->d + n * nd, *m = w->m ? w->m + n * nd : NULL;
        uint16_t *o = out + (n - n0) * K;
        if (q4) {
            const uint8_t *qs = w->qs + n * (K / 2);
            for (int64_t g = 0; g < full; g++) { /* columns g*64 + j (low nibble), + 32 (high) */
                const float d0 = d[2 * g], d1 = d[2 * g + 1], m0 = m ? m[2 * g] : 0.0f, m1 = m ? m[2 * g + 1] : 0.0f;
                for (int j = 0; j < 32; j++) {
                    o[g * 64 + j] = f32_to_bf16(d0 * (float)(qs[g * 32 + j] & 15) + m0);
                    o[g * 64 + 32 + j] = f32_to_bf16(d1 * (float)(qs[g * 32 + j] >> 4) + m1);
                }
            }
            if (K % 64) { /* a last 32: column j low, j + 16 high */
                const int64_t b = nd - 1;
                const float db = d[b], mb = m ? m[b] : 0.0f;
                for (int j = 0; j < 16; j++) {
                    o[full * 64 + j] = f32_to_bf16(db * (float)(qs[full * 32 + j] & 15) + mb);
                    o[full * 64 + 16 + j] = f32_to_bf16(db * (float)(qs[full * 32 + j] >> 4) + mb);
                }
            }
        } else {
            const int8_t *qs = (const int8_t *)w->qs + n * K;
            for (int64_t h = 0; h < nd; h++) {
                const float dh = d[h], mh = m ? m[h] : 0.0f;
                for (int j = 0; j < 16; j++) o[h * 16 + j] = f32_to_bf16(dh * (float)qs[h * 16 + j] + mh);
            }
        }
    }
}

int sgl_quant_level(void) { return SGL_QUANT_LEVEL; } /* 2 VNNI, 1 AVX2, 0 portable */
