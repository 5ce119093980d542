/* Linear over quantized weights: y (M, N) bf16 = x (M, K) bf16 . W^T (+ bias), W in blocks.
 *
 * Weights (sgl_qweight, unpacked once at load from the GGUF types by sgl.kernels.quant) come in
 * groups of 16 rows, the rows of a group interleaved 4 bytes at a time, so that one 64-byte load
 * holds 4 columns of all 16 rows and one dot-product instruction (vpdpbusd: 4 bytes x 4 bytes
 * per 32-bit lane) advances 16 outputs at once against 4 broadcast bytes of x. The lanes are
 * the outputs, so no horizontal sum is left at the end, and the scales apply once per block
 * to 16 outputs in one multiply-add. (Per 64 weights that is ~4 instructions where a row-major
 * layout, one output per vector, needs ~12: on 2 Zen 4 cores the row-major kernel ran out of
 * instruction slots at 11-18 GB/s, below the memory's read speed.)
 *
 *   kind 0 "q4": 4-bit unsigned q in [0, 15], a scale d and a min m per 32 columns, w = d q + m
 *     (Q4_0, Q4_1, Q4_K). Per group and block of 32: 256 bytes, [v 4][row 16][t 4], byte =
 *     column 4v + t in its low nibble, column 16 + 4v + t in its high one.
 *   kind 1 "q8": q in [-128, 127] stored as q + 128 (unsigned), d and m per `block` (16 or 32)
 *     columns (Q8_0, Q5_0, Q5_1, Q5_K per 32; Q6_K per 16). Per group and 16 columns: 256
 *     bytes, [v 4][row 16][t 4] = column 4v + t.
 *   d, m: (groups, K / block, 16), float32, or float16 where that holds them exactly (`f16`: the
 *     types whose file stores them so, Q4_0, Q4_1, Q8_0, Q5_0, Q5_1: a Q4_1 weight then reads 5
 *     bits a weight, as in the file, instead of 6); m may be NULL (all zero). Rows past N are
 *     padding.
 * Activations are quantized per row to int8 blocks of 32 (as llama.cpp's q8_0): dx = amax / 127,
 * q = round(x / dx) by x * (1 / dx), ties to even. Then per output
 *   y = sum_b dx_b d_b isum_b + sum_b m_b (dx_b sum_b(qx))
 * with isum_b the integer dot product of block b, accumulated in float32 per output block by
 * block in order (on AVX-512 and AVX2 both terms of a block into one sum; plain C keeps the
 * mins' sum apart and adds it at the end). On AVX-512 VNNI the q8 bytes enter unsigned:
 * isum_b = isum(q + 128) - 128 sum_b(qx), the correction added as -128 d_b (dx_b sum_b(qx)).
 * AVX2 (maddubs + madd; q8 by the sign trick, or unsigned as u = q - q_min where the integers
 * span 32 values, see NARROW) and plain C compute isum_b directly.
 *
 * NOTE: each output's sums run in the same order whatever M is or where the row sits in the
 * call, so a row's result is independent of the other rows (decode = the same row alone).
 * K must be a multiple of 32. Threads: OpenMP over groups of 16 weight rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define GROUP 16       /* weight rows per group: the 16 lanes of a 512-bit vector of sums */
#define GROUP_BYTES 256 /* a group's bytes per 32 columns (q4) or per 16 columns (q8) */

static inline int32_t load4(const int8_t *p) { /* 4 bytes of x as one int32, for a broadcast */
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- activations: x (M, K) bf16 -> qx (M, K) int8, dx (M, K/32), xs16 (M, K/16) = dx * sum of
 * each 16's q, xs32 (M, K/32) = dx * sum of each 32's q --------------------------------------- */
static inline void quantize_block_scalar(const uint16_t *src, int8_t *q, float *d_out, float *s0_out, float *s1_out) {
    float v[32], amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        v[j] = bf16_to_f32(src[j]);
        const float a = fabsf(v[j]);
        amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int s0 = 0, s1 = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (int8_t)nearbyintf(v[j] * id);
        if (j < 16) s0 += q[j];
        else s1 += q[j];
    }
    *d_out = d, *s0_out = (float)s0, *s1_out = (float)s1;
}

#if defined(__AVX512BF16__)
/* the same rule 16 lanes at a time: cvtps rounds to nearest even, as nearbyintf does */
static inline void quantize_block(const uint16_t *src, int8_t *q, float *d_out, float *s0_out, float *s1_out) {
    const __m512 a = load_bf16(src), b = load_bf16(src + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(id)));
    const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, _mm512_set1_ps(id)));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(qb));
    *d_out = d, *s0_out = (float)_mm512_reduce_add_epi32(qa), *s1_out = (float)_mm512_reduce_add_epi32(qb);
}
#elif defined(SGL_AVX2)
/* the same rule 8 lanes at a time (cvtps rounds to nearest even); the int32 q packed to bytes
 * in order: packs work per 128-bit lane, so one dword permute puts the 4-byte runs back */
static inline int32_t hsum8_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}
static inline void quantize_block(const uint16_t *src, int8_t *q, float *d_out, float *s0_out, float *s1_out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], top = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = load8_bf16(src + 8 * k);
        top = _mm256_max_ps(top, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256i qi[4];
    for (int k = 0; k < 4; k++) qi[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    *d_out = d;
    *s0_out = (float)hsum8_epi32(_mm256_add_epi32(qi[0], qi[1]));
    *s1_out = (float)hsum8_epi32(_mm256_add_epi32(qi[2], qi[3]));
}
#else
#define quantize_block quantize_block_scalar
#endif

void sgl_quantize_rows_q8(const uint16_t *x, int64_t M, int64_t K, int8_t *qx, float *dx, float *xs16,
                          float *xs32) {
    const int64_t nb = K / 32;
#pragma omp parallel for schedule(static) if (M * K >= 4 * SGL_PARALLEL_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int64_t b = 0; b < nb; b++) {
            float d, s0, s1;
            quantize_block(x + i * K + b * 32, qx + i * K + b * 32, &d, &s0, &s1);
            dx[i * nb + b] = d;
            xs16[i * 2 * nb + 2 * b] = d * s0;
            xs16[i * 2 * nb + 2 * b + 1] = d * s1;
            xs32[i * nb + b] = d * (s0 + s1);
        }
}

typedef struct {
    const int8_t *qx;
    const float *dx, *xs16, *xs32;
} qrows;

/* The quantities of x row `row` for scale block b of a weight with `block` columns per scale:
 * dx of the 32-column block it lies in, and dx * (sum of its q). */
static inline float x_scale(const qrows *x, int64_t K, int64_t row, int64_t b, int64_t block) {
    return x->dx[row * (K / 32) + (block == 32 ? b : b / 2)];
}
static inline float x_sum(const qrows *x, int64_t K, int64_t row, int64_t b, int64_t block) {
    return block == 32 ? x->xs32[row * (K / 32) + b] : x->xs16[row * (K / 16) + b];
}

static inline int64_t block_of(const sgl_qweight *w) { return w->kind == 0 ? 32 : w->block; }

/* the scales (or mins) from entry i on: float16 or float32 (NULL stays NULL) */
static inline const char *scales_at(const void *base, const sgl_qweight *w, int64_t i) {
    return base ? (const char *)base + i * (w->f16 ? 2 : 4) : NULL;
}

static inline float half_to_float(uint16_t h) { /* IEEE binary16 -> float32, exactly */
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) u = sign | 0x7f800000 | (mant << 13);          /* inf, NaN */
    else if (exp != 0) u = sign | ((exp + 112) << 23) | (mant << 13); /* normal: rebias 15 -> 127 */
    else if (mant == 0) u = sign;                                     /* zero */
    else {                                                            /* subnormal: mant * 2^-24 */
        float f = (float)mant * 5.9604644775390625e-8f;
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float scale_value(const char *p, int64_t i, int f16) {
    if (f16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return half_to_float(h);
    }
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

/* ---- one group of 16 weight rows against MS x rows (from m0): out[i][l] = row m0 + i's sum
 * for weight row 16 g + l (before bias), per level ---------------------------------------------- */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define SGL_QUANT_LEVEL 2
#define MS_MAX 8 /* x rows a pass: 8 integer and 8 float sums in registers (~10% over 4 at M = 16) */
static inline __m512 load_scales16(const char *p, int64_t i, int f16) {
    return f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i))) : _mm512_loadu_ps((const float *)p + i);
}
static inline __attribute__((always_inline)) void group_sums(const sgl_qweight *w, const qrows *x, int64_t K,
        int64_t g, int64_t m0, const int MS, float out[][GROUP]) {
    const int q4 = w->kind == 0;
    const int64_t block = block_of(w), nbk = K / block;
    const uint8_t *qs = w->qs + g * (q4 ? 8 : 16) * K;
    const char *d = scales_at(w->d, w, g * nbk * GROUP), *m = scales_at(w->m, w, g * nbk * GROUP);
    __m512 facc[MS];
    for (int i = 0; i < MS; i++) facc[i] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nbk; b++) {
        __m512i iacc[MS];
        for (int i = 0; i < MS; i++) iacc[i] = _mm512_setzero_si512();
        if (q4) {
            for (int v = 0; v < 4; v++) {
                const __m512i raw = _mm512_loadu_si512(qs + b * GROUP_BYTES + v * 64);
                const __m512i lo = _mm512_and_si512(raw, low), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
                for (int i = 0; i < MS; i++) {
                    const int8_t *xq = x->qx + (m0 + i) * K + b * 32 + 4 * v;
                    iacc[i] = _mm512_dpbusd_epi32(iacc[i], lo, _mm512_set1_epi32(load4(xq)));
                    iacc[i] = _mm512_dpbusd_epi32(iacc[i], hi, _mm512_set1_epi32(load4(xq + 16)));
                }
            }
        } else {
            for (int64_t h = b * (block / 16); h < (b + 1) * (block / 16); h++)
                for (int v = 0; v < 4; v++) {
                    const __m512i raw = _mm512_loadu_si512(qs + h * GROUP_BYTES + v * 64);
                    for (int i = 0; i < MS; i++)
                        iacc[i] = _mm512_dpbusd_epi32(iacc[i], raw,
                                                      _mm512_set1_epi32(load4(x->qx + (m0 + i) * K + h * 16 + 4 * v)));
                }
        }
        const __m512 dv = load_scales16(d, b * GROUP, w->f16);
        const __m512 mv = m ? load_scales16(m, b * GROUP, w->f16) : _mm512_setzero_ps();
        for (int i = 0; i < MS; i++) {
            const __m512 scale = _mm512_mul_ps(dv, _mm512_set1_ps(x_scale(x, K, m0 + i, b, block)));
            facc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i]), scale, facc[i]);
            const float xs = x_sum(x, K, m0 + i, b, block);
            if (!q4) facc[i] = _mm512_fnmadd_ps(dv, _mm512_set1_ps(128.0f * xs), facc[i]); /* the +128 */
            if (m) facc[i] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xs), facc[i]);
        }
    }
    for (int i = 0; i < MS; i++) _mm512_storeu_ps(out[i], facc[i]);
}

/* Two groups (g, g + 1: 32 weight rows) a pass, for calls of PAIR_MIN_ROWS x rows or more: each
 * broadcast of x feeds two dot products. Measured against one group a pass (2 Zen 4 cores): the
 * 262144 x 640 head at 16 rows -10%, 3072 x 576 at 256 rows -5%; at 1 row +10-30% (two weight
 * streams), so decode keeps single groups. A group's sums are the same either way (the same
 * operations in the same order): out[i][0..15] for group g, [16..31] for group g + 1. */
#define PAIRS 1
#define PAIR_MS 4
#define PAIR_MIN_ROWS 8
static inline __attribute__((always_inline)) void pair_sums(const sgl_qweight *w, const qrows *x, int64_t K,
        int64_t g, int64_t m0, const int MS, float out[][2 * GROUP]) {
    const int q4 = w->kind == 0;
    const int64_t block = block_of(w), nbk = K / block, group_bytes = (q4 ? 8 : 16) * K;
    const uint8_t *qs0 = w->qs + g * group_bytes, *qs1 = qs0 + group_bytes;
    const char *d0 = scales_at(w->d, w, g * nbk * GROUP), *d1 = scales_at(w->d, w, (g + 1) * nbk * GROUP);
    const char *m0p = scales_at(w->m, w, g * nbk * GROUP), *m1p = scales_at(w->m, w, (g + 1) * nbk * GROUP);
    __m512 facc[MS][2];
    for (int i = 0; i < MS; i++) facc[i][0] = facc[i][1] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nbk; b++) {
        __m512i iacc[MS][2];
        for (int i = 0; i < MS; i++) iacc[i][0] = iacc[i][1] = _mm512_setzero_si512();
        if (q4) {
            for (int v = 0; v < 4; v++) {
                const __m512i r0 = _mm512_loadu_si512(qs0 + b * GROUP_BYTES + v * 64);
                const __m512i r1 = _mm512_loadu_si512(qs1 + b * GROUP_BYTES + v * 64);
                const __m512i lo0 = _mm512_and_si512(r0, low), hi0 = _mm512_and_si512(_mm512_srli_epi16(r0, 4), low);
                const __m512i lo1 = _mm512_and_si512(r1, low), hi1 = _mm512_and_si512(_mm512_srli_epi16(r1, 4), low);
                for (int i = 0; i < MS; i++) {
                    const int8_t *xq = x->qx + (m0 + i) * K + b * 32 + 4 * v;
                    const __m512i xl = _mm512_set1_epi32(load4(xq)), xh = _mm512_set1_epi32(load4(xq + 16));
                    iacc[i][0] = _mm512_dpbusd_epi32(iacc[i][0], lo0, xl);
                    iacc[i][1] = _mm512_dpbusd_epi32(iacc[i][1], lo1, xl);
                    iacc[i][0] = _mm512_dpbusd_epi32(iacc[i][0], hi0, xh);
                    iacc[i][1] = _mm512_dpbusd_epi32(iacc[i][1], hi1, xh);
                }
            }
        } else {
            for (int64_t h = b * (block / 16); h < (b + 1) * (block / 16); h++)
                for (int v = 0; v < 4; v++) {
                    const __m512i r0 = _mm512_loadu_si512(qs0 + h * GROUP_BYTES + v * 64);
                    const __m512i r1 = _mm512_loadu_si512(qs1 + h * GROUP_BYTES + v * 64);
                    for (int i = 0; i < MS; i++) {
                        const __m512i xv = _mm512_set1_epi32(load4(x->qx + (m0 + i) * K + h * 16 + 4 * v));
                        iacc[i][0] = _mm512_dpbusd_epi32(iacc[i][0], r0, xv);
                        iacc[i][1] = _mm512_dpbusd_epi32(iacc[i][1], r1, xv);
                    }
                }
        }
        const __m512 dv[2] = {load_scales16(d0, b * GROUP, w->f16), load_scales16(d1, b * GROUP, w->f16)};
        const __m512 mv[2] = {m0p ? load_scales16(m0p, b * GROUP, w->f16) : _mm512_setzero_ps(),
                              m1p ? load_scales16(m1p, b * GROUP, w->f16) : _mm512_setzero_ps()};
        for (int i = 0; i < MS; i++) {
            const __m512 dx = _mm512_set1_ps(x_scale(x, K, m0 + i, b, block));
            const float xs = x_sum(x, K, m0 + i, b, block);
            for (int j = 0; j < 2; j++) { /* the same operations, in the same order, as group_sums */
                facc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i][j]), _mm512_mul_ps(dv[j], dx), facc[i][j]);
                if (!q4) facc[i][j] = _mm512_fnmadd_ps(dv[j], _mm512_set1_ps(128.0f * xs), facc[i][j]);
                if (m0p) facc[i][j] = _mm512_fmadd_ps(mv[j], _mm512_set1_ps(xs), facc[i][j]);
            }
        }
    }
    for (int i = 0; i < MS; i++) {
        _mm512_storeu_ps(out[i], facc[i][0]);
        _mm512_storeu_ps(out[i] + GROUP, facc[i][1]);
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SGL_QUANT_LEVEL 1
/* 4 x rows a pass, each x broadcast feeding both halves of the group (8 + 8 rows). Measured on
 * Zen 4, side by side, against one half a pass (the loops unrolled): q4 -40% at 16-512 rows and
 * -35% at 1, q8 -20% at 16 (3 rows a pass: +4%; 5: +12%, the 16 ymm registers spill). */
#define MS_MAX 4
/* weight bytes read ahead by software prefetch: the hardware's alone left 1-row calls at ~36 GB/s
 * on Zen 4 at this level (measured side by side, weights streamed from memory: 262144 x 640 q8
 * -19%, 4096 x 640 q4 -29% at 1 row, -10% at 16; 8192 the same; on AVX-512 it cost 10-30%) */
#define AHEAD 4096
/* an empty asm naming two sums as register operands after each row's update: gcc then keeps the
 * loop's sums in registers (it spilled some to the stack, and the loop waited on their store-to-
 * load chain: perf showed a quarter of the 5-bit loop's samples there). Side by side, one thread,
 * same bits: 5-bit weights -8%, Q6_K -5%, q4 and Q8_0 -2%. */
#define IN_REGISTERS(a, b) __asm__("" : "+x"(a), "+x"(b))
static inline __m256 load_scales8(const char *p, int64_t i, int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))) : _mm256_loadu_ps((const float *)p + i);
}
/* q8 weights whose integers span 32 values or fewer (Q5_0, Q5_1, Q5_K: 5 bits) are "narrow": u = q -
 * q_min in [0, 31] enters maddubs unsigned as it is (no sign trick), and 4 steps of pair sums fit
 * 16 bits (4 x 2 x 31 x 127 < 2^15), so they widen once every 16 columns; sum q x = sum u x + q_min
 * sum x, the second term added with the block's min term. Every row of such a weight goes this
 * way (a row's result stays independent of the other rows). Measured side by side on Zen 4
 * against the sign trick: 2048 x 640 at 16 rows -17%, at 1 row -10%. */
#define NARROW(w) ((w)->kind == 1 && (w)->q_max - (w)->q_min < 32)
/* sums into out directly (float32, block by block in order: the block's product, then its min term) */
static inline __attribute__((always_inline)) void group_sums(const sgl_qweight *w, const qrows *x, int64_t K,
        int64_t g, int64_t m0, const int MS, float out[][GROUP]) {
    const int q4 = w->kind == 0, narrow = NARROW(w);
    const int64_t block = block_of(w), nbk = K / block;
    const uint8_t *qs = w->qs + g * (q4 ? 8 : 16) * K;
    const char *d = scales_at(w->d, w, g * nbk * GROUP), *m = scales_at(w->m, w, g * nbk * GROUP);
    const __m256i low = _mm256_set1_epi8(0x0f), bias = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    for (int i = 0; i < MS; i++) {
        _mm256_storeu_ps(out[i], _mm256_setzero_ps());
        _mm256_storeu_ps(out[i] + 8, _mm256_setzero_ps());
    }
    for (int64_t b = 0; b < nbk; b++) {
        __m256i s0[MS_MAX], s1[MS_MAX];
        for (int i = 0; i < MS; i++) s0[i] = s1[i] = _mm256_setzero_si256();
        if (q4) {
#pragma GCC unroll 1 /* unrolled, gcc hoists the block's loads and spills the sums */
            for (int v = 0; v < 4; v++) {
                const __m256i *p = (const __m256i *)(qs + b * GROUP_BYTES + v * 64);
                _mm_prefetch((const char *)p + AHEAD, _MM_HINT_T0);
                const __m256i r0 = _mm256_loadu_si256(p), r1 = _mm256_loadu_si256(p + 1);
                const __m256i lo0 = _mm256_and_si256(r0, low), hi0 = _mm256_and_si256(_mm256_srli_epi16(r0, 4), low);
                const __m256i lo1 = _mm256_and_si256(r1, low), hi1 = _mm256_and_si256(_mm256_srli_epi16(r1, 4), low);
                for (int i = 0; i < MS; i++) {
                    const int8_t *xq = x->qx + (m0 + i) * K + b * 32 + 4 * v;
                    const __m256i xl = _mm256_set1_epi32(load4(xq)), xh = _mm256_set1_epi32(load4(xq + 16));
                    /* int16 pair sums: |sum| <= 8 * 2 * 15 * 127 < 2^15 over a block */
                    s0[i] = _mm256_add_epi16(s0[i], _mm256_add_epi16(_mm256_maddubs_epi16(lo0, xl),
                                                                     _mm256_maddubs_epi16(hi0, xh)));
                    s1[i] = _mm256_add_epi16(s1[i], _mm256_add_epi16(_mm256_maddubs_epi16(lo1, xl),
                                                                     _mm256_maddubs_epi16(hi1, xh)));
                    IN_REGISTERS(s0[i], s1[i]);
                }
            }
            for (int i = 0; i < MS; i++) {
                s0[i] = _mm256_madd_epi16(s0[i], ones);
                s1[i] = _mm256_madd_epi16(s1[i], ones);
            }
        } else if (narrow) { /* unsigned u = byte - (128 + q_min): 16-bit sums over each 16 columns */
            const __m256i off = _mm256_set1_epi8((char)(128 + w->q_min));
            for (int64_t h = b * (block / 16); h < (b + 1) * (block / 16); h++) {
                __m256i t0[MS_MAX], t1[MS_MAX];
                for (int i = 0; i < MS; i++) t0[i] = t1[i] = _mm256_setzero_si256();
#pragma GCC unroll 1
                for (int v = 0; v < 4; v++) {
                    const __m256i *p = (const __m256i *)(qs + h * GROUP_BYTES + v * 64);
                    _mm_prefetch((const char *)p + AHEAD, _MM_HINT_T0);
                    const __m256i u0 = _mm256_sub_epi8(_mm256_loadu_si256(p), off);
                    const __m256i u1 = _mm256_sub_epi8(_mm256_loadu_si256(p + 1), off);
                    for (int i = 0; i < MS; i++) {
                        const __m256i xv = _mm256_set1_epi32(load4(x->qx + (m0 + i) * K + h * 16 + 4 * v));
                        t0[i] = _mm256_add_epi16(t0[i], _mm256_maddubs_epi16(u0, xv));
                        t1[i] = _mm256_add_epi16(t1[i], _mm256_maddubs_epi16(u1, xv));
                    }
                    /* pinned after the rows, not after each (there gcc copied each sum to another
                     * register to meet the asm: -5% at 16 and 256 rows; the other loops unchanged) */
                    for (int i = 0; i < MS; i++) IN_REGISTERS(t0[i], t1[i]);
                }
                for (int i = 0; i < MS; i++) {
                    s0[i] = _mm256_add_epi32(s0[i], _mm256_madd_epi16(t0[i], ones));
                    s1[i] = _mm256_add_epi32(s1[i], _mm256_madd_epi16(t1[i], ones));
                }
            }
        } else { /* signed q = byte ^ 0x80; |q| . (x with q's sign): |q| <= 128, pairs <= 32512 */
            for (int64_t h = b * (block / 16); h < (b + 1) * (block / 16); h++)
#pragma GCC unroll 1
                for (int v = 0; v < 4; v++) {
                    const __m256i *p = (const __m256i *)(qs + h * GROUP_BYTES + v * 64);
                    _mm_prefetch((const char *)p + AHEAD, _MM_HINT_T0);
                    const __m256i q0 = _mm256_xor_si256(_mm256_loadu_si256(p), bias);
                    const __m256i q1 = _mm256_xor_si256(_mm256_loadu_si256(p + 1), bias);
                    const __m256i a0 = _mm256_sign_epi8(q0, q0), a1 = _mm256_sign_epi8(q1, q1);
                    for (int i = 0; i < MS; i++) {
                        const __m256i xv = _mm256_set1_epi32(load4(x->qx + (m0 + i) * K + h * 16 + 4 * v));
                        const __m256i p0 = _mm256_maddubs_epi16(a0, _mm256_sign_epi8(xv, q0));
                        const __m256i p1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(xv, q1));
                        s0[i] = _mm256_add_epi32(s0[i], _mm256_madd_epi16(p0, ones));
                        s1[i] = _mm256_add_epi32(s1[i], _mm256_madd_epi16(p1, ones));
                        IN_REGISTERS(s0[i], s1[i]);
                    }
                }
        }
        const __m256 d0 = load_scales8(d, b * GROUP, w->f16), d1 = load_scales8(d, b * GROUP + 8, w->f16);
        /* the block's min term per output: m, plus q_min d for a narrow weight's unsigned sums */
        __m256 c0 = m ? load_scales8(m, b * GROUP, w->f16) : _mm256_setzero_ps();
        __m256 c1 = m ? load_scales8(m, b * GROUP + 8, w->f16) : _mm256_setzero_ps();
        if (narrow) {
            c0 = _mm256_fmadd_ps(_mm256_set1_ps((float)w->q_min), d0, c0);
            c1 = _mm256_fmadd_ps(_mm256_set1_ps((float)w->q_min), d1, c1);
        }
        for (int i = 0; i < MS; i++) {
            const __m256 dx = _mm256_set1_ps(x_scale(x, K, m0 + i, b, block));
            __m256 f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0[i]), _mm256_mul_ps(d0, dx), _mm256_loadu_ps(out[i]));
            __m256 f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[i]), _mm256_mul_ps(d1, dx), _mm256_loadu_ps(out[i] + 8));
            if (m || narrow) {
                const __m256 xs = _mm256_set1_ps(x_sum(x, K, m0 + i, b, block));
                f0 = _mm256_fmadd_ps(c0, xs, f0);
                f1 = _mm256_fmadd_ps(c1, xs, f1);
            }
            _mm256_storeu_ps(out[i], f0);
            _mm256_storeu_ps(out[i] + 8, f1);
        }
    }
}

#else
#define SGL_QUANT_LEVEL 0
#define MS_MAX 1
/* portable C: per block an integer sum, then the two float sums in order */
static void group_sums(const sgl_qweight *w, const qrows *x, int64_t K, int64_t g, int64_t m0, const int MS,
                       float out[][GROUP]) {
    const int q4 = w->kind == 0;
    const int64_t block = block_of(w), nbk = K / block;
    const uint8_t *qs = w->qs + g * (q4 ? 8 : 16) * K;
    const char *d = scales_at(w->d, w, g * nbk * GROUP), *m = scales_at(w->m, w, g * nbk * GROUP);
    for (int i = 0; i < MS; i++)
        for (int l = 0; l < GROUP; l++) {
            const int8_t *xq = x->qx + (m0 + i) * K;
            float f = 0.0f, s = 0.0f;
            for (int64_t b = 0; b < nbk; b++) {
                int isum = 0;
                for (int64_t c = b * block; c < (b + 1) * block; c++) {
                    int q;
                    if (q4) { /* column c: block c / 32, within it v = (c % 16) / 4, high nibble past 16 */
                        const int64_t cb = c % 32;
                        const uint8_t byte = qs[(c / 32) * GROUP_BYTES + ((cb % 16) / 4) * 64 + l * 4 + cb % 4];
                        q = cb < 16 ? byte & 15 : byte >> 4;
                    } else {
                        q = (int)qs[(c / 16) * GROUP_BYTES + ((c % 16) / 4) * 64 + l * 4 + c % 4] - 128;
                    }
                    isum += q * xq[c];
                }
                f += (x_scale(x, K, m0 + i, b, block) * scale_value(d, b * GROUP + l, w->f16)) * (float)isum;
                if (m) s += scale_value(m, b * GROUP + l, w->f16) * x_sum(x, K, m0 + i, b, block);
            }
            out[i][l] = f + s;
        }
}
#endif

/* where the products go: bf16 (rounded once), or float32 as summed (an LM head's logits) */
typedef struct {
    void *p;
    int f32;
} qout;

/* bias and rounding of a group's sums into y (its rows that exist: N may end mid-group) */
static void finish(const float sums[][GROUP], const uint16_t *bias, qout y, int64_t N, int64_t g, int64_t m0,
                   int MS) {
    const int64_t n0 = g * GROUP, rows = N - n0 < GROUP ? N - n0 : GROUP;
    for (int i = 0; i < MS; i++)
        for (int64_t l = 0; l < rows; l++) {
            float s = sums[i][l];
            if (bias) s += bf16_to_f32(bias[n0 + l]);
            if (y.f32) ((float *)y.p)[(m0 + i) * N + n0 + l] = s;
            else ((uint16_t *)y.p)[(m0 + i) * N + n0 + l] = f32_to_bf16(s);
        }
}

#ifdef PAIRS
static void finish_pair(const float sums[][2 * GROUP], const uint16_t *bias, qout y, int64_t N, int64_t g,
                        int64_t m0, int MS) {
    for (int i = 0; i < MS; i++) {
        finish((const float (*)[GROUP])sums[i], bias, y, N, g, m0 + i, 1);
        finish((const float (*)[GROUP])(sums[i] + GROUP), bias, y, N, g + 1, m0 + i, 1);
    }
}
#endif

/* x quantized (qrows) against w; every row count, the same sums per row */
static void q_rows(const qrows x, const sgl_qweight *w, const uint16_t *bias, qout y, int64_t M, int64_t N, int64_t K) {
    const int64_t groups = (N + GROUP - 1) / GROUP;
#ifdef PAIRS
    const int64_t pairs = M >= PAIR_MIN_ROWS ? groups / 2 : 0; /* whole pairs; an odd last group goes alone below */
#pragma omp parallel for schedule(static) if (M * N * K >= 4 * SGL_PARALLEL_MIN)
    for (int64_t p = 0; p < pairs; p++) {
        float sums[PAIR_MS][2 * GROUP];
        int64_t m = 0;
        for (; m + PAIR_MS <= M; m += PAIR_MS) {
            pair_sums(w, &x, K, 2 * p, m, PAIR_MS, sums);
            finish_pair(sums, bias, y, N, 2 * p, m, PAIR_MS);
        }
        for (; m < M; m++) {
            pair_sums(w, &x, K, 2 * p, m, 1, sums);
            finish_pair(sums, bias, y, N, 2 * p, m, 1);
        }
    }
    const int64_t first = 2 * pairs;
#else
    const int64_t first = 0;
#endif
#pragma omp parallel for schedule(static) if (M * (N - first * GROUP) * K >= 4 * SGL_PARALLEL_MIN) /* decode's too */
    for (int64_t g = first; g < groups; g++) {
        float sums[MS_MAX][GROUP];
        int64_t m = 0;
        if (w->kind == 0) /* q4 in a copy of the loop of its own (the kind known): -15% on AVX2 */
            for (; m + MS_MAX <= M; m += MS_MAX) {
                group_sums(w, &x, K, g, m, MS_MAX, sums);
                finish(sums, bias, y, N, g, m, MS_MAX);
            }
#ifdef NARROW
        if (NARROW(w)) { /* narrow weights in a copy of their own too (every row: -10% at 256 rows) */
            for (; m + MS_MAX <= M; m += MS_MAX) {
                group_sums(w, &x, K, g, m, MS_MAX, sums);
                finish(sums, bias, y, N, g, m, MS_MAX);
            }
            for (; m < M; m++) {
                group_sums(w, &x, K, g, m, 1, sums);
                finish(sums, bias, y, N, g, m, 1);
            }
            continue;
        }
#endif
        for (; m + MS_MAX <= M; m += MS_MAX) {
            group_sums(w, &x, K, g, m, MS_MAX, sums);
            finish(sums, bias, y, N, g, m, MS_MAX);
        }
        for (; m < M; m++) {
            group_sums(w, &x, K, g, m, 1, sums);
            finish(sums, bias, y, N, g, m, 1);
        }
    }
}

/* x (M, K) bf16: quantized here (scratch of its own), then the product into y */
static void quant_product(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, qout y, int64_t M, int64_t N,
                          int64_t K) {
    char *buf = malloc((size_t)M * K + (size_t)M * (K / 32) * 2 * sizeof(float) + (size_t)M * (K / 16) * sizeof(float));
    if (!buf) abort();
    int8_t *qx = (int8_t *)buf;
    float *dx = (float *)(buf + M * K), *xs32 = dx + M * (K / 32), *xs16 = xs32 + M * (K / 32);
    sgl_quantize_rows_q8(x, M, K, qx, dx, xs16, xs32);
    q_rows((qrows){qx, dx, xs16, xs32}, w, bias, y, M, N, K);
    free(buf);
}

void sgl_linear_quant_bf16(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, uint16_t *y, int64_t M,
                           int64_t N, int64_t K) {
    quant_product(x, w, bias, (qout){y, 0}, M, N, K);
}

/* y (M, N) float32: the sums unrounded (an LM head's logits, which the sampler reads as float32) */
void sgl_linear_quant_f32(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, float *y, int64_t M,
                          int64_t N, int64_t K) {
    quant_product(x, w, bias, (qout){y, 1}, M, N, K);
}

/* W back as bf16 (N, K) rows n0..n1 (for the float GEMM of a prefill): d q + m in float32,
 * rounded once. A row's 16 columns are 4 runs of 4 bytes 64 apart: gathered into `run`, then
 * plain loops over it, which the compiler vectorizes. */
void sgl_dequantize_bf16(const sgl_qweight *w, uint16_t *out, int64_t n0, int64_t n1, int64_t K) {
    const int q4 = w->kind == 0;
    const int64_t block = block_of(w), nbk = K / block, step = q4 ? 32 : 16;
#pragma omp parallel for schedule(static) if ((n1 - n0) * K >= SGL_PARALLEL_MIN)
    for (int64_t n = n0; n < n1; n++) {
        const int64_t g = n / GROUP, l = n % GROUP;
        const uint8_t *qs = w->qs + g * (q4 ? 8 : 16) * K + l * 4;
        const char *d = scales_at(w->d, w, g * nbk * GROUP + l), *m = scales_at(w->m, w, g * nbk * GROUP + l);
        uint16_t *o = out + (n - n0) * K;
        for (int64_t c0 = 0; c0 < K; c0 += step) { /* q4: 32 columns, q8: 16, one scale each */
            const uint8_t *src = qs + (c0 / step) * GROUP_BYTES;
            uint8_t run[16];
            for (int v = 0; v < 4; v++) memcpy(run + 4 * v, src + 64 * v, 4);
            const float db = scale_value(d, (c0 / block) * GROUP, w->f16);
            const float mb = m ? scale_value(m, (c0 / block) * GROUP, w->f16) : 0.0f;
#if defined(__AVX512BF16__)
            const __m128i bytes = _mm_loadu_si128((const __m128i *)run);
            const __m512 dd = _mm512_set1_ps(db), mm = _mm512_set1_ps(mb);
            const __m128i first = q4 ? _mm_and_si128(bytes, _mm_set1_epi8(15)) : _mm_xor_si128(bytes, _mm_set1_epi8((char)0x80));
            const __m512i i0 = q4 ? _mm512_cvtepu8_epi32(first) : _mm512_cvtepi8_epi32(first);
            _mm256_storeu_si256((__m256i *)(o + c0),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(_mm512_mul_ps(dd, _mm512_cvtepi32_ps(i0)), mm)));
            if (q4) {
                const __m512i i1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15)));
                _mm256_storeu_si256((__m256i *)(o + c0 + 16),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(_mm512_mul_ps(dd, _mm512_cvtepi32_ps(i1)), mm)));
            }
            continue;
#endif
            if (q4) {
                for (int j = 0; j < 16; j++) o[c0 + j] = f32_to_bf16(db * (float)(run[j] & 15) + mb);
                for (int j = 0; j < 16; j++) o[c0 + 16 + j] = f32_to_bf16(db * (float)(run[j] >> 4) + mb);
            } else {
                for (int j = 0; j < 16; j++) o[c0 + j] = f32_to_bf16(db * (float)((int)run[j] - 128) + mb);
            }
        }
    }
}

int sgl_quant_level(void) { return SGL_QUANT_LEVEL; } /* 2 VNNI, 1 AVX2, 0 portable */
