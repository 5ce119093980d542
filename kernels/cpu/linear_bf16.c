/* Small-batch bf16 linear for the CPU: y (M, N) = x (M, K) . w (N, K)^T (+ bias).
 *
 * Decode multiplies a handful of rows by every weight matrix, so it streams the weights once
 * and is bound by memory, not by arithmetic. oneDNN's bf16 path spends ~50 us of set-up per
 * call at M = 1 (a 576 x 576 product takes 55 us where the bytes alone take 15), and the model
 * makes 121 such calls a step. This kernel reads each weight row once per pair of x rows with
 * AVX-512 BF16 dot products, float32 sums, and rounds once to bf16 (round to nearest even, as
 * torch does), so 30 layers of SmolLM2-135M take ~11.6 ms a step against oneDNN's ~18 ms.
 *
 * NOTE: each output is one dot product over K taken in the same order whatever M is, so a
 * row's result does not depend on which other rows share the call.
 *
 * Threads: OpenMP over blocks of ROWS_PER_BLOCK weight rows. The library links libgomp.so.1 by
 * name, which resolves to the copy torch already loaded, so kernels and torch share one pool.
 */
#define _GNU_SOURCE /* syscall(), for the AMX permission request */
#include <stdlib.h>
#include "bf16.h"
#include "kernels.h"
#include "simd.h"

#define ROWS_PER_BLOCK 8 /* weight rows per tile: 8 streams per thread, 16 accumulators */
#define X_PER_TILE 2     /* x rows per tile */

static inline void store(uint16_t *y, const uint16_t *bias, int64_t N, int64_t m, int64_t n, float sum) {
    if (bias) sum += bf16_to_f32(bias[n]);
    y[m * N + n] = f32_to_bf16(sum);
}

/* The weight bytes a thread multiplies next, prefetched while it multiplies this block.
 *
 * Why: at M = 1 a block is 8-12 short weight rows (K = 576: 1152 bytes each) read side by side,
 * too short for the hardware prefetcher to ramp up on, so each core stalls on memory latency
 * at ~9 GB/s where it can read ~21. Prefetching the next block (its rows are contiguous) into
 * L2 a few lines per k step keeps one sequential stream in flight: the 30 layers of
 * SmolLM2-135M plus its LM head (269 MB) go from ~17.5 to ~9.5 ms a token on 2 Zen 4 cores,
 * the memory's read speed (benchmark/machine_limits.py). T1 (L2) beats T0, whose lines
 * evict the block in use. An ahead covers lines [line, end) of next. */
typedef struct {
    const char *next;
    int64_t line, end, per_step;
} ahead;

/* The next block of `rows` weight rows after row n_next (none past N), in `calls` equal
 * slices for the tile calls of this block, each spread over its `steps` k steps. */
static inline ahead ahead_slice(const uint16_t *w, int64_t N, int64_t K, int64_t n_next, int64_t rows,
                                int64_t slice, int64_t calls, int64_t steps) {
    const int64_t left = N - n_next, count = left <= 0 ? 0 : (left < rows ? left : rows);
    const int64_t lines = (count * K * 2 + 63) / 64;
    ahead a = {(const char *)(w + n_next * K), lines * slice / calls, lines * (slice + 1) / calls, 0};
    a.per_step = steps > 0 ? (a.end - a.line + steps - 1) / steps : 0;
    return a;
}

static inline void ahead_step(ahead *a) {
    for (int64_t i = 0; i < a->per_step && a->line < a->end; i++, a->line++) __builtin_prefetch(a->next + a->line * 64, 0, 2); /* 2: T1 */
}

#ifdef __AVX512BF16__
/* ms rows of x (from m0) against r rows of w (from n0), all of K; ms and r are constants at
 * each call site, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void tile(const uint16_t *x, const uint16_t *w,
        const uint16_t *bias, uint16_t *y, int64_t N, int64_t K, int64_t m0, int64_t n0,
        const int ms, const int r, ahead a) {
    __m512 acc[ms][r];
    for (int i = 0; i < ms; i++)
        for (int j = 0; j < r; j++) acc[i][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        ahead_step(&a);
        __m512i wv[r];
        for (int j = 0; j < r; j++) wv[j] = _mm512_loadu_si512(w + (n0 + j) * K + k);
        for (int i = 0; i < ms; i++) {
            const __m512i xv = _mm512_loadu_si512(x + (m0 + i) * K + k);
            for (int j = 0; j < r; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
        }
    }
    if (k < K) { /* the last K % 32 columns, masked */
        const __mmask32 mask = (__mmask32)((1u << (K - k)) - 1);
        __m512i wv[r];
        for (int j = 0; j < r; j++) wv[j] = _mm512_maskz_loadu_epi16(mask, w + (n0 + j) * K + k);
        for (int i = 0; i < ms; i++) {
            const __m512i xv = _mm512_maskz_loadu_epi16(mask, x + (m0 + i) * K + k);
            for (int j = 0; j < r; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
        }
    }
    for (int i = 0; i < ms; i++)
        for (int j = 0; j < r; j++) store(y, bias, N, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

static void weight_block(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, int64_t n0) {
    const ahead none = {0};
    if (N - n0 < ROWS_PER_BLOCK) { /* the last few weight rows, one at a time */
        for (int64_t n = n0; n < N; n++)
            for (int64_t m = 0; m < M; m++) tile(x, w, bias, y, N, K, m, n, 1, 1, none);
        return;
    }
    const int64_t calls = (M + X_PER_TILE - 1) / X_PER_TILE, steps = K / 32, next = n0 + ROWS_PER_BLOCK;
    int64_t m = 0, c = 0;
    for (; m + X_PER_TILE <= M; m += X_PER_TILE, c++)
        tile(x, w, bias, y, N, K, m, n0, X_PER_TILE, ROWS_PER_BLOCK,
             ahead_slice(w, N, K, next, ROWS_PER_BLOCK, c, calls, steps));
    for (; m < M; m++, c++)
        tile(x, w, bias, y, N, K, m, n0, 1, ROWS_PER_BLOCK, ahead_slice(w, N, K, next, ROWS_PER_BLOCK, c, calls, steps));
}
#elif defined(SGL_AVX2)
/* AVX2 + FMA: x widened to float32 once per call (xf), bf16 weights widened in registers (a
 * shift left by 16), float32 FMAs. Each output's sum runs over K in 8-lane steps, then
 * hsum8_ps, then the last K % 8 columns in order: the same sequence whatever M or the tile.
 *
 * One function per tile shape, with fixed-size accumulator arrays: gcc keeps a fixed array in
 * registers, but a variable-length one (sizes as parameters, even after inlining) lives on
 * the stack with a load and a store around every FMA, which halved the kernel's speed. */
#define DEFINE_TILE(ms, r)                                                                                   \
    static void tile_##ms##x##r(const float *xf, const uint16_t *w, const uint16_t *bias, uint16_t *y,        \
                                int64_t N, int64_t K, int64_t m0, int64_t n0, ahead a) {                      \
        __m256 acc[ms][r];                                                                                   \
        for (int i = 0; i < ms; i++)                                                                         \
            for (int j = 0; j < r; j++) acc[i][j] = _mm256_setzero_ps();                                     \
        int64_t k = 0;                                                                                       \
        for (; k + 8 <= K; k += 8) {                                                                         \
            ahead_step(&a);                                                                                  \
            __m256 wv[r];                                                                                    \
            for (int j = 0; j < r; j++) wv[j] = load8_bf16(w + (n0 + j) * K + k);                            \
            for (int i = 0; i < ms; i++) {                                                                   \
                const __m256 xv = _mm256_loadu_ps(xf + (m0 + i) * K + k);                                    \
                for (int j = 0; j < r; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);               \
            }                                                                                                \
        }                                                                                                    \
        for (int i = 0; i < ms; i++)                                                                         \
            for (int j = 0; j < r; j++) {                                                                    \
                float sum = hsum8_ps(acc[i][j]);                                                             \
                for (int64_t t = k; t < K; t++) sum += xf[(m0 + i) * K + t] * bf16_to_f32(w[(n0 + j) * K + t]); \
                store(y, bias, N, m0 + i, n0 + j, sum);                                                      \
            }                                                                                                \
    }
/* 16 ymm registers, 12 accumulators in each tile: decode's 1 x 12 keeps 12 weight streams in
 * flight (from memory, 12 beat 6 by ~15%); 2 x 6 and 4 x 3 reuse each loaded weight vector 2 or
 * 4 times. A block of 12 weight rows splits evenly into each. */
#define AVX2_BLOCK 12
DEFINE_TILE(1, 1)
DEFINE_TILE(1, 12)
DEFINE_TILE(1, 6)
DEFINE_TILE(1, 3)
DEFINE_TILE(2, 6)
DEFINE_TILE(4, 3)
#undef DEFINE_TILE

static void weight_block(const float *xf, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, int64_t n0) {
    const ahead none = {0};
    if (N - n0 < AVX2_BLOCK) {
        for (int64_t n = n0; n < N; n++)
            for (int64_t m = 0; m < M; m++) tile_1x1(xf, w, bias, y, N, K, m, n, none);
        return;
    }
    const int64_t steps = K / 8, next = n0 + AVX2_BLOCK;
#define AHEAD(c, calls) ahead_slice(w, N, K, next, AVX2_BLOCK, c, calls, steps)
    if (M == 1) {
        tile_1x12(xf, w, bias, y, N, K, 0, n0, AHEAD(0, 1));
    } else if (M < 4) {
        const int64_t calls = 2 * (M / 2 + M % 2);
        for (int64_t j = 0, c = 0; j < AVX2_BLOCK; j += 6) {
            int64_t m = 0;
            for (; m + 2 <= M; m += 2, c++) tile_2x6(xf, w, bias, y, N, K, m, n0 + j, AHEAD(c, calls));
            for (; m < M; m++, c++) tile_1x6(xf, w, bias, y, N, K, m, n0 + j, AHEAD(c, calls));
        }
    } else {
        const int64_t calls = 4 * (M / 4 + M % 4);
        for (int64_t j = 0, c = 0; j < AVX2_BLOCK; j += 3) { /* 3 weight rows (in L1) against x rows in 4s */
            int64_t m = 0;
            for (; m + 4 <= M; m += 4, c++) tile_4x3(xf, w, bias, y, N, K, m, n0 + j, AHEAD(c, calls));
            for (; m < M; m++, c++) tile_1x3(xf, w, bias, y, N, K, m, n0 + j, AHEAD(c, calls));
        }
    }
#undef AHEAD
}
#else
/* Portable fallback (no AVX2): the same sums in float32, one output at a time. */
static void weight_block(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, int64_t n0) {
    const int64_t end = n0 + ROWS_PER_BLOCK < N ? n0 + ROWS_PER_BLOCK : N;
    for (int64_t n = n0; n < end; n++)
        for (int64_t m = 0; m < M; m++) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; k++) sum += bf16_to_f32(x[m * K + k]) * bf16_to_f32(w[n * K + k]);
            store(y, bias, N, m, n, sum);
        }
}
#endif

#if defined(__AMX_BF16__) && defined(__AMX_TILE__)
/* ---- AMX: the same product on the tile unit, over the weight as loaded -----------------------
 * For weights that stay in (N, K) layout, such as the LM head tied to the embedding table;
 * the layers' linears are packed once instead (linear_tiles_bf16.c).
 * Weight rows are the A operand as stored ((N, K) row-major: a tile is 16 rows x 32 columns);
 * x is packed once per call into the B operand's pair-interleaved layout (16 k-pairs x 16 rows
 * x 2). One pass over the weights serves up to 32 rows of x (two B tiles), so decode at any
 * batch up to 32 streams the weights once, at memory speed (~4 TFLOP/s of tile throughput
 * against ~0.2 for the dot-product loop above, which is compute-bound past 4 rows).
 *
 * NOTE: an output is one TDPBF16PS chain over K in 32-column steps whose value depends only on
 * its x row and weight row, never on the tile slot the row lands in or on the other rows: a
 * row's result is the same in every call (tested).
 *
 * Tiles: C(j, b) = tmm(2j + b) for weight sub-block j and x block b; A(j) = tmm(4 + j); B(b) =
 * tmm(6 + b). */
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_ROWS 32 /* x rows per pass */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static int amx_permitted = -1;

int sgl_amx_init(void) { /* once per process: the kernel must let this process use tile data */
    if (amx_permitted < 0) amx_permitted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    return amx_permitted;
}

/* Every tile 16 rows x 64 bytes. NOTE: a static object, so all 64 bytes are defined: built on
 * the stack, the compiler dropped the memset of the unused tiles' fields (it cannot see
 * LDTILECFG read them) and stack garbage there made LDTILECFG fault. */
static const tile_config TILES_16_BY_64 __attribute__((aligned(64))) = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void sgl_amx_configure(void) { _tile_loadconfig(&TILES_16_BY_64); } /* per thread, before tile ops */

/* x (M, K) -> packed[pass][block][chunk][pair][row][2]: each pass holds 32 rows as two B
 * blocks of 16, zeros past M. A row's 32-column chunk is 16 column pairs, scattered 64 bytes
 * apart (one per pair row of the tile). */
static void pack_x(const uint16_t *x, uint16_t *packed, int64_t M, int64_t K) {
    const int64_t chunks = K / 32, passes = (M + AMX_ROWS - 1) / AMX_ROWS;
    if (M % AMX_ROWS) /* the last pass has rows past M: they must be zeros */
        memset(packed + (passes - 1) * 2 * chunks * 512, 0, (size_t)2 * chunks * 512 * sizeof(uint16_t));
    const __m512i pair_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(16));
#pragma omp parallel for schedule(static) if (M * K >= SGL_PARALLEL_MIN)
    for (int64_t m = 0; m < M; m++) {
        const int64_t b = m / 16, r = m % 16; /* b counts blocks of 16 across passes */
        for (int64_t c = 0; c < chunks; c++) {
            uint32_t *dst = (uint32_t *)packed + (b * chunks + c) * 256 + r;
            _mm512_i32scatter_epi32(dst, pair_rows, _mm512_loadu_si512(x + m * K + c * 32), 4);
        }
    }
}

/* 32 weight rows from n0 (a zero-padded copy where fewer are left) against the packed rows. */
static void amx_block(const uint16_t *packed, const uint16_t *a, const uint16_t *bias, uint16_t *y,
                      int64_t M, int64_t N, int64_t K, int64_t m0, int64_t n0) {
    const int64_t chunks = K / 32, stride = K * 2;
    packed += (m0 / 16) * chunks * 512; /* this pass's two blocks */
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int64_t c = 0; c < chunks; c++) {
        _tile_loadd(6, packed + (0 * chunks + c) * 512, 64);
        _tile_loadd(7, packed + (1 * chunks + c) * 512, 64);
        _tile_loadd(4, a + c * 32, stride);
        _tile_loadd(5, a + 16 * K + c * 32, stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[4][16][16]; /* [2j + b][weight row][x row] */
    _tile_stored(0, out[0], 64); _tile_stored(1, out[1], 64);
    _tile_stored(2, out[2], 64); _tile_stored(3, out[3], 64);
    const __m512i column = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(16));
    for (int64_t j = 0; j < 2; j++) { /* 16 weight rows: 16 outputs of each x row */
        const int64_t n = n0 + 16 * j;
        if (n >= N) break;
        const __mmask16 keep = N - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (N - n)) - 1);
        const __m512 b16 = bias ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                      _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(keep, bias + n)), 16))
                                : _mm512_setzero_ps();
        for (int64_t m = m0; m < M && m < m0 + AMX_ROWS; m++) {
            const int64_t b = (m - m0) / 16, r = (m - m0) % 16;
            const __m512 sums = _mm512_add_ps(_mm512_i32gather_ps(column, &out[2 * j + b][0][r], 4), b16);
            _mm256_mask_storeu_epi16(y + m * N + n, keep, (__m256i)_mm512_cvtneps_pbh(sums));
        }
    }
}

/* As sgl_linear_bf16, for K % 32 == 0; packed: ceil(M / 32) * 32 * K bf16 scratch.
 * Each thread takes blocks of 32 weight rows and runs every pass of 32 x rows against one
 * block while it is in cache, so the weights stream from memory once whatever M is. */
void sgl_linear_amx_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, uint16_t *packed) {
    pack_x(x, packed, M, K);
#pragma omp parallel
    {
        sgl_amx_configure();
        uint16_t *pad = NULL;
#pragma omp for schedule(static)
        for (int64_t n0 = 0; n0 < N; n0 += 32) {
            const uint16_t *a = w + n0 * K;
            if (N - n0 < 32) { /* the last rows: a zeroed copy, so tile loads stay in bounds */
                pad = calloc((size_t)32 * K, 2);
                memcpy(pad, a, (size_t)(N - n0) * K * 2);
                a = pad;
            }
            for (int64_t m0 = 0; m0 < M; m0 += AMX_ROWS) amx_block(packed, a, bias, y, M, N, K, m0, n0);
        }
        free(pad);
        _tile_release();
    }
}
#else
int sgl_amx_init(void) { return 0; }
void sgl_linear_amx_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                         int64_t M, int64_t N, int64_t K, uint16_t *packed) {
    (void)packed;
    sgl_linear_bf16(x, w, bias, y, M, N, K);
}
#endif

/* The level this library was built for (kernels/cpu/isa.py's Level). */
int sgl_isa_level(void) {
#if defined(__AMX_BF16__) && defined(__AMX_TILE__) && defined(__AVX512BF16__)
    return 3;
#elif defined(__AVX512BF16__)
    return 2;
#elif defined(SGL_AVX2)
    return 1;
#else
    return 0;
#endif
}

int sgl_has_avx512_bf16(void) {
#ifdef __AVX512BF16__
    return 1;
#else
    return 0;
#endif
}

/* The kernel for a product of this shape, the same one whatever M is (so rows stay
 * invariant): the tile unit where this process may use it and K is a multiple of 32, else
 * the dot-product loop. packed: ceil(M / 32) * 32 * K bf16 scratch. */
void sgl_linear_rows_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                          int64_t M, int64_t N, int64_t K, uint16_t *packed) {
    if (K % 32 == 0 && sgl_amx_init() == 1) sgl_linear_amx_bf16(x, w, bias, y, M, N, K, packed);
    else sgl_linear_bf16(x, w, bias, y, M, N, K);
}

/* x (M, K), w (N, K), bias (N,) or NULL, y (M, N): all bf16, contiguous. */
void sgl_linear_bf16(const uint16_t *x, const uint16_t *w, const uint16_t *bias, uint16_t *y,
                     int64_t M, int64_t N, int64_t K) {
#ifdef AVX2_BLOCK
    float *xf = malloc((size_t)(M * K) * sizeof(float)); /* x widened once, not once per tile */
    if (!xf) abort();
    for (int64_t i = 0; i < M * K; i++) xf[i] = bf16_to_f32(x[i]);
#pragma omp parallel for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += AVX2_BLOCK) weight_block(xf, w, bias, y, M, N, K, n0);
    free(xf);
#else
#pragma omp parallel for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += ROWS_PER_BLOCK) weight_block(x, w, bias, y, M, N, K, n0);
#endif
}
