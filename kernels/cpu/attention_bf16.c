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

static float dot_bf16(const uint16_t *a, const uint16_t *b, int64_t n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += bf16_to_f32(a[i]) * bf16_to_f32(b[i]);
    return sum;
}

/* q (Tq, Hq, D) with row stride q_stride; k_pool (slots, Hk, D), v_pool (slots, Hk, Dv);
 * table (rows, table_stride) int64 slots; q_req, kv_len (Tq,); out (Tq, Hq, Dv).
 * window > 0: only the last `window` keys are visible. scores (Tq * Hq * max_len) scratch. */
void sgl_attention_rows_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool,
                             const uint16_t *v_pool, const int64_t *table, int64_t table_stride,
                             const int64_t *q_req, const int64_t *kv_len, uint16_t *out, float *scores,
                             int64_t Tq, int64_t Hq, int64_t Hk, int64_t D, int64_t Dv, int64_t max_len,
                             float scale, int64_t window) {
    const int64_t group = Hq / Hk;
    int64_t work = 0;
    for (int64_t i = 0; i < Tq; i++) work += kv_len[i];
#pragma omp parallel for collapse(2) schedule(static) if (work * Hq * D >= SGL_PARALLEL_MIN)
    for (int64_t i = 0; i < Tq; i++) {
        for (int64_t hk = 0; hk < Hk; hk++) {
            const int64_t len = kv_len[i], first = window > 0 && len > window ? len - window : 0;
            const int64_t *slots = table + q_req[i] * table_stride;
            float acc[Dv];
            for (int64_t g = 0; g < group; g++) {
                const int64_t h = hk * group + g;
                const uint16_t *qh = q + i * q_stride + h * D;
                float *s = scores + (i * Hq + h) * max_len;
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
}

/* Writes the new tokens' k (T, Hk * D) and v (T, Hk * Dv) rows (strided) into their slots. */
void sgl_kv_store_bf16(uint16_t *k_pool, uint16_t *v_pool, const uint16_t *k, const uint16_t *v,
                       int64_t kv_stride, const int64_t *slots, int64_t T, int64_t k_width, int64_t v_width) {
    for (int64_t t = 0; t < T; t++) {
        memcpy(k_pool + slots[t] * k_width, k + t * kv_stride, (size_t)k_width * 2);
        memcpy(v_pool + slots[t] * v_width, v + t * kv_stride, (size_t)v_width * 2);
    }
}
