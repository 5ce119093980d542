/* bf16 <-> float32, rounding as torch does (to nearest even; NaN stays NaN). */
#ifndef SGL_BF16_H
#define SGL_BF16_H
#include <stdint.h>
#include <string.h>

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* a float rounded to bf16 and back: what a bf16 tensor op stores */
static inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* below this many elements a kernel runs on the calling thread: waking workers costs more */
#define SGL_PARALLEL_MIN 16384
#endif
