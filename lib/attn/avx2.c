/* AVX2 + FMA + F16C kernel. Compiled with ISA_FLAGS_avx2 and only called when
 * the dispatcher saw these in cpuid and YMM state enabled by the OS (XGETBV).
 *
 * The inner blocks of the shared driver (attn/driver.h, which has the plan),
 * sized for 16 YMM registers:
 *  - QK: 8 dot products at a time (4 heads x 2 keys, 2 x 4 or 1 x 8), folded
 *    by a transpose-add tree into one vector of 8 logits;
 *  - PV: 4 heads x 16 output floats (or 2 x 32, 1 x 32) accumulated in
 *    registers across the tile, then folded into out with the correction.
 * Tails: f32 uses maskload/maskstore (no access outside the mask); 16-bit
 * tails are copied into a zeroed 8-element buffer first. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "attn/attn.h"

#ifndef KVC__PF_HINT
#define KVC__PF_HINT _MM_HINT_T1
#endif

#define VW 8
#define QK_LANES 8
#define QBUF 1

AI __m256 widen(__m128i h, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 elements of a row from element i, widened to f32 (exact). */
AI __m256 ld(const void *row, uint32_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm256_loadu_ps((const float *)row + i);
    if (dt == KVC_DTYPE_Q8) /* the integers; the caller applies the row's scale */
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)((const int8_t *)row + i))));
    return widen(_mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)row + i)), dt);
}

/* Ask for a row of the next tile while this one is computed (see avx512.c). */
AI void prefetch_row(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + o, KVC__PF_HINT);
    if ((uintptr_t)row & 63) _mm_prefetch(row + bytes - 1, KVC__PF_HINT);
}

/* Lane mask for the first k (< 8 or more) lanes. */
AI __m256i lanes(uint32_t k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k < 8 ? k : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first k (< 8) elements from element i, the rest 0. */
AI __m256 ldm(const void *row, uint32_t i, uint32_t k, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm256_maskload_ps((const float *)row + i, lanes(k));
    if (dt == KVC_DTYPE_Q8) {
        int8_t b8[16] = {0};
        memcpy(b8, (const int8_t *)row + i, k);
        return ld(b8, 0, dt);
    }
    uint16_t buf[8] = {0};
    memcpy(buf, (const uint16_t *)row + i, (size_t)k * 2);
    return widen(_mm_loadu_si128((const __m128i *)(const void *)buf), dt);
}

/* e^x for x <= 0: x = n ln2 + r, |r| <= ln2/2, Taylor series of e^r to
 * degree 7 (truncation < 6e-9 relative), 2^n built in the exponent field.
 * Below ln(FLT_MIN) the result is 0 (the true value is < 1.2e-38); -inf
 * gives 0 and NaN stays NaN. */
AI __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(lo, x); /* NaN propagates (second operand) */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606820309417232e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* n >= -126 after the clamp, so n + 127 is a valid biased exponent */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AI float hmax8(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

AI float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* Horizontal sums of 8 vectors: lane a of the result = sum of a[a]. */
AI __m256 fold8(const __m256 *a) {
    __m256 b[4], c[2];
    UNROLL
    for (int i = 0; i < 4; i++) /* per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] */
        b[i] = _mm256_add_ps(_mm256_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm256_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    UNROLL
    for (int i = 0; i < 2; i++) { /* per 128-bit lane: [x, y, z, w] partial sums */
        __m256d x = _mm256_castps_pd(b[2 * i]), y = _mm256_castps_pd(b[2 * i + 1]);
        c[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(x, y)), _mm256_castpd_ps(_mm256_unpackhi_pd(x, y)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(c[0], c[1], 0x20), _mm256_permute2f128_ps(c[0], c[1], 0x31));
}

/* Logits of HB heads x KB keys (HB*KB = 8), scaled, into s[h*ss + j ...]. */
AI void qk_block_gen(const float *q, uint32_t d, const char *const *kr, int HB, int KB, kvc_dtype dt, float scale,
                 float *s, size_t ss, uint32_t j) {
    __m256 acc[8];
    UNROLL
    for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; d - i >= 8; i += 8) {
        __m256 kv[8];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ld(kr[b], i, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m256 qv = _mm256_loadu_ps(q + (size_t)h * d + i);
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = _mm256_fmadd_ps(qv, kv[b], acc[h * KB + b]);
        }
    }
    if (i < d) {
        __m256 kv[8];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ldm(kr[b], i, d - i, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m256 qv = _mm256_maskload_ps(q + (size_t)h * d + i, lanes(d - i));
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = _mm256_fmadd_ps(qv, kv[b], acc[h * KB + b]);
        }
    }
    float tmp[8] __attribute__((aligned(32)));
    __m256 sc = _mm256_set1_ps(scale);
    if (dt == KVC_DTYPE_Q8) { /* lane h*KB + b: key b's row scale */
        float ks[8];
        UNROLL
        for (int a = 0; a < 8; a++) ks[a] = scale * kvc__row_scale(kr[a % KB], d, dt);
        sc = _mm256_loadu_ps(ks);
    }
    _mm256_store_ps(tmp, _mm256_mul_ps(fold8(acc), sc));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * ss + j, tmp + h * KB, (size_t)KB * sizeof(float));
}

/* out[h][off..off+8*DC) = out*corr[h] + sum_j p[h][j] * V[j][off..] for HB
 * heads (Q8: V's integers, p carries the row scales); `masked` handles the
 * last, partial group of columns. */
AI void pv_block_gen(const char *vt, size_t rs, uint32_t t, const float *p, int HB, int DC, uint32_t off, uint32_t d,
                 bool masked, kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf, size_t pfb,
                 size_t ss) {
    __m256 acc[4][4];
    uint32_t cnt[4];
    UNROLL
    for (int c = 0; c < DC; c++) {
        uint32_t lo = off + (uint32_t)c * 8;
        cnt[c] = lo < d ? (d - lo < 8 ? d - lo : 8) : 0;
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        UNROLL
        for (int c = 0; c < DC; c++) acc[h][c] = _mm256_setzero_ps();
    }
    for (uint32_t j = 0; j < t; j++) {
        const char *row = vt + (size_t)j * rs;
        if (j < npf) prefetch_row(pf + (size_t)j * rs, pfb);
        __m256 v[4];
        UNROLL
        for (int c = 0; c < DC; c++)
            v[c] = !masked ? ld(row, off + 8 * c, dt)
                           : cnt[c] == 8 ? ld(row, off + 8 * c, dt)
                                         : cnt[c] ? ldm(row, off + 8 * c, cnt[c], dt) : _mm256_setzero_ps();
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m256 pb = _mm256_set1_ps(p[(size_t)h * ss + j]);
            UNROLL
            for (int c = 0; c < DC; c++) acc[h][c] = _mm256_fmadd_ps(pb, v[c], acc[h][c]);
        }
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        __m256 cf = _mm256_set1_ps(corr[h]);
        float *o = out + (size_t)h * d + off;
        UNROLL
        for (int c = 0; c < DC; c++) {
            if (!masked || cnt[c] == 8) {
                _mm256_storeu_ps(o + 8 * c, _mm256_fmadd_ps(_mm256_loadu_ps(o + 8 * c), cf, acc[h][c]));
            } else if (cnt[c]) {
                __m256i k = lanes(cnt[c]);
                __m256 y = _mm256_maskload_ps(o + 8 * c, k);
                _mm256_maskstore_ps(o + 8 * c, k, _mm256_fmadd_ps(y, cf, acc[h][c]));
            }
        }
    }
}

/* ---- the driver's entry points */

typedef __m256 vf;
AI vf v_load(const float *p) { return _mm256_loadu_ps(p); }
AI void v_store(float *p, vf x) { _mm256_storeu_ps(p, x); }
AI vf v_set1(float x) { return _mm256_set1_ps(x); }
AI vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
AI vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
AI vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
AI vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
AI float v_hmax(vf a) { return hmax8(a); }
AI float v_hsum(vf a) { return hsum8(a); }
AI vf v_exp(vf x) { return exp8(x); }

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

/* 4 heads x 2 vectors, or 2 and 1 heads x 4 vectors: 8 or 4 accumulators + V */
AI uint32_t pv_cols(int var, int HB) {
    (void)var;
    return HB == 4 ? 16 : 32;
}

AI void pv_block(int var, const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d,
                 bool masked, kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf,
                 size_t pfb, size_t ss) {
    (void)var;
    if (masked && d - off <= 8) /* small head_dim (or tail): no registers of zeros */
        pv_block_gen(vt, rs, t, p, HB, 1, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
    else if (masked && d - off <= 16)
        pv_block_gen(vt, rs, t, p, HB, 2, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
    else
        pv_block_gen(vt, rs, t, p, HB, HB == 4 ? 2 : 4, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
}

#include "attn/driver.h"

void kvc__attn_avx2(const kvc__attn_job *jobs, uint32_t n) {
    if (jobs[0].dtype == KVC_DTYPE_F16)
        drive(jobs, n, KVC_DTYPE_F16, 0);
    else if (jobs[0].dtype == KVC_DTYPE_BF16)
        drive(jobs, n, KVC_DTYPE_BF16, 0);
    else if (jobs[0].dtype == KVC_DTYPE_Q8)
        drive(jobs, n, KVC_DTYPE_Q8, 0);
    else
        drive(jobs, n, KVC_DTYPE_F32, 0);
}
