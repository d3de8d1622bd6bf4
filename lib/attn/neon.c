/* AArch64 NEON kernel (Advanced SIMD is mandatory on AArch64, so the
 * dispatcher selects it at compile time). f16 is widened with vcvt, bf16 by
 * a 16-bit left shift into the top half of each f32 lane (exact).
 *
 * The inner blocks of the shared driver (attn/driver.h, which has the plan),
 * sized for 32 Q registers of 4 floats:
 *  - QK: 16 dot products at a time (4 heads x 4 keys, 2 x 8 or 1 x 16), each
 *    group of 4 folded by two pairwise adds into one vector of 4 logits;
 *  - PV: 4 heads x 16 output floats (or 2 x 16, 1 x 16) accumulated in
 *    registers across the tile with by-element FMAs, then folded into out
 *    with the correction factor.
 * NEON has no masked loads: row tails shorter than 4 elements are copied
 * into a zeroed buffer, so nothing past the last element is read. */
#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "attn/attn.h"

#define VW 4
#define QK_LANES 16
#define QBUF 1

AI float32x4_t widen(uint16x4_t h, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* 4 elements of a row from element i, widened to f32 (exact). */
AI float32x4_t ld(const void *row, uint32_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return vld1q_f32((const float *)row + i);
    if (dt == KVC_DTYPE_Q8) { /* the integers; the caller applies the row's scale */
        int32_t w;
        memcpy(&w, (const int8_t *)row + i, 4);
        int16x8_t x = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w)));
        return vcvtq_f32_s32(vmovl_s16(vget_low_s16(x)));
    }
    return widen(vld1_u16((const uint16_t *)row + i), dt);
}

/* Ask for a row of the next tile while this one is computed (see avx512.c);
 * locality 2 asks for L2. Rows need not be line-aligned: also touch the last byte. */
AI void prefetch_row(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(row + o, 0, 2);
    __builtin_prefetch(row + bytes - 1, 0, 2);
}

/* The first k (< 4) elements from element i, the rest 0. */
AI float32x4_t ldm(const void *row, uint32_t i, uint32_t k, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) {
        float buf[4] = {0, 0, 0, 0};
        memcpy(buf, (const float *)row + i, (size_t)k * 4);
        return vld1q_f32(buf);
    }
    if (dt == KVC_DTYPE_Q8) {
        int8_t b8[4] = {0, 0, 0, 0};
        memcpy(b8, (const int8_t *)row + i, k);
        return ld(b8, 0, dt);
    }
    uint16_t buf[4] = {0, 0, 0, 0};
    memcpy(buf, (const uint16_t *)row + i, (size_t)k * 2);
    return widen(vld1_u16(buf), dt);
}

/* e^x for x <= 0: x = n ln2 + r, |r| <= ln2/2, Taylor series of e^r to
 * degree 7 (truncation < 6e-9 relative), 2^n built in the exponent field.
 * Below ln(FLT_MIN) the result is 0; -inf gives 0 and NaN stays NaN. */
AI float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33654f);
    uint32x4_t under = vcltq_f32(x, lo);
    x = vmaxq_f32(x, lo); /* FMAX propagates NaN */
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606820309417232e-6f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* n >= -126 after the clamp, so n + 127 is a valid biased exponent */
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), under));
}

/* Logits of HB heads x KB keys (HB*KB = 16), scaled, into s[h*ss + j ...]. */
AI void qk_block_gen(const float *q, uint32_t d, const char *const *kr, int HB, int KB, kvc_dtype dt, float scale,
                 float *s, size_t ss, uint32_t j) {
    float32x4_t acc[16];
    UNROLL
    for (int a = 0; a < 16; a++) acc[a] = vdupq_n_f32(0.0f);
    uint32_t i = 0;
    for (; d - i >= 4; i += 4) {
        float32x4_t kv[16];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ld(kr[b], i, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            float32x4_t qv = vld1q_f32(q + (size_t)h * d + i);
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = vfmaq_f32(acc[h * KB + b], qv, kv[b]);
        }
    }
    if (i < d) {
        float32x4_t kv[16];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ldm(kr[b], i, d - i, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            float32x4_t qv = ldm(q + (size_t)h * d, i, d - i, KVC_DTYPE_F32);
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = vfmaq_f32(acc[h * KB + b], qv, kv[b]);
        }
    }
    UNROLL
    for (int g = 0; g < 4; g++) { /* accumulators 4g..4g+3: one head, 4 consecutive keys */
        float32x4_t x = vpaddq_f32(vpaddq_f32(acc[4 * g], acc[4 * g + 1]), vpaddq_f32(acc[4 * g + 2], acc[4 * g + 3]));
        float32x4_t sc = vdupq_n_f32(scale);
        if (dt == KVC_DTYPE_Q8) { /* keys 4g % KB .. +3: their row scales */
            float ks[4];
            UNROLL
            for (int b = 0; b < 4; b++) ks[b] = scale * kvc__row_scale(kr[4 * g % KB + b], d, dt);
            sc = vld1q_f32(ks);
        }
        vst1q_f32(s + (size_t)(4 * g / KB) * ss + j + (uint32_t)(4 * g % KB), vmulq_f32(x, sc));
    }
}

/* out[h][off..off+16) = out*corr[h] + sum_j p[h][j] * V[j][off..] for HB
 * heads (Q8: V's integers, p carries the row scales); `masked` handles the
 * last, partial group of columns. */
AI void pv_block_gen(const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d, bool masked,
                 kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf, size_t pfb, size_t ss) {
    float32x4_t acc[4][4];
    uint32_t cnt[4];
    UNROLL
    for (int c = 0; c < 4; c++) {
        uint32_t lo = off + (uint32_t)c * 4;
        cnt[c] = lo < d ? (d - lo < 4 ? d - lo : 4) : 0;
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        UNROLL
        for (int c = 0; c < 4; c++) acc[h][c] = vdupq_n_f32(0.0f);
    }
    for (uint32_t j = 0; j < t; j++) {
        const char *row = vt + (size_t)j * rs;
        if (j < npf) prefetch_row(pf + (size_t)j * rs, pfb);
        float32x4_t v[4];
        UNROLL
        for (int c = 0; c < 4; c++)
            v[c] = !masked ? ld(row, off + 4 * c, dt)
                           : cnt[c] == 4 ? ld(row, off + 4 * c, dt)
                                         : cnt[c] ? ldm(row, off + 4 * c, cnt[c], dt) : vdupq_n_f32(0.0f);
        UNROLL
        for (int h = 0; h < HB; h++) {
            const float ph = p[(size_t)h * ss + j];
            UNROLL
            for (int c = 0; c < 4; c++) acc[h][c] = vfmaq_n_f32(acc[h][c], v[c], ph);
        }
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        float *o = out + (size_t)h * d + off;
        UNROLL
        for (int c = 0; c < 4; c++) {
            if (!masked || cnt[c] == 4) {
                vst1q_f32(o + 4 * c, vfmaq_n_f32(acc[h][c], vld1q_f32(o + 4 * c), corr[h]));
            } else if (cnt[c]) {
                float a[4];
                vst1q_f32(a, acc[h][c]);
                for (uint32_t i = 0; i < cnt[c]; i++) o[4 * c + i] = o[4 * c + i] * corr[h] + a[i];
            }
        }
    }
}

/* ---- the driver's entry points */

typedef float32x4_t vf;
AI vf v_load(const float *p) { return vld1q_f32(p); }
AI void v_store(float *p, vf x) { vst1q_f32(p, x); }
AI vf v_set1(float x) { return vdupq_n_f32(x); }
AI vf v_add(vf a, vf b) { return vaddq_f32(a, b); }
AI vf v_sub(vf a, vf b) { return vsubq_f32(a, b); }
AI vf v_mul(vf a, vf b) { return vmulq_f32(a, b); }
AI vf v_max(vf a, vf b) { return vmaxq_f32(a, b); }
AI float v_hmax(vf a) { return vmaxvq_f32(a); }
AI float v_hsum(vf a) { return vaddvq_f32(a); }
AI vf v_exp(vf x) { return exp4(x); }

AI size_t q_stride(int var, uint32_t d) {
    (void)var;
    return d;
}

AI void q_prepare(int var, kvc_dtype dt, const float *q, uint32_t G, uint32_t d, float *qbuf) {
    (void)var, (void)dt, (void)q, (void)G, (void)d, (void)qbuf; /* no variant needs another q form */
}

AI void qk_block(int var, const float *q, const float *qbuf, uint32_t d, const char *const *kr, int HB, int KB,
                 kvc_dtype dt, float scale, float *s, size_t ss, uint32_t j) {
    (void)var, (void)qbuf;
    qk_block_gen(q, d, kr, HB, KB, dt, scale, s, ss, j);
}

AI uint32_t pv_cols(int var, int HB) {
    (void)var, (void)HB;
    return 16;
}

AI void pv_block(int var, const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d,
                 bool masked, kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf,
                 size_t pfb, size_t ss) {
    (void)var;
    pv_block_gen(vt, rs, t, p, HB, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
}

#include "attn/driver.h"

void kvc__attn_neon(const kvc__attn_job *jobs, uint32_t n) {
    if (jobs[0].dtype == KVC_DTYPE_F16)
        drive(jobs, n, KVC_DTYPE_F16, 0);
    else if (jobs[0].dtype == KVC_DTYPE_BF16)
        drive(jobs, n, KVC_DTYPE_BF16, 0);
    else if (jobs[0].dtype == KVC_DTYPE_Q8)
        drive(jobs, n, KVC_DTYPE_Q8, 0);
    else
        drive(jobs, n, KVC_DTYPE_F32, 0);
}
