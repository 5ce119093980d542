/* Attention of single query rows over the paged KV pool, bf16 in and out, float32 inside.
 *
 * Query row i attends to the first kv_len[i] tokens of table row q_req[i] (minus any beyond a
 * sliding window): decode has one query row per request; an extend after a cached prefix
 * (jump-forward, a short chunk) is given one query row per new token, each with its own
 * length. Every query row is computed the same way whatever else is in the call, so a token
 * computed in an extend gets exactly the values it gets in a decode step.
 *
 * The keys are read in place through the slot table: no gather copy, no padding, no mask.
 * Per (query row, kv head) the group of query heads that share it is done together. */
#include <math.h>
#include <stdlib.h>
#include "bf16.h"
#include "simd.h"

#define MAX_GROUP 8 /* query heads per kv head the vector path takes */

static float dot_bf16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += bf16_to_f32(a[i]) * bf16_to_f32(b[i]);
    return sum;
}

#ifdef __AVX512BF16__
/* The vector path for one (query row, kv head), D % 32 == 0, group <= MAX_GROUP: bf16 dot
 * products for the scores (KB keys x G heads at a time, each key's D values read once for the
 * group), the softmax 16 scores at a time, the values 16 dims x DC chunks x G heads at a time.
 * Several independent sums at once, where one chain a score (or a 32-dim chunk) waited on each
 * instruction's latency; each score and output element is still one sum in a fixed order
 * (over d, then a fixed reduction; over keys in order), so a decode row and the same query in
 * an extend agree to the bit. Measured side by side on Zen 4, one layer's decode at 16 rows over
 * 288 keys: SmolLM2's heads 115 -> 89 us, Gemma 3's 125 -> 93 us. */
typedef uint16_t query_t; /* the group's queries as the dot products take them: bf16 pairs */
#define VALUE_LANES 16
/* keys (and value chunks) a pass for G heads: G x B sums and B vectors within the 32 registers */
#define BLOCKS(G) ((G) <= 2 ? 8 : (G) == 3 ? 6 : (G) == 4 ? 4 : 2)
static inline __attribute__((always_inline)) void score_keys(const query_t *q, const uint16_t *k_pool,
        const int64_t *slots, int64_t j0, const int G, const int KB, int64_t Hk, int64_t hk, int64_t D, float scale,
        float *scores, int64_t max_len) {
    const uint16_t *kr[8];
    __m512 acc[32];
    for (int k = 0; k < KB; k++) kr[k] = k_pool + (slots[j0 + k] * Hk + hk) * D;
    for (int a = 0; a < G * KB; a++) acc[a] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d += 32) {
        __m512i kv[8];
        for (int k = 0; k < KB; k++) kv[k] = _mm512_loadu_si512(kr[k] + d);
        for (int g = 0; g < G; g++) {
            const __m512bh qv = (__m512bh)_mm512_loadu_si512(q + g * D + d);
            for (int k = 0; k < KB; k++) acc[g * KB + k] = _mm512_dpbf16_ps(acc[g * KB + k], qv, (__m512bh)kv[k]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int k = 0; k < KB; k++) scores[g * max_len + j0 + k] = _mm512_reduce_add_ps(acc[g * KB + k]) * scale;
}

/* out[g][d0 : d0 + 16 DC] = inv[g] * sum_j p[g][j] v_j[d0 : d0 + 16 DC] */
static inline __attribute__((always_inline)) void value_chunks(const float *p, const uint16_t *v_pool,
        const int64_t *slots, int64_t first, int64_t len, const int G, const int DC, int64_t Hk, int64_t hk,
        int64_t Dv, int64_t d0, const float *inv, int64_t max_len, uint16_t *out) {
    __m512 acc[32];
    for (int a = 0; a < G * DC; a++) acc[a] = _mm512_setzero_ps();
    for (int64_t j = first; j < len; j++) {
        const uint16_t *vj = v_pool + (slots[j] * Hk + hk) * Dv + d0;
        __m512 pj[MAX_GROUP];
        for (int g = 0; g < G; g++) pj[g] = _mm512_set1_ps(p[g * max_len + j]);
        for (int c = 0; c < DC; c++) {
            const __m512 v = load_bf16(vj + 16 * c);
            for (int g = 0; g < G; g++) acc[g * DC + c] = _mm512_fmadd_ps(pj[g], v, acc[g * DC + c]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int c = 0; c < DC; c++)
            _mm256_storeu_si256((__m256i *)(out + g * Dv + d0 + 16 * c),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[g * DC + c], _mm512_set1_ps(inv[g]))));
}

#elif defined(SGL_AVX2)
/* The AVX2 path for one (query row, kv head), D % 8 == 0, group <= MAX_GROUP, float32 FMAs on 8
 * lanes. A single chain of FMAs per score (or per 8 output dims) waits on each FMA's latency
 * (4 cycles: ~8x below the FMA units' rate), so both products run several independent sums:
 * scores KB keys x G heads at a time, the values DC 8-dim chunks x G heads at a time (G x KB
 * and G x DC ~8). Each score and each output element is still one sum in a fixed order (over
 * d, then a fixed horizontal sum; over keys in order), whatever the blocking or the row's
 * neighbours: a decode row and the same query in an extend agree to the bit.
 * Measured side by side on Zen 4 (AVX2 level), one layer's decode at 16 rows over 288 keys
 * each, against one chain a score: SmolLM2's heads (3 of 64 a kv head) 470 -> 178 us, Gemma 3's
 * (4 of 256) 649 -> 188 us; the same sums in the same order, so the same bits. */
typedef float query_t; /* the group's queries converted once to float32 */
#define VALUE_LANES 8
/* keys (and value chunks) a pass for G heads: G x B sums and B vectors within the 16 registers */
#define BLOCKS(G) ((G) == 1 ? 8 : (G) == 2 ? 4 : (G) == 3 ? 3 : (G) == 4 ? 2 : 1)
static inline __attribute__((always_inline)) void score_keys(const query_t *qf, const uint16_t *k_pool,
        const int64_t *slots, int64_t j0, const int G, const int KB, int64_t Hk, int64_t hk, int64_t D, float scale,
        float *scores, int64_t max_len) {
    const uint16_t *kr[8];
    __m256 acc[16];
    for (int k = 0; k < KB; k++) kr[k] = k_pool + (slots[j0 + k] * Hk + hk) * D;
    for (int a = 0; a < G * KB; a++) acc[a] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d += 8) {
        __m256 kv[8];
        for (int k = 0; k < KB; k++) kv[k] = load8_bf16(kr[k] + d);
        for (int g = 0; g < G; g++) {
            const __m256 qv = _mm256_loadu_ps(qf + g * D + d);
            for (int k = 0; k < KB; k++) acc[g * KB + k] = _mm256_fmadd_ps(qv, kv[k], acc[g * KB + k]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int k = 0; k < KB; k++) scores[g * max_len + j0 + k] = hsum8_ps(acc[g * KB + k]) * scale;
}

/* out[g][d0 : d0 + 8 DC] = inv[g] * sum_j p[g][j] v_j[d0 : d0 + 8 DC] */
static inline __attribute__((always_inline)) void value_chunks(const float *p, const uint16_t *v_pool,
        const int64_t *slots, int64_t first, int64_t len, const int G, const int DC, int64_t Hk, int64_t hk,
        int64_t Dv, int64_t d0, const float *inv, int64_t max_len, uint16_t *out) {
    __m256 acc[16];
    for (int a = 0; a < G * DC; a++) acc[a] = _mm256_setzero_ps();
    for (int64_t j = first; j < len; j++) {
        const uint16_t *vj = v_pool + (slots[j] * Hk + hk) * Dv + d0;
        for (int c = 0; c < DC; c++) {
            const __m256 v = load8_bf16(vj + 8 * c);
            for (int g = 0; g < G; g++)
                acc[g * DC + c] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + g * max_len + j), v, acc[g * DC + c]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int c = 0; c < DC; c++)
            store8_bf16(out + g * Dv + d0 + 8 * c, _mm256_mul_ps(acc[g * DC + c], _mm256_set1_ps(inv[g])));
}

#endif

#if defined(__AVX512BF16__) || defined(SGL_AVX2)
/* All keys of [first, len), KB at a time (the tail one by one: a score is the same sum either way) */
static inline __attribute__((always_inline)) void score_all(const query_t *q, const uint16_t *k_pool,
        const int64_t *slots, int64_t first, int64_t len, const int G, const int KB, int64_t Hk, int64_t hk, int64_t D,
        float scale, float *scores, int64_t max_len) {
    int64_t j = first;
    for (; j + KB <= len; j += KB) score_keys(q, k_pool, slots, j, G, KB, Hk, hk, D, scale, scores, max_len);
    for (; j < len; j++) score_keys(q, k_pool, slots, j, G, 1, Hk, hk, D, scale, scores, max_len);
}

/* All Dv output dims, DC chunks of VALUE_LANES at a time (the tail one chunk at a time) */
static inline __attribute__((always_inline)) void value_all(const float *p, const uint16_t *v_pool,
        const int64_t *slots, int64_t first, int64_t len, const int G, const int DC, int64_t Hk, int64_t hk,
        int64_t Dv, const float *inv, int64_t max_len, uint16_t *out) {
    int64_t d = 0;
    for (; d + VALUE_LANES * DC <= Dv; d += VALUE_LANES * DC)
        value_chunks(p, v_pool, slots, first, len, G, DC, Hk, hk, Dv, d, inv, max_len, out);
    for (; d < Dv; d += VALUE_LANES) value_chunks(p, v_pool, slots, first, len, G, 1, Hk, hk, Dv, d, inv, max_len, out);
}

/* CALL(G) with the group size a constant (1..8), so each size gets loops of its own */
#define BY_GROUP(group, CALL) \
    switch (group) { \
    case 1: CALL(1); break; \
    case 2: CALL(2); break; \
    case 3: CALL(3); break; \
    case 4: CALL(4); break; \
    case 5: CALL(5); break; \
    case 6: CALL(6); break; \
    case 7: CALL(7); break; \
    default: CALL(8); break; \
    }
#define SCORE_ALL(G) score_all(qg, k_pool, slots, first, len, G, BLOCKS(G), Hk, hk, D, scale, scores, max_len)
#define VALUE_ALL(G) value_all(scores, v_pool, slots, first, len, G, BLOCKS(G), Hk, hk, Dv, inv, max_len, out)
#endif

#ifdef __AVX512BF16__
static void attend_group(const uint16_t *q, const uint16_t *k_pool, const uint16_t *v_pool, const int64_t *slots,
                         int64_t first, int64_t len, int64_t Hk, int64_t hk, int64_t group, int64_t D, int64_t Dv,
                         float scale, float *scores, int64_t max_len, uint16_t *out) {
    const query_t *qg = q;
    BY_GROUP(group, SCORE_ALL);
    float inv[MAX_GROUP];
    for (int64_t g = 0; g < group; g++) { /* softmax over [first, len), 16 at a time */
        float *s = scores + g * max_len;
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (int64_t j = first; j < len; j += 16) {
            const __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
            top = _mm512_max_ps(top, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, s + j));
        }
        const __m512 peak = _mm512_set1_ps(_mm512_reduce_max_ps(top));
        __m512 total = _mm512_setzero_ps();
        for (int64_t j = first; j < len; j += 16) {
            const __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
            const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), peak));
            _mm512_mask_storeu_ps(s + j, m, e);
            total = _mm512_add_ps(total, _mm512_maskz_mov_ps(m, e));
        }
        inv[g] = 1.0f / _mm512_reduce_add_ps(total);
    }
    BY_GROUP(group, VALUE_ALL);
}
#elif defined(SGL_AVX2)
static void attend_group(const uint16_t *q, const uint16_t *k_pool, const uint16_t *v_pool, const int64_t *slots,
                         int64_t first, int64_t len, int64_t Hk, int64_t hk, int64_t group, int64_t D, int64_t Dv,
                         float scale, float *scores, int64_t max_len, uint16_t *out) {
    query_t qg[group * D];
    for (int64_t i = 0; i < group * D; i += 8) _mm256_storeu_ps(qg + i, load8_bf16(q + i));
    BY_GROUP(group, SCORE_ALL);
    float inv[MAX_GROUP];
    for (int64_t g = 0; g < group; g++) {
        float *s = scores + g * max_len;
        float top = -INFINITY;
        for (int64_t j = first; j < len; j++) top = s[j] > top ? s[j] : top;
        const __m256 peak = _mm256_set1_ps(top);
        __m256 total8 = _mm256_setzero_ps();
        int64_t j = first;
        for (; j + 8 <= len; j += 8) {
            const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), peak));
            _mm256_storeu_ps(s + j, e);
            total8 = _mm256_add_ps(total8, e);
        }
        float total = hsum8_ps(total8);
        for (; j < len; j++) {
            s[j] = expf(s[j] - top);
            total += s[j];
        }
        inv[g] = 1.0f / total;
    }
    BY_GROUP(group, VALUE_ALL);
}
#endif

/* q (Tq, Hq, D) with row stride q_stride; k_pool (slots, Hk, D), v_pool (slots, Hk, Dv);
 * table (rows, table_stride) int64 slots; q_req, kv_len (Tq,); out (Tq, Hq, Dv).
 * window > 0: only the last `window` keys are visible. max_len >= every kv_len.
 * Each thread keeps one row's scores (Hq x max_len floats) and reuses them row after row, so they
 * stay in cache: with a scratch per row (Tq x Hq x max_len), a 1,024-token prefill of SmolLM2's
 * heads wrote and read its 37 MB of scores through memory: the whole prefill took 1.3x as long. */
void sgl_attention_rows_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool,
                             const uint16_t *v_pool, const int64_t *table, int64_t table_stride,
                             const int64_t *q_req, const int64_t *kv_len, uint16_t *out,
                             int64_t Tq, int64_t Hq, int64_t Hk, int64_t D, int64_t Dv, int64_t max_len,
                             float scale, int64_t window) {
    const int64_t group = Hq / Hk;
    int64_t work = 0;
    for (int64_t i = 0; i < Tq; i++) work += kv_len[i];
#pragma omp parallel if (work * Hq * D >= SGL_PARALLEL_MIN)
    {
        float *const scores = malloc((size_t)(Hq * max_len) * sizeof(float));
        if (!scores) abort(); /* Hq x max_len floats: a few MB at the longest contexts */
#pragma omp for collapse(2) schedule(static)
        for (int64_t i = 0; i < Tq; i++) {
            for (int64_t hk = 0; hk < Hk; hk++) {
                const int64_t len = kv_len[i], first = window > 0 && len > window ? len - window : 0;
                const int64_t *slots = table + q_req[i] * table_stride;
#ifdef __AVX512BF16__
                if (D % 32 == 0 && Dv % 32 == 0 && group <= MAX_GROUP) {
                    attend_group(q + i * q_stride + hk * group * D, k_pool, v_pool, slots, first, len, Hk, hk, group, D,
                                 Dv, scale, scores + hk * group * max_len, max_len,
                                 out + (i * Hq + hk * group) * Dv);
                    continue;
                }
#elif defined(SGL_AVX2)
                if (D % 8 == 0 && Dv % 8 == 0 && group <= MAX_GROUP) {
                    attend_group(q + i * q_stride + hk * group * D, k_pool, v_pool, slots, first, len, Hk, hk, group, D,
                                 Dv, scale, scores + hk * group * max_len, max_len,
                                 out + (i * Hq + hk * group) * Dv);
                    continue;
                }
#endif
                float acc[Dv];
                for (int64_t g = 0; g < group; g++) {
                    const int64_t h = hk * group + g;
                    const uint16_t *qh = q + i * q_stride + h * D;
                    float *s = scores + h * max_len;
                    float top = -INFINITY;
                    for (int64_t j = first; j < len; j++) {
                        s[j] = dot_bf16(qh, k_pool + (slots[j] * Hk + hk) * D, D) * scale;
                        top = s[j] > top ? s[j] : top;
                    }
                    float total = 0.0f;
                    for (int64_t j = first; j < len; j++) {
                        s[j] = expf(s[j] - top);
                        total += s[j];
                    }
                    for (int64_t d = 0; d < Dv; d++) acc[d] = 0.0f;
                    for (int64_t j = first; j < len; j++) {
                        const uint16_t *vj = v_pool + (slots[j] * Hk + hk) * Dv;
                        const float p = s[j];
#pragma omp simd
                        for (int64_t d = 0; d < Dv; d++) acc[d] += p * bf16_to_f32(vj[d]);
                    }
                    uint16_t *o = out + (i * Hq + h) * Dv;
                    const float inv = 1.0f / total;
                    for (int64_t d = 0; d < Dv; d++) o[d] = f32_to_bf16(acc[d] * inv);
                }
            }
        }
        free(scores);
    }
}

/* Writes the new tokens' k (T, Hk * D) and v (T, Hk * Dv) rows (strided) into their slots. */
void sgl_kv_store_bf16(uint16_t *k_pool, uint16_t *v_pool, const uint16_t *k, const uint16_t *v,
                       int64_t kv_stride, const int64_t *slots, int64_t T, int64_t k_width, int64_t v_width) {
#pragma omp parallel for schedule(static) if (T * (k_width + v_width) >= SGL_PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) {
        memcpy(k_pool + slots[t] * k_width, k + t * kv_stride, (size_t)k_width * 2);
        memcpy(v_pool + slots[t] * v_width, v + t * kv_stride, (size_t)v_width * 2);
    }
}
