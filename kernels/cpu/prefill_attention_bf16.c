/* Causal attention of one request's new tokens on the tile unit (AMX), for prefill and
 * extends after a cached prefix: bf16 in and out, float32 scores and sums.
 *
 * torch's SDPA takes ~0.9 ms a layer for 512 tokens of SmolLM2-135M (9 heads of 64): a third
 * of prefill; this takes ~0.5 ms. Per kv head, the keys and values (read through the slot
 * table) are packed once into the tile unit's pair-interleaved B layout. Then per block of 16
 * queries, for the query heads sharing that kv head, key chunks of 64 in turn (flash-attention
 * order, so a chunk's keys and values stay in L1 for every head of the group): S = Q K^T on
 * tiles, an online softmax per row (the running max rescales O and the sum when it grows), P
 * rounded to bf16, O += P V on tiles. Whole rows of scores (16 x len floats, 256 KB at 4,000
 * keys) made long prompts L2-bound: 4,000 tokens took 25.8 ms a layer, now ~19.
 *
 * Query t (0-based among the new tokens) is at position prefix + t and sees keys [0, prefix + t].
 * Requires head_dim % 32 == 0, head_dim <= 128 and equal key and value dims; no sliding window,
 * soft-cap or ALiBi (those take the torch path). */
#include <math.h>
#include <stdlib.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"

#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512BF16__)
#include <immintrin.h>

/* keys (len, D) of kv head hk -> kb[block of 16 keys][dim chunk of 32][pair][key][2] */
static void pack_keys(const uint16_t *pool, const int64_t *slots, int64_t len, int64_t Hk, int64_t hk,
                      int64_t D, uint16_t *kb, int64_t size) {
    const int64_t chunks = D / 32;
    memset(kb, 0, (size_t)size * 2); /* keys past len: zeros, masked out of the softmax */
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
                        int64_t D, uint16_t *vb, int64_t size) {
    const int64_t slabs = D / 16;
    memset(vb, 0, (size_t)size * 2); /* values past len: zeros (their probabilities are 0 too) */
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

#define KEY_CHUNK 64 /* keys per step of the online softmax: 4 S tiles, 2 P tiles */

typedef struct { /* one query head's running state over the key chunks of a query block */
    float o[16][128] __attribute__((aligned(64))); /* O rows (D <= 128), float32 */
    float s[16][KEY_CHUNK] __attribute__((aligned(64))); /* this chunk's scores */
    uint16_t p[16][KEY_CHUNK] __attribute__((aligned(64))); /* its probabilities, bf16 */
    float max[16], sum[16]; /* running max of scaled scores, sum of the bf16 probabilities */
} head_state;

/* S = Q K^T for keys [c0, c0 + KEY_CHUNK) of one head into st->s (16 keys a tile). */
static inline void chunk_scores(const uint16_t *qa, int64_t qa_stride, const uint16_t *kb, int64_t chunks,
                                int64_t c0, int64_t kblocks, head_state *st) {
    if (chunks <= 4) { /* D <= 128: Q's chunks stay in tiles 2-5 across the chunk's key blocks */
        _tile_loadd(2, qa, qa_stride);
        if (chunks > 1) _tile_loadd(3, qa + 32, qa_stride);
        if (chunks > 2) _tile_loadd(4, qa + 64, qa_stride);
        if (chunks > 3) _tile_loadd(5, qa + 96, qa_stride);
        for (int64_t b = 0; b < kblocks; b++) {
            const uint16_t *k = kb + (c0 / 16 + b) * chunks * 512;
            _tile_zero(0);
            _tile_loadd(6, k, 64);
            _tile_dpbf16ps(0, 2, 6);
            if (chunks > 1) { _tile_loadd(7, k + 512, 64); _tile_dpbf16ps(0, 3, 7); }
            if (chunks > 2) { _tile_loadd(6, k + 1024, 64); _tile_dpbf16ps(0, 4, 6); }
            if (chunks > 3) { _tile_loadd(7, k + 1536, 64); _tile_dpbf16ps(0, 5, 7); }
            _tile_stored(0, st->s[0] + b * 16, KEY_CHUNK * 4);
        }
        return;
    }
    for (int64_t b = 0; b < kblocks; b++) {
        const uint16_t *k = kb + (c0 / 16 + b) * chunks * 512;
        _tile_zero(0);
        for (int64_t c = 0; c < chunks; c++) {
            _tile_loadd(4, qa + c * 32, qa_stride);
            _tile_loadd(5, k + c * 512, 64);
            _tile_dpbf16ps(0, 4, 5);
        }
        _tile_stored(0, st->s[0] + b * 16, KEY_CHUNK * 4);
    }
}

/* Online softmax over one chunk: row r sees `visible[r]` of its keys; P in bf16 (it enters the
 * tile product so), O and the sum rescaled where the running max grows. */
static inline void chunk_softmax(head_state *st, const int64_t *visible, int64_t rows, int64_t D, float scale) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int64_t r = 0; r < 16; r++) {
        const int64_t n = r < rows ? visible[r] : 0;
        uint16_t *p = st->p[r];
        if (n <= 0) {
            memset(p, 0, sizeof st->p[r]);
            continue;
        }
        const float *s = st->s[r];
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
            top = _mm512_max_ps(top, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, s + j));
        }
        const float chunk_max = _mm512_reduce_max_ps(top) * scale;
        const float previous = st->max[r], peak_f = chunk_max > previous ? chunk_max : previous;
        if (peak_f > previous) { /* the running max grew: shrink what was summed so far */
            const float shrink = previous == -INFINITY ? 0.0f : expf(previous - peak_f);
            const __m512 f = _mm512_set1_ps(shrink);
            st->sum[r] *= shrink;
            for (int64_t d = 0; d < D; d += 16) _mm512_store_ps(st->o[r] + d, _mm512_mul_ps(_mm512_load_ps(st->o[r] + d), f));
            st->max[r] = peak_f;
        }
        const __m512 peak = _mm512_set1_ps(peak_f);
        __m512 total = _mm512_setzero_ps();
        for (int64_t j = 0; j < KEY_CHUNK; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : n > j ? (__mmask16)((1u << (n - j)) - 1) : 0;
            const __m512 e = _mm512_maskz_mov_ps(m, exp_nonpositive_bf16_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, s + j), sc, peak)));
            const __m256i pb = (__m256i)_mm512_cvtneps_pbh(e);
            _mm256_storeu_si256((__m256i *)(p + j), pb);
            total = _mm512_add_ps(total, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(pb), 16)));
        }
        st->sum[r] += _mm512_reduce_add_ps(total);
    }
}

/* O += P V for the chunk's vblocks (32 keys a P tile), four 16-dim slabs of O at a time in
 * tiles 0-3, loaded from and stored back to st->o. */
static inline void chunk_values(head_state *st, const uint16_t *vb, int64_t slabs, int64_t c0, int64_t vblocks) {
    for (int64_t s0 = 0; s0 < slabs; s0 += 4) {
        const int64_t n = slabs - s0 < 4 ? slabs - s0 : 4;
        float *o = st->o[0] + s0 * 16; /* tile numbers must be constants: unrolled */
        _tile_loadd(0, o, 128 * 4);
        if (n > 1) _tile_loadd(1, o + 16, 128 * 4);
        if (n > 2) _tile_loadd(2, o + 32, 128 * 4);
        if (n > 3) _tile_loadd(3, o + 48, 128 * 4);
        for (int64_t b = 0; b < vblocks; b++) {
            const uint16_t *v = vb + ((c0 / 32 + b) * slabs + s0) * 512;
            _tile_loadd(4, st->p[0] + b * 32, KEY_CHUNK * 2);
            _tile_loadd(5, v, 64);
            _tile_dpbf16ps(0, 4, 5);
            if (n > 1) { _tile_loadd(6, v + 512, 64); _tile_dpbf16ps(1, 4, 6); }
            if (n > 2) { _tile_loadd(7, v + 1024, 64); _tile_dpbf16ps(2, 4, 7); }
            if (n > 3) { _tile_loadd(5, v + 1536, 64); _tile_dpbf16ps(3, 4, 5); }
        }
        _tile_stored(0, o, 128 * 4);
        if (n > 1) _tile_stored(1, o + 16, 128 * 4);
        if (n > 2) _tile_stored(2, o + 32, 128 * 4);
        if (n > 3) _tile_stored(3, o + 48, 128 * 4);
    }
}

/* Queries [q0, q0 + rows) of the `group` query heads from h0 that share one kv head: key
 * chunks outermost, so a chunk's keys and values stay in L1 while every head of the group
 * uses them (flash-attention order; the old whole-row softmax kept 16 x len scores, 256 KB
 * at 4,000 keys, and made long prompts L2-bound). */
static void attend_block(const uint16_t *q, int64_t q_stride, const uint16_t *kb, const uint16_t *vb, int64_t D,
                         int64_t prefix, int64_t q0, int64_t rows, float scale, int64_t group, head_state *states,
                         uint16_t *qpad, uint16_t *out, int64_t out_stride) {
    const int64_t chunks = D / 32, slabs = D / 16, len = prefix + q0 + rows; /* keys the last query sees */
    for (int64_t g = 0; g < group; g++) {
        head_state *st = states + g;
        for (int64_t r = 0; r < 16; r++) st->max[r] = -INFINITY, st->sum[r] = 0.0f;
        for (int64_t r = 0; r < 16; r++)
            for (int64_t d = 0; d < D; d += 16) _mm512_store_ps(st->o[r] + d, _mm512_setzero_ps());
        if (rows < 16) { /* a partial block: zero rows past the last query keep tile loads in bounds */
            uint16_t *pad = qpad + g * 16 * D;
            memset(pad, 0, (size_t)16 * D * 2);
            for (int64_t r = 0; r < rows; r++) memcpy(pad + r * D, q + (q0 + r) * q_stride + g * D, (size_t)D * 2);
        }
    }
    for (int64_t c0 = 0; c0 < len; c0 += KEY_CHUNK) {
        const int64_t keys = len - c0 < KEY_CHUNK ? len - c0 : KEY_CHUNK;
        const int64_t kblocks = (keys + 15) / 16, vblocks = (keys + 31) / 32;
        int64_t visible[16]; /* row r's keys in this chunk */
        for (int64_t r = 0; r < 16; r++) {
            const int64_t n = prefix + q0 + r + 1 - c0;
            visible[r] = n < 0 ? 0 : n > KEY_CHUNK ? KEY_CHUNK : n;
        }
        for (int64_t g = 0; g < group; g++) {
            head_state *st = states + g;
            const uint16_t *qa = rows < 16 ? qpad + g * 16 * D : q + q0 * q_stride + g * D;
            const int64_t qa_stride = rows < 16 ? D * 2 : q_stride * 2;
            chunk_scores(qa, qa_stride, kb, chunks, c0, kblocks, st);
            chunk_softmax(st, visible, rows, D, scale);
            chunk_values(st, vb, slabs, c0, vblocks);
        }
    }
    for (int64_t g = 0; g < group; g++) { /* O / sum, to bf16 */
        const head_state *st = states + g;
        for (int64_t r = 0; r < rows; r++) {
            const __m512 inv = _mm512_set1_ps(1.0f / st->sum[r]);
            for (int64_t d = 0; d < D; d += 16)
                _mm256_storeu_si256((__m256i *)(out + (q0 + r) * out_stride + g * D + d),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(st->o[r] + d), inv)));
        }
    }
}

int sgl_prefill_attention_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool, const uint16_t *v_pool,
                               const int64_t *slots, int64_t prefix, int64_t Tq, int64_t Hq, int64_t Hk, int64_t D,
                               float scale, uint16_t *out) {
    if (D % 32 || D > 128 || sgl_amx_init() != 1) return 0;
    const int64_t len = prefix + Tq, group = Hq / Hk;
    const int64_t kb_size = (len + KEY_CHUNK - 1) / KEY_CHUNK * KEY_CHUNK * D;
    const int64_t vb_size = kb_size; /* both padded to whole chunks */
    uint16_t *packed = malloc((size_t)Hk * (kb_size + vb_size) * 2);
    if (!packed) return 0;
#pragma omp parallel for schedule(static)
    for (int64_t hk = 0; hk < Hk; hk++) {
        pack_keys(k_pool, slots, len, Hk, hk, D, packed + hk * (kb_size + vb_size), kb_size);
        pack_values(v_pool, slots, len, Hk, hk, D, packed + hk * (kb_size + vb_size) + kb_size, vb_size);
    }
    const int64_t qblocks = (Tq + 15) / 16;
    int failed = 0;
#pragma omp parallel
    {
        sgl_amx_configure();
        head_state *states = aligned_alloc(64, (size_t)group * sizeof(head_state));
        uint16_t *qpad = malloc((size_t)group * 16 * D * 2);
        if (!states || !qpad) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < Hk * qblocks; task++) {
            /* later query blocks see more keys: hand them out first for balance */
            const int64_t hk = task % Hk, qb = qblocks - 1 - task / Hk;
            if (!states || !qpad) continue;
            const uint16_t *kb = packed + hk * (kb_size + vb_size);
            const int64_t rows = Tq - qb * 16 < 16 ? Tq - qb * 16 : 16;
            attend_block(q + hk * group * D, q_stride, kb, kb + kb_size, D, prefix, qb * 16, rows, scale, group,
                         states, qpad, out + hk * group * D, Hq * D);
        }
        free(states), free(qpad);
        _tile_release();
    }
    free(packed);
    return !failed;
}
#else
int sgl_prefill_attention_bf16(const uint16_t *q, int64_t q_stride, const uint16_t *k_pool, const uint16_t *v_pool,
                               const int64_t *slots, int64_t prefix, int64_t Tq, int64_t Hq, int64_t Hk, int64_t D,
                               float scale, uint16_t *out) {
    return 0; /* not built here: the caller uses torch */
}
#endif
