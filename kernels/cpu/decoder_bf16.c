/* A whole stack of Llama decoder layers in one call: a few decode rows, or a whole prefill;
 * Gemma's layers too (sandwich norms, q/k norms, 1 + w norms, GeLU-tanh, two ropes).
 *
 * Decode at batch 1 is bound by weight bytes plus per-op overhead: in eager PyTorch each of
 * the 30 layers costs ~20 ops and ~15 module calls (~300 us of Python), more than the layer's
 * arithmetic. This runs the same kernels the layers call one by one (norm, qkv, rope, KV
 * store, attention, o, residual, norm, gate/up, silu * up, down, residual), in the same order
 * and with the same rounding, so its output is bit for bit what the module path gives with
 * these kernels.
 *
 * With packed weights (sgl_layer.tiles) the products are linear_tiles_bf16.c's, with the
 * residual adds and silu * up inside them, as the module path calls it. With quantized weights
 * (tiles == 2) they are linear_quant.c's, row by row as the module path's quantized linears.
 *
 * Layout per row: x (M, hidden) is the residual stream, updated in place. Query rows are
 * "single rows" as in attention_bf16.c: row i sees kv_len[i] tokens of table row q_req[i].
 *
 * Prefill (n_req > 0, packed weights): the rows are the new tokens of n_req requests in turn,
 * request r's req_len[r] tokens after req_prefix[r] cached ones on table row req_rows[r], and
 * attention runs per request on the tile unit (prefill_attention_bf16.c), as the module path's
 * prefill does; one call then covers the whole batch and no layer runs Python. */
#include <stdlib.h>
#include "bf16.h"
#include "kernels.h"

typedef struct {
    const uint16_t *input_norm, *qkv_w, *qkv_b, *o_w, *o_b, *post_norm, *gate_up_w, *down_w;
    uint16_t *k_pool, *v_pool;
    int64_t window; /* 0: full attention */
    int64_t tiles;  /* 1: the four weights are packed for linear_tiles_bf16.c (gate/up gated);
                       2: each of the four points to an sgl_qweight (linear_quant.c) */
    /* Gemma's variations (NULL / 0 for Llama; tiles is then never 1): */
    const uint16_t *q_norm, *k_norm;        /* RMS norm of each head of q and k, before rope */
    const uint16_t *attn_out_norm, *mlp_out_norm; /* sandwich: the sublayers' outputs normed */
    float norm_offset; /* 1: every norm is Gemma's bf16(x * rsqrt(...) * (1 + w)) (norm_bf16.c) */
    int32_t gelu;      /* 1: gelu_tanh(gate) * up, else silu */
    int64_t second_rope; /* 1: rope by the second cos/sin tables (Gemma 3: global and sliding-window layers differ) */
} sgl_layer;

/* x (M rows, stride) -> out with the layer's norm kind (in place allowed for Gemma's) */
static void layer_norm(const sgl_layer *w, const uint16_t *x, int64_t stride, const uint16_t *weight, uint16_t *out,
                       int64_t M, int64_t D, float eps) {
    if (w->norm_offset != 0.0f) sgl_rmsnorm_offset_bf16(x, stride, weight, out, M, D, eps, w->norm_offset);
    else sgl_rmsnorm_bf16(x, stride, weight, out, M, D, eps);
}

/* each head's q (or k) of each row normed in place: rows of qkv, heads of head_dim from col */
static void head_norms(const sgl_layer *w, uint16_t *qkv, int64_t qkv_width, int64_t col, const uint16_t *weight,
                       int64_t M, int64_t heads, int64_t head_dim, float eps) {
    for (int64_t m = 0; m < M; m++)
        layer_norm(w, qkv + m * qkv_width + col, head_dim, weight, qkv + m * qkv_width + col, heads, head_dim, eps);
}

/* y = x W^T (+ bias) with the layer's weight kind: bf16 rows (linear_bf16.c) or quantized */
static void layer_linear(const sgl_layer *w, const uint16_t *weight, const uint16_t *x, const uint16_t *bias,
                         uint16_t *y, int64_t M, int64_t N, int64_t K, uint16_t *packed) {
    if (w->tiles == 2) sgl_linear_quant_bf16(x, (const sgl_qweight *)weight, bias, y, M, N, K);
    else sgl_linear_rows_bf16(x, weight, bias, y, M, N, K, packed);
}

/* Prefill attention of each request's rows; a request the tile kernel cannot take (it could
 * not allocate its packed keys) falls back to single rows. */
static void attend_requests(const uint16_t *qkv, int64_t qkv_width, const sgl_layer *w, const int64_t *table,
                            int64_t table_stride, const int64_t *q_req, const int64_t *kv_len, uint16_t *attn,
                            int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t max_len,
                            float scale, int64_t n_req, const int64_t *req_rows, const int64_t *req_prefix,
                            const int64_t *req_len) {
    const int64_t q_width = heads * head_dim;
    for (int64_t r = 0, start = 0; r < n_req; start += req_len[r], r++) {
        const uint16_t *q = qkv + start * qkv_width;
        uint16_t *out = attn + start * q_width;
        if (!sgl_prefill_attention_bf16(q, qkv_width, w->k_pool, w->v_pool, table + req_rows[r] * table_stride,
                                        req_prefix[r], req_len[r], heads, kv_heads, head_dim, scale, out)) {
            sgl_attention_rows_bf16(q, qkv_width, w->k_pool, w->v_pool, table, table_stride, q_req + start,
                                    kv_len + start, out, req_len[r], heads, kv_heads, head_dim, head_dim, max_len,
                                    scale, w->window);
        }
    }
}

/* M <= 32 (the tile kernel's rows per pass) unless the weights are packed. scratch: bf16, at
 * least M * (2 * hidden + qkv_width + q_width + 3 * inter) + 32 * max(hidden, inter, q_width)
 * elements. n_req: 0, or the requests of a prefill (see above). */
void sgl_llama_layers_bf16(uint16_t *x, int64_t M, const sgl_layer *layers, int64_t L, int64_t hidden,
                           int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t inter, float eps,
                           float scale, int64_t rotary_dim, const uint16_t *cos, const uint16_t *sin,
                           const uint16_t *second_cos, const uint16_t *second_sin,
                           const int64_t *out_slots, const int64_t *table, int64_t table_stride,
                           const int64_t *q_req, const int64_t *kv_len, int64_t max_len, uint16_t *scratch,
                           int64_t n_req, const int64_t *req_rows, const int64_t *req_prefix,
                           const int64_t *req_len) {
    const int64_t q_width = heads * head_dim, kv_width = kv_heads * head_dim;
    const int64_t qkv_width = q_width + 2 * kv_width;
    uint16_t *h = scratch;                  /* (M, hidden)    normed input */
    uint16_t *qkv = h + M * hidden;         /* (M, qkv_width) */
    uint16_t *attn = qkv + M * qkv_width;   /* (M, q_width)   attention output */
    uint16_t *proj = attn + M * q_width;    /* (M, hidden)    o / down output */
    uint16_t *gate_up = proj + M * hidden;  /* (M, 2 * inter) */
    uint16_t *act = gate_up + M * 2 * inter; /* (M, inter) */
    uint16_t *packed = act + M * inter;      /* x packed for the tile kernel: 2 * K * 16 */
    for (int64_t l = 0; l < L; l++) {
        const sgl_layer *w = layers + l;
        layer_norm(w, x, hidden, w->input_norm, h, M, hidden, eps);
        if (w->tiles == 1) sgl_linear_tiles_bf16(h, w->qkv_w, w->qkv_b, NULL, qkv, M, qkv_width, hidden, 0);
        else layer_linear(w, w->qkv_w, h, w->qkv_b, qkv, M, qkv_width, hidden, packed);
        if (w->q_norm) head_norms(w, qkv, qkv_width, 0, w->q_norm, M, heads, head_dim, eps);
        if (w->k_norm) head_norms(w, qkv, qkv_width, q_width, w->k_norm, M, kv_heads, head_dim, eps);
        sgl_rope_neox_bf16(qkv, qkv_width, M, heads + kv_heads, head_dim, rotary_dim, w->second_rope ? second_cos : cos,
                           w->second_rope ? second_sin : sin);
        sgl_kv_store_bf16(w->k_pool, w->v_pool, qkv + q_width, qkv + q_width + kv_width, qkv_width, out_slots, M,
                          kv_width, kv_width);
        if (n_req > 0)
            attend_requests(qkv, qkv_width, w, table, table_stride, q_req, kv_len, attn, heads, kv_heads, head_dim,
                            max_len, scale, n_req, req_rows, req_prefix, req_len);
        else
            sgl_attention_rows_bf16(qkv, qkv_width, w->k_pool, w->v_pool, table, table_stride, q_req, kv_len, attn,
                                    M, heads, kv_heads, head_dim, head_dim, max_len, scale, w->window);
        if (w->tiles == 1) { /* the residual adds and silu * up happen inside the products */
            sgl_linear_tiles_bf16(attn, w->o_w, w->o_b, x, x, M, hidden, q_width, 0);
            sgl_rmsnorm_bf16(x, hidden, w->post_norm, h, M, hidden, eps);
            sgl_linear_tiles_bf16(h, w->gate_up_w, NULL, NULL, act, M, 2 * inter, hidden, 1);
            sgl_linear_tiles_bf16(act, w->down_w, NULL, x, x, M, hidden, inter, 0);
            continue;
        }
        layer_linear(w, w->o_w, attn, w->o_b, proj, M, hidden, q_width, packed);
        if (w->attn_out_norm) layer_norm(w, proj, hidden, w->attn_out_norm, proj, M, hidden, eps);
        sgl_add_bf16(x, proj, x, M * hidden);
        layer_norm(w, x, hidden, w->post_norm, h, M, hidden, eps);
        layer_linear(w, w->gate_up_w, h, NULL, gate_up, M, 2 * inter, hidden, packed);
        if (w->gelu) sgl_gelu_tanh_mul_bf16(gate_up, act, M, inter);
        else sgl_silu_mul_bf16(gate_up, act, M, inter);
        layer_linear(w, w->down_w, act, NULL, proj, M, hidden, inter, packed);
        if (w->mlp_out_norm) layer_norm(w, proj, hidden, w->mlp_out_norm, proj, M, hidden, eps);
        sgl_add_bf16(x, proj, x, M * hidden);
    }
}
