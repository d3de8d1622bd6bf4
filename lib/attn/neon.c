/* AArch64 NEON kernel (Advanced SIMD is mandatory on AArch64, so the
 * dispatcher selects it at compile time). f16 is widened with vcvt, bf16 by
 * a 16-bit left shift into the top half of each f32 lane (exact).
 *
 * Same plan as the x86 kernels (see avx512.c), sized for 32 Q registers of
 * 4 floats:
 *  - keys by tiles of TILE rows, one memory pass per tile shared by every
 *    query head of the group;
 *  - QK: 16 dot products at a time (4 heads x 4 keys, 2 x 8 or 1 x 16), each
 *    group of 4 folded by two pairwise adds into one vector of 4 logits;
 *  - online softmax per head (running max and sum); raw logits go to the
 *    weights row and are normalised in place at the end;
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

#define TILE 64
#define MAXH 64

/* The register blocks below are arrays indexed by compile-time loops: they
 * must be fully unrolled to live in registers (clang needs its own pragma). */
#if defined(__clang__)
#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
#else
#define AI static inline
#define UNROLL
#endif

AI float32x4_t widen(uint16x4_t h, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* 4 elements of a row from element i, widened to f32 (exact). */
AI float32x4_t ld(const void *row, uint32_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return vld1q_f32((const float *)row + i);
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

/* Logits of HB heads x KB keys (HB*KB = 16), scaled, into s[h*TILE + j ...]. */
AI void qk_block(const float *q, uint32_t d, const char *const *kr, int HB, int KB, kvc_dtype dt, float scale,
                 float *s, uint32_t j) {
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
        vst1q_f32(s + (size_t)(4 * g / KB) * TILE + j + (uint32_t)(4 * g % KB), vmulq_n_f32(x, scale));
    }
}

/* QK for the tile: heads by 4, 2, 1; past the last key the row pointer
 * repeats it, and those logits are never read. The first pass also
 * prefetches the next tile's K rows (t_next of them). */
AI void qk_tile(const float *q, uint32_t G, uint32_t d, const char *kt, size_t rs, uint32_t t, uint32_t t_next,
                kvc_dtype dt, float scale, float *s) {
    const char *kr[16];
    const size_t rb = (size_t)d * (dt == KVC_DTYPE_F32 ? 4 : 2);
    const char *pf = t_next ? kt + (size_t)TILE * rs : kt;
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4)
        for (uint32_t j = 0; j < t; j += 4) {
            UNROLL
            for (int b = 0; b < 4; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 4 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 4, 4, dt, scale, s + (size_t)h * TILE, j);
        }
    if (G - h >= 2) {
        for (uint32_t j = 0; j < t; j += 8) {
            UNROLL
            for (int b = 0; b < 8; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 8 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 2, 8, dt, scale, s + (size_t)h * TILE, j);
        }
        h += 2;
    }
    if (G - h == 1)
        for (uint32_t j = 0; j < t; j += 16) {
            UNROLL
            for (int b = 0; b < 16; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 16 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 1, 16, dt, scale, s + (size_t)h * TILE, j);
        }
}

/* Online softmax step for one head (see avx512.c). */
AI void softmax_tile(float *s, uint32_t t, float *m, float *l, float *corr, float *wrow) {
    if (t < TILE) /* logits past t read as -inf, so their probability is 0 */
        for (uint32_t j = t; j < TILE; j++) s[j] = -INFINITY;
    if (wrow) memcpy(wrow, s, (size_t)t * sizeof(float));
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    UNROLL
    for (int c = 0; c < TILE / 4; c++) vmax = vmaxq_f32(vmax, vld1q_f32(s + 4 * c));
    float tmax = vmaxvq_f32(vmax);
    float mnew = tmax > *m ? tmax : *m;
    /* e^(m - mnew), 0 on the first tile (m = -inf); no libm call here */
    *corr = vgetq_lane_f32(exp4(vdupq_n_f32(*m - mnew)), 0);
    float32x4_t vm = vdupq_n_f32(mnew), sum = vdupq_n_f32(0.0f);
    UNROLL
    for (int c = 0; c < TILE / 4; c++) {
        float32x4_t p = exp4(vsubq_f32(vld1q_f32(s + 4 * c), vm));
        vst1q_f32(s + 4 * c, p);
        sum = vaddq_f32(sum, p);
    }
    *l = *l * *corr + vaddvq_f32(sum);
    *m = mnew;
}

/* out[h][off..off+16) = out*corr[h] + sum_j p[h][j] * V[j][off..] for HB
 * heads; `masked` handles the last, partial group of columns. */
AI void pv_block(const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d, bool masked,
                 kvc_dtype dt, float *out, const float *corr, uint32_t t_next) {
    const size_t rb = (size_t)d * (dt == KVC_DTYPE_F32 ? 4 : 2);
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
        if (j < t_next) prefetch_row(row + (size_t)TILE * rs, rb);
        float32x4_t v[4];
        UNROLL
        for (int c = 0; c < 4; c++)
            v[c] = !masked ? ld(row, off + 4 * c, dt)
                           : cnt[c] == 4 ? ld(row, off + 4 * c, dt)
                                         : cnt[c] ? ldm(row, off + 4 * c, cnt[c], dt) : vdupq_n_f32(0.0f);
        UNROLL
        for (int h = 0; h < HB; h++) {
            const float ph = p[(size_t)h * TILE + j];
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

/* t_next: rows of the next tile to prefetch (only the first call does). */
AI void pv_heads(const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t d, kvc_dtype dt, float *out,
                 const float *corr, uint32_t t_next) {
    uint32_t off = 0;
    for (; d - off >= 16; off += 16, t_next = 0) pv_block(vt, rs, t, p, HB, off, d, false, dt, out, corr, t_next);
    if (off < d) pv_block(vt, rs, t, p, HB, off, d, true, dt, out, corr, t_next);
}

AI void pv_tile(const char *vt, size_t rs, uint32_t t, uint32_t t_next, const float *s, uint32_t G, uint32_t d,
                kvc_dtype dt, float *out, const float *corr) {
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4, t_next = 0)
        pv_heads(vt, rs, t, s + (size_t)h * TILE, 4, d, dt, out + (size_t)h * d, corr + h, t_next);
    if (G - h >= 2) {
        pv_heads(vt, rs, t, s + (size_t)h * TILE, 2, d, dt, out + (size_t)h * d, corr + h, t_next);
        h += 2;
        t_next = 0;
    }
    if (G - h == 1) pv_heads(vt, rs, t, s + (size_t)h * TILE, 1, d, dt, out + (size_t)h * d, corr + h, t_next);
}

/* out *= 1/l; weights (raw logits) -> exp(w - m) / l. */
static void finish(float *out, uint32_t d, float *w, uint32_t n, float m, float l) {
    float inv = 1.0f / l;
    uint32_t i = 0;
    for (; d - i >= 4; i += 4) vst1q_f32(out + i, vmulq_n_f32(vld1q_f32(out + i), inv));
    for (; i < d; i++) out[i] *= inv;
    if (!w) return;
    float32x4_t vm = vdupq_n_f32(m);
    for (i = 0; n - i >= 4; i += 4) vst1q_f32(w + i, vmulq_n_f32(exp4(vsubq_f32(vld1q_f32(w + i), vm)), inv));
    if (i < n) {
        float buf[4] = {0, 0, 0, 0};
        memcpy(buf, w + i, (n - i) * sizeof(float));
        vst1q_f32(buf, vmulq_n_f32(exp4(vsubq_f32(vld1q_f32(buf), vm)), inv));
        memcpy(w + i, buf, (n - i) * sizeof(float));
    }
}

AI void run(const kvc__attn_job *job, kvc_dtype dt) {
    const uint32_t d = job->d, n = job->n;
    const size_t rs = job->row_stride * (dt == KVC_DTYPE_F32 ? 4 : 2);
    float s[MAXH * TILE] __attribute__((aligned(16)));
    float m[MAXH], l[MAXH], corr[MAXH];
    for (uint32_t h0 = 0; h0 < job->r; h0 += MAXH) {
        const uint32_t G = job->r - h0 < MAXH ? job->r - h0 : MAXH;
        const float *q = job->q + (size_t)h0 * d;
        float *out = job->out + (size_t)h0 * d;
        float *w = job->weights ? job->weights + (size_t)h0 * job->wstride : NULL;
        for (uint32_t h = 0; h < G; h++) {
            m[h] = -INFINITY;
            l[h] = 0.0f;
        }
        memset(out, 0, (size_t)G * d * sizeof(float));
        for (uint32_t j0 = 0, t; j0 < n; j0 += t) { /* += t: never wraps past n */
            t = n - j0 < TILE ? n - j0 : TILE;
            const uint32_t rest = n - j0 - t, t_next = rest < TILE ? rest : TILE;
            const char *kt = (const char *)job->k + (size_t)j0 * rs;
            const char *vt = (const char *)job->v + (size_t)j0 * rs;
            qk_tile(q, G, d, kt, rs, t, t_next, dt, job->scale, s);
            for (uint32_t h = 0; h < G; h++)
                softmax_tile(s + (size_t)h * TILE, t, &m[h], &l[h], &corr[h],
                             w ? w + (size_t)h * job->wstride + j0 : NULL);
            pv_tile(vt, rs, t, t_next, s, G, d, dt, out, corr);
        }
        for (uint32_t h = 0; h < G; h++)
            finish(out + (size_t)h * d, d, w ? w + (size_t)h * job->wstride : NULL, n, m[h], l[h]);
    }
}

static void run_f32(const kvc__attn_job *job) { run(job, KVC_DTYPE_F32); }
static void run_f16(const kvc__attn_job *job) { run(job, KVC_DTYPE_F16); }
static void run_bf16(const kvc__attn_job *job) { run(job, KVC_DTYPE_BF16); }

void kvc__attn_neon(const kvc__attn_job *job) {
    if (job->dtype == KVC_DTYPE_F16)
        run_f16(job);
    else if (job->dtype == KVC_DTYPE_BF16)
        run_bf16(job);
    else
        run_f32(job);
}
