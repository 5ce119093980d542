/* The CPU kernels' entry points, for the fused decoder (decoder_bf16.c) that chains them. */
#ifndef SGL_KERNELS_H
#define SGL_KERNELS_H
#include <stdint.h>

void sgl_linear_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                     int64_t M, int64_t N, int64_t K);
void sgl_linear_amx_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, uint16_t *packed);
int sgl_amx_init(void);
void sgl_amx_configure(void);
void sgl_linear_rows_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                          int64_t M, int64_t N, int64_t K, uint16_t *packed);
void sgl_linear_tiles_bf16(const uint16_t *x, const uint16_t *tiles, const uint16_t *bias, const uint16_t *residual,
                           uint16_t *y, int64_t M, int64_t N, int64_t K, int64_t gated);
void sgl_rmsnorm_bf16(const uint16_t *x, int64_t x_stride, const uint16_t *weight, uint16_t *out,
                      int64_t M, int64_t D, float eps);
void sgl_rmsnorm_offset_bf16(const uint16_t *x, int64_t x_stride, const uint16_t *weight, uint16_t *out,
                             int64_t M, int64_t D, float eps, float offset);
void sgl_add_bf16(const uint16_t *a, const uint16_t *b, uint16_t *out, int64_t n);
void sgl_gelu_tanh_mul_bf16(const uint16_t *gate_up, uint16_t *out, int64_t M, int64_t I);
void sgl_silu_mul_bf16(const uint16_t *gate_up, uint16_t *out, int64_t M, int64_t I);
void sgl_rope_neox_bf16(uint16_t *qkv, int64_t row_stride, int64_t T, int64_t heads, int64_t head_dim,
                        int64_t rotary_dim, const uint16_t *cos, const uint16_t *sin);
void sgl_attention_rows_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool,
                             const uint16_t *v_pool, const int64_t *table, int64_t table_stride,
                             const int64_t *q_req, const int64_t *kv_len, uint16_t *out,
                             int64_t Tq, int64_t Hq, int64_t Hk, int64_t D, int64_t Dv, int64_t max_len,
                             float scale, int64_t window);
int sgl_prefill_attention_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool, const uint16_t *v_pool,
                               const int64_t *slots, int64_t prefix, int64_t Tq, int64_t Hq, int64_t Hk, int64_t D,
                               float scale, uint16_t *out);
void sgl_kv_store_bf16(uint16_t *k_pool, uint16_t *v_pool, const uint16_t *k, const uint16_t *v,
                       int64_t kv_stride, const int64_t *slots, int64_t T, int64_t k_width, int64_t v_width);
/* A quantized weight (linear_quant.c): kind 0 q4 (nibbles, d/m per 32), 1 q8 (q + 128 in a byte,
 * d/m per `block` = 16 or 32 columns); rows in interleaved groups of 16. */
typedef struct {
    int64_t kind, block;
    const uint8_t *qs;
    const void *d, *m; /* float32, or float16 where f16; m NULL: all zero */
    int64_t f16;
    int64_t q_min, q_max; /* the range of the integers q (q8 from Q5_*: 32 values) */
} sgl_qweight;
void sgl_linear_quant_bf16(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, uint16_t *y, int64_t M,
                           int64_t N, int64_t K);
void sgl_linear_quant_f32(const uint16_t *x, const sgl_qweight *w, const uint16_t *bias, float *y, int64_t M,
                          int64_t N, int64_t K);
#endif
