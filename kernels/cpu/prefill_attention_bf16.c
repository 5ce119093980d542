/* Causal attention of one request's new tokens on the tile unit (AMX), for prefill and
 * extends after a cached prefix: bf16 in and out, float32 scores and sums.
 *
 * torch's SDPA takes ~0.9 ms a layer for 512 tokens of SmolLM2-135M (9 heads of 64): a third
 * of prefill. Here, per kv head, the keys and values (read through the slot table) are packed
 * once into the tile unit's pair-interleaved B layout; then per query head and block of 16
 * queries: S = Q K^T on tiles into a float32 row block, an exact softmax per row (max, exp,
 * sum over the visible keys), P rounded to bf16, and O = P V on tiles.
 *
 * Query t (0-based among the new tokens) is at position prefix + t and sees keys [0, prefix + t].
 * Requires head_dim % 32 == 0 and equal key and value dims; no sliding window, soft-cap or
 * ALiBi (those take the torch path). */
#include <math.h>
#include <stdlib.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"

#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512BF16__)
#include <immintrin.h>

/* keys (len, D) of kv head hk -> kb[block of 16 keys][dim chunk of 32][pair][key][2] */
static void pack_keys(const uint16_t *pool, const int64_t *slots, int64_t len, int64_t Hk, int64_t hk,
                      int64_t D, uint16_t *kb) {
    const int64_t chunks = D / 32, blocks = (len + 15) / 16;
    memset(kb, 0, (size_t)blocks * chunks * 512 * 2);
    const __m512i pair_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(16));
    for (int64_t j = 0; j < len; j++) { /* a key's 32-dim chunk is 16 pairs, one per tile row */
        const uint16_t *src = pool + (slots[j] * Hk + hk) * D;
        uint32_t *dst = (uint32_t *)kb + (j / 16) * chunks * 256 + (j % 16);
        for (int64_t c = 0; c < chunks; c++)
            _mm512_i32scatter_epi32(dst + c * 256, pair_rows, _mm512_loadu_si512(src + c * 32), 4);
    }
}

/* values (len, D) -> vb[block of 32 keys][dim slab of 16][key pair][dim][2] */
static void pack_values(const uint16_t *pool, const int64_t *slots, int64_t len, int64_t Hk, int64_t hk,
                        int64_t D, uint16_t *vb) {
    const int64_t slabs = D / 16, blocks = (len + 31) / 32;
    memset(vb, 0, (size_t)blocks * slabs * 512 * 2);
    /* keys j, j + 1 interleaved: [a0 b0 a1 b1 ... a15 b15] for each 16-dim slab */
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t j = 0; j < len; j += 2) {
        const uint16_t *a = pool + (slots[j] * Hk + hk) * D;
        const uint16_t *b = j + 1 < len ? pool + (slots[j + 1] * Hk + hk) * D : NULL;
        uint16_t *dst = vb + (j / 32) * slabs * 512 + ((j % 32) / 2) * 32;
        for (int64_t sl = 0; sl < slabs; sl++) {
            const __m256i lo = _mm256_loadu_si256((const __m256i *)(a + sl * 16));
            const __m256i hi = b ? _mm256_loadu_si256((const __m256i *)(b + sl * 16)) : _mm256_setzero_si256();
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            _mm512_storeu_si512(dst + sl * 512, _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

/* One query head, queries [q0, q0 + rows) of the new tokens. */
static void attend_block(const uint16_t *q, int64_t q_stride, const uint16_t *kb, const uint16_t *vb, int64_t D,
                         int64_t prefix, int64_t q0, int64_t rows, float scale, float *scores, uint16_t *probs,
                         uint16_t *qpad, uint16_t *out, int64_t out_stride) {
    const int64_t chunks = D / 32, slabs = D / 16;
    const int64_t visible = prefix + q0 + rows;         /* keys the block's last query sees */
    const int64_t kblocks = (visible + 15) / 16, vblocks = (visible + 31) / 32;
    const int64_t width = vblocks * 32;                 /* row length of scores and probs */
    const uint16_t *qa = q + q0 * q_stride;
    int64_t qa_stride = q_stride * 2;
    if (rows < 16) { /* a partial block: zero rows past the last query keep tile loads in bounds */
        memset(qpad, 0, (size_t)16 * D * 2);
        for (int64_t r = 0; r < rows; r++) memcpy(qpad + r * D, qa + r * q_stride, (size_t)D * 2);
        qa = qpad, qa_stride = D * 2;
    }
    /* S = Q K^T, 16 keys at a time; Q's chunks stay in tiles 2-5 (D <= 128) */
    if (chunks <= 4) {
        _tile_loadd(2, qa, qa_stride);
        if (chunks > 1) _tile_loadd(3, qa + 32, qa_stride);
        if (chunks > 2) _tile_loadd(4, qa + 64, qa_stride);
        if (chunks > 3) _tile_loadd(5, qa + 96, qa_stride);
        for (int64_t b = 0; b < kblocks; b++) {
            const uint16_t *k = kb + b * chunks * 512;
            _tile_zero(0);
            _tile_loadd(6, k, 64);
            _tile_dpbf16ps(0, 2, 6);
            if (chunks > 1) { _tile_loadd(7, k + 512, 64); _tile_dpbf16ps(0, 3, 7); }
            if (chunks > 2) { _tile_loadd(6, k + 1024, 64); _tile_dpbf16ps(0, 4, 6); }
            if (chunks > 3) { _tile_loadd(7, k + 1536, 64); _tile_dpbf16ps(0, 5, 7); }
            _tile_stored(0, scores + b * 16, width * 4);
        }
    } else {
        for (int64_t b = 0; b < kblocks; b++) {
            _tile_zero(0);
            for (int64_t c = 0; c < chunks; c++) {
                _tile_loadd(4, qa + c * 32, qa_stride);
                _tile_loadd(5, kb + (b * chunks + c) * 512, 64);
                _tile_dpbf16ps(0, 4, 5);
            }
            _tile_stored(0, scores + b * 16, width * 4);
        }
    }
    for (int64_t r = 0; r < 16; r++) { /* softmax of each row over its visible keys */
        float *s = scores + r * width;
        uint16_t *p = probs + r * width;
        const int64_t n = r < rows ? prefix + q0 + r + 1 : 0, whole = n / 16 * 16;
        const __mmask16 tail = (__mmask16)((1u << (n - whole)) - 1);
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < whole; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(s + j));
        if (tail) top = _mm512_max_ps(top, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, s + whole));
        const __m512 peak = _mm512_set1_ps(n ? _mm512_reduce_max_ps(top) * scale : 0.0f), sc = _mm512_set1_ps(scale);
        __m512 total = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j < whole; j += 16) { /* P enters the tile product in bf16: sum what is used */
            const __m256i pb = (__m256i)_mm512_cvtneps_pbh(exp_nonpositive_bf16_ps(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), sc, peak)));
            _mm256_storeu_si256((__m256i *)(p + j), pb);
            total = _mm512_add_ps(total, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(pb), 16)));
        }
        if (tail) {
            const __m512 e = _mm512_maskz_mov_ps(tail, exp_nonpositive_bf16_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, s + j), sc, peak)));
            const __m256i pb = (__m256i)_mm512_cvtneps_pbh(e);
            _mm256_storeu_si256((__m256i *)(p + j), pb);
            total = _mm512_add_ps(total, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(pb), 16)));
            j += 16;
        }
        for (; j < width; j += 16) _mm256_storeu_si256((__m256i *)(p + j), _mm256_setzero_si256()); /* masked keys */
        s[0] = n ? 1.0f / _mm512_reduce_add_ps(total) : 0.0f; /* the row's 1 / sum, kept in its first score */
    }
    /* O = P V: four 16-dim slabs at a time in tiles 0-3, each P tile (32 keys) loaded once */
    float o[4][16][16];
    for (int64_t s0 = 0; s0 < slabs; s0 += 4) {
        const int64_t n = slabs - s0 < 4 ? slabs - s0 : 4;
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        for (int64_t b = 0; b < vblocks; b++) {
            const uint16_t *v = vb + (b * slabs + s0) * 512;
            _tile_loadd(4, probs + b * 32, width * 2);
            _tile_loadd(5, v, 64);
            _tile_dpbf16ps(0, 4, 5);
            if (n > 1) { _tile_loadd(6, v + 512, 64); _tile_dpbf16ps(1, 4, 6); }
            if (n > 2) { _tile_loadd(7, v + 1024, 64); _tile_dpbf16ps(2, 4, 7); }
            if (n > 3) { _tile_loadd(5, v + 1536, 64); _tile_dpbf16ps(3, 4, 5); }
        }
        _tile_stored(0, o[0], 64);
        if (n > 1) _tile_stored(1, o[1], 64);
        if (n > 2) _tile_stored(2, o[2], 64);
        if (n > 3) _tile_stored(3, o[3], 64);
        for (int64_t r = 0; r < rows; r++) {
            const __m512 inv = _mm512_set1_ps(scores[r * width]);
            for (int64_t i = 0; i < n; i++)
                _mm256_storeu_si256((__m256i *)(out + (q0 + r) * out_stride + (s0 + i) * 16),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(o[i][r]), inv)));
        }
    }
}

int sgl_prefill_attention_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool, const uint16_t *v_pool,
                               const int64_t *slots, int64_t prefix, int64_t Tq, int64_t Hq, int64_t Hk, int64_t D,
                               float scale, uint16_t *out) {
    if (D % 32 || sgl_amx_init() != 1) return 0;
    const int64_t len = prefix + Tq, group = Hq / Hk;
    const int64_t kb_size = (len + 15) / 16 * 16 * D, vb_size = (len + 31) / 32 * 32 * D;
    uint16_t *packed = malloc((size_t)Hk * (kb_size + vb_size) * 2);
    if (!packed) return 0;
#pragma omp parallel for schedule(static)
    for (int64_t hk = 0; hk < Hk; hk++) {
        pack_keys(k_pool, slots, len, Hk, hk, D, packed + hk * (kb_size + vb_size));
        pack_values(v_pool, slots, len, Hk, hk, D, packed + hk * (kb_size + vb_size) + kb_size);
    }
    const int64_t qblocks = (Tq + 15) / 16, width = (len + 31) / 32 * 32;
#pragma omp parallel
    {
        sgl_amx_configure();
        float *scores = malloc((size_t)16 * width * 4);
        uint16_t *probs = malloc((size_t)16 * width * 2), *qpad = malloc((size_t)16 * D * 2);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < Hq * qblocks; task++) {
            /* later query blocks see more keys: hand them out first for balance */
            const int64_t h = task % Hq, qb = qblocks - 1 - task / Hq, hk = h / group;
            const uint16_t *kb = packed + hk * (kb_size + vb_size);
            const int64_t rows = Tq - qb * 16 < 16 ? Tq - qb * 16 : 16;
            attend_block(q + h * D, q_stride, kb, kb + kb_size, D, prefix, qb * 16, rows, scale, scores, probs, qpad,
                         out + h * D, Hq * D);
        }
        free(scores), free(probs), free(qpad);
        _tile_release();
    }
    free(packed);
    return 1;
}
#else
int sgl_prefill_attention_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool, const uint16_t *v_pool,
                               const int64_t *slots, int64_t prefix, int64_t Tq, int64_t Hq, int64_t Hk, int64_t D,
                               float scale, uint16_t *out) {
    return 0; /* not built here: the caller uses torch */
}
#endif
