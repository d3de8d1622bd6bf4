/* Scalar f16/bf16 <-> f32 conversions (round-to-nearest-even), shared by the
 * core and the scalar kernel. SIMD kernels use their ISA's instructions. */
#ifndef KVC_CONVERT_H
#define KVC_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline uint32_t kvc__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float kvc__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float kvc__bf16_to_f32(uint16_t h) { return kvc__bits_f32((uint32_t)h << 16); }

static inline uint16_t kvc__f32_to_bf16(float f) {
    uint32_t u = kvc__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float kvc__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return kvc__bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* subnormal: man * 2^-24, exact in f32 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return kvc__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t kvc__f32_to_f16(float f) {
    uint32_t u = kvc__f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to Inf */
    if (a < 0x38800000u) {
        /* subnormal or zero in f16: scale so the integer part is the mantissa,
         * and let the FPU round to nearest even */
        float m = kvc__bits_f32(a) * 16777216.0f; /* * 2^24 */
        uint32_t r = (uint32_t)m;
        float frac = m - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t e = (a >> 23) - 112u, man = a & 0x7fffffu;
    uint32_t h = (e << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

#endif
