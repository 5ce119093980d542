/* bf16 linear on the tile unit (AMX) with the weight packed once at load, for any number of
 * rows: y (M, N) = x (M, K) . w (N, K)^T (+ bias) (+ residual), or the gated MLP's
 * silu(gate) * up straight from the fused gate/up weight.
 *
 * Why a packed weight: TDPBF16PS wants its B operand pair-interleaved (16 k-pairs x 16 columns
 * x 2). Packed once, x is the A operand as it lies in memory (16 rows x 32 columns a tile) and
 * nothing is reordered per call; oneDNN reorders the weight on every call from torch. Folding
 * silu * up and the residual adds into the products also saves their separate passes over the
 * activations. A 512-token prefill of SmolLM2-135M spends ~56 ms in its 30 layers' products
 * (silu * up and the adds included) here, against ~75 ms through oneDNN and separate kernels.
 *
 * Packed layout, tiles[panel][chunk][pair][column][2]: a panel is 16 output columns, a chunk 32
 * of K (so a (panel, chunk) tile is 1 KB, contiguous); panels pair up, N padded with zero
 * columns to a multiple of 32. Gated: panel 2j holds gate columns 16j.., panel 2j + 1 the same up
 * columns, so one pair of panels yields 16 outputs of silu(gate) * up. kernels/linear.py packs.
 *
 * Rounding, as the unfused ops round: t = bf16(sum + bias); with a residual, y = bf16(res + t);
 * gated, y = bf16(bf16(silu(g)) * u) with g, u the bf16 products.
 *
 * NOTE: an output is one TDPBF16PS chain over K in 32-column steps, whatever tile row or block
 * its x row lands in and whatever else is in the call, so a row's result does not depend on M
 * (tested): decode, batched decode and jump-forward extends give a token the same logits.
 *
 * Threads (see sgl_linear_tiles_bf16): few rows split the pairs of panels, so the weights
 * stream from memory once; many rows split the rows, so each core keeps its own rows in cache.
 * Either way a pair of panels stays in cache while blocks of 32 rows pass it.
 * Tiles: C = tmm0..3 (rows 0-15 x panels p, p + 1; rows 16-31 x the same), A = tmm4, tmm5
 * (rows 0-15, 16-31), B = tmm6, tmm7 (panels p, p + 1). */
#include <stdlib.h>
#include <omp.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"

#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512BF16__)
#define BLOCK_ROWS 32
#define TILE_ELEMS 512 /* bf16 per (panel, chunk) tile */
#define SPLIT_ROWS_MIN 128 /* from this many rows, threads split the rows instead of the panels */
#define BAND_BYTES (1 << 20) /* x rows per band: half of a 2 MB L2, the rest for panels and outputs */

typedef struct { /* what the outputs are, for every block of a call */
    const uint16_t *bias, *residual;
    uint16_t *y;
    int64_t N, gated;
} epilogue;

typedef struct { /* a finished block whose outputs are not all stored yet */
    float sums[4][16][16] __attribute__((aligned(64))); /* [2 * half + panel][row][column]: tmm0..3 */
    int64_t m0, rows, p, stored;
} pending_block; /* NOTE: aligned sums make the struct's size a multiple of 64, so arrays keep them aligned */

/* Output row r of a pending block: the plain product (+ bias, + residual) of panels p, p + 1,
 * or 16 outputs of silu(gate) * up (gated: panel p is gate, p + 1 up, y (M, N / 2)). */
static inline void store_row(const pending_block *b, int64_t r, const epilogue *e) {
    const int64_t half = 2 * (r / 16), row = r % 16, m = b->m0 + r;
    if (e->gated) {
        const int64_t width = e->N / 2;
        const __m512 g = round_bf16_ps(_mm512_load_ps(b->sums[half][row]));
        const __m512 u = round_bf16_ps(_mm512_load_ps(b->sums[half + 1][row]));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm256_storeu_si256((__m256i *)(e->y + m * width + 8 * b->p),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(round_bf16_ps(s), u)));
        return;
    }
    for (int64_t j = 0; j < 2; j++) {
        const int64_t n = 16 * (b->p + j);
        if (n >= e->N) break;
        const __mmask16 keep = e->N - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (e->N - n)) - 1);
        __m512 t = _mm512_load_ps(b->sums[half + j][row]);
        if (e->bias) t = _mm512_add_ps(t, _mm512_castsi512_ps(_mm512_slli_epi32(
                             _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(keep, e->bias + n)), 16)));
        if (e->residual) {
            const __m256i res = _mm256_maskz_loadu_epi16(keep, e->residual + m * e->N + n);
            t = _mm512_add_ps(round_bf16_ps(t), _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(res), 16)));
        }
        _mm256_mask_storeu_epi16(e->y + m * e->N + n, keep, (__m256i)_mm512_cvtneps_pbh(t));
    }
}

static inline void store_rows(pending_block *b, int64_t upto, const epilogue *e) {
    for (; b->stored < upto && b->stored < b->rows; b->stored++) store_row(b, b->stored, e);
}

/* rows (1..32) of x from `a` (row stride K) against panels p, p + 1 (b0, b1: their chunk 0)
 * into `done`. The previous block's outputs are stored a few rows per 32-column step, so that
 * vector work runs while the tile unit multiplies (it would otherwise wait for it: for the
 * gated product the epilogue costs ~70% of a block's tile time). Rows past `rows` in `a` must
 * be readable. */
static inline void block(const uint16_t *a, int64_t rows, const uint16_t *b0, const uint16_t *b1, int64_t K,
                         pending_block *previous, pending_block *done, const epilogue *e) {
    const int64_t chunks = K / 32, stride = K * 2;
    const int64_t per_step = (previous->rows - previous->stored + chunks - 1) / chunks;
    _tile_zero(0); _tile_zero(1);
    if (rows > 16) {
        _tile_zero(2); _tile_zero(3);
        for (int64_t c = 0; c < chunks; c++) {
            _tile_loadd(4, a + c * 32, stride);
            _tile_loadd(5, a + 16 * K + c * 32, stride);
            _tile_loadd(6, b0 + c * TILE_ELEMS, 64);
            _tile_loadd(7, b1 + c * TILE_ELEMS, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
            store_rows(previous, previous->stored + per_step, e);
        }
        _tile_stored(2, done->sums[2], 64);
        _tile_stored(3, done->sums[3], 64);
    } else {
        for (int64_t c = 0; c < chunks; c++) {
            _tile_loadd(4, a + c * 32, stride);
            _tile_loadd(6, b0 + c * TILE_ELEMS, 64);
            _tile_loadd(7, b1 + c * TILE_ELEMS, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            store_rows(previous, previous->stored + per_step, e);
        }
    }
    store_rows(previous, previous->rows, e);
    _tile_stored(0, done->sums[0], 64);
    _tile_stored(1, done->sums[1], 64);
}

/* One thread's share: panel pairs [pair0, pair1) x rows [m_lo, m_hi). Rows go in bands whose
 * x fits in half the core's L2 (BAND_BYTES); within a band each pair of panels stays in cache
 * while every row block passes it, so x is read from memory once and the weights once per band
 * (without bands, 2,048 rows made x stream from memory for every pair: 1.7x slower). */
static void run_blocks(const uint16_t *x, const uint16_t *tail, const uint16_t *tiles, int64_t M, int64_t K,
                       int64_t full, int64_t pair0, int64_t pair1, int64_t m_lo, int64_t m_hi, const epilogue *e) {
    const int64_t chunks = K / 32;
    const int64_t band = BAND_BYTES / (2 * K) / BLOCK_ROWS * BLOCK_ROWS > BLOCK_ROWS
                             ? BAND_BYTES / (2 * K) / BLOCK_ROWS * BLOCK_ROWS : BLOCK_ROWS;
    pending_block buffers[2];
    buffers[0].rows = buffers[0].stored = 0;
    int64_t next = 1;
    for (int64_t b_lo = m_lo; b_lo < m_hi; b_lo += band) {
        const int64_t b_hi = b_lo + band < m_hi ? b_lo + band : m_hi;
        for (int64_t pair = pair0; pair < pair1; pair++) {
            const uint16_t *b0 = tiles + 2 * pair * chunks * TILE_ELEMS, *b1 = b0 + chunks * TILE_ELEMS;
            for (int64_t m0 = b_lo; m0 < b_hi; m0 += BLOCK_ROWS, next ^= 1) {
                pending_block *done = buffers + next;
                done->rows = M - m0 < BLOCK_ROWS ? M - m0 : BLOCK_ROWS;
                done->m0 = m0, done->p = 2 * pair, done->stored = 0;
                block(m0 < full ? x + m0 * K : tail, done->rows, b0, b1, K, buffers + (next ^ 1), done, e);
            }
        }
    }
    store_rows(buffers + (next ^ 1), BLOCK_ROWS, e);
}

void sgl_linear_tiles_bf16(const uint16_t *x, const uint16_t *tiles, const uint16_t *bias, const uint16_t *residual,
                           uint16_t *y, int64_t M, int64_t N, int64_t K, int64_t gated) {
    if (sgl_amx_init() != 1) abort(); /* packing asked tile_path() (sgl_amx_init) first */
    const int64_t pairs = (N + 31) / 32, full = M / BLOCK_ROWS * BLOCK_ROWS, blocks = (M + BLOCK_ROWS - 1) / BLOCK_ROWS;
    const epilogue e = {bias, residual, y, N, gated};
    uint16_t *tail = NULL; /* the last M % 32 rows, zero-padded: tile loads read 16 or 32 rows */
    if (full < M) {
        tail = calloc((size_t)BLOCK_ROWS * K, sizeof(uint16_t));
        if (!tail) abort(); /* 32 rows of x: out of memory there is nothing left to fall back on */
        memcpy(tail, x + full * K, (size_t)(M - full) * K * sizeof(uint16_t));
    }
    /* Many rows: each thread takes a contiguous share of the rows (as the row-wise kernels
     * around it do, so its x rows and outputs stay in its own core's cache) and passes every
     * panel over them, reading the whole weight. Few rows (decode): the panels are split, so
     * the weight streams from memory once in all. */
#pragma omp parallel if ((double)M * N * K >= 1 << 20)
    {
        sgl_amx_configure();
        const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
        if (M >= SPLIT_ROWS_MIN) {
            const int64_t lo = blocks * t / threads, hi = blocks * (t + 1) / threads;
            run_blocks(x, tail, tiles, M, K, full, 0, pairs, lo * BLOCK_ROWS,
                       hi * BLOCK_ROWS < M ? hi * BLOCK_ROWS : M, &e);
        } else {
            run_blocks(x, tail, tiles, M, K, full, pairs * t / threads, pairs * (t + 1) / threads, 0, M, &e);
        }
        _tile_release();
    }
    free(tail);
}

#else
void sgl_linear_tiles_bf16(const uint16_t *x, const uint16_t *tiles, const uint16_t *bias, const uint16_t *residual,
                           uint16_t *y, int64_t M, int64_t N, int64_t K, int64_t gated) {
    (void)x; (void)tiles; (void)bias; (void)residual; (void)y; (void)M; (void)N; (void)K; (void)gated;
    abort(); /* never called: sgl_amx_init() is 0 in such a build, so nothing gets packed */
}

#endif
