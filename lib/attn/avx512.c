/* AVX-512 kernel (F; BW+VL for masked 16-bit loads): the inner blocks of
 * the shared driver (attn/driver.h, which has the plan). Compiled with
 * ISA_FLAGS_avx512 and only called when the dispatcher saw AVX-512 in cpuid
 * and ZMM state enabled by the OS (XGETBV).
 *  - QK: 16 dot products at a time (4 heads x 4 keys, 2 x 8 or 1 x 16) in 16
 *    accumulators, folded by one transpose-add tree whose lanes come out in
 *    accumulator order: about 3 shuffles+adds per dot product.
 *  - PV: up to 4 heads x 64 output floats in registers across the tile.
 *  - bf16 by pairs (variant VAR_PAIRS, below).
 * Tails (head_dim not a multiple of 16, partial tiles) use masked loads,
 * which never touch memory outside the mask. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "attn/attn.h"

#ifndef KVC__PF_HINT
#define KVC__PF_HINT _MM_HINT_T1
#endif

#define VW 16
#define QK_LANES 16
#define QBUF 4096 /* floats of split q for the bf16 pairs variant (all jobs of a call) */
enum { VAR_GENERAL = 0, VAR_PAIRS = 1, VAR_VNNI = 2, VAR_DPBF16 = 3 };
#ifndef KVC__AVX512_EXT
#define KVC__AVX512_EXT 0 /* avx512_ext.c sets it: VNNI and BF16 variants */
#endif

typedef __m512 vf;
AI vf v_load(const float *p) { return _mm512_loadu_ps(p); }
AI void v_store(float *p, vf x) { _mm512_storeu_ps(p, x); }
AI vf v_set1(float x) { return _mm512_set1_ps(x); }
AI vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
AI vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
AI vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
AI vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
AI float v_hmax(vf a) { return _mm512_reduce_max_ps(a); }
AI float v_hsum(vf a) { return _mm512_reduce_add_ps(a); }

/* 16 elements of a row starting at element i, widened to f32 (exact; Q8:
 * the integers, the row's scale is applied by the caller). */
AI __m512 ld(const void *row, uint32_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm512_loadu_ps((const float *)row + i);
    if (dt == KVC_DTYPE_Q8)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)((const int8_t *)row + i))));
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)row + i));
    if (dt == KVC_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Same, lanes outside `m` read as 0 and not accessed. */
AI __m512 ldm(const void *row, uint32_t i, __mmask16 m, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    if (dt == KVC_DTYPE_Q8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)row + i)));
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (dt == KVC_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Ask for a row of the next tile while this one is computed: the DRAM
 * stream then never waits for the core (prefetches never fault). */
AI void prefetch_row(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + o, KVC__PF_HINT);
    if ((uintptr_t)row & 63) _mm_prefetch(row + bytes - 1, KVC__PF_HINT); /* the line the loop missed */
}

AI __mmask16 tail_mask(uint32_t k) { return (__mmask16)(k >= 16 ? 0xffffu : (1u << k) - 1u); }

/* e^x for x <= 0 (what softmax needs): x = n ln2 + r, |r| <= ln2/2, e^r by
 * its Taylor series to degree 7 (truncation < 6e-9 relative), 2^n applied by
 * scalef. Below ln(FLT_MIN) the result is 0 (the true value is < 1.2e-38),
 * as in the AVX2 and NEON kernels: a denormal result costs a microcode
 * assist per vector on Intel cores (measured: a call over 8 keys took 1.9 us,
 * the padding of its partial tile going through here). -inf gives 0, NaN
 * stays NaN. */
AI __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(lo, x); /* NaN in x propagates (second operand) */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417232e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps((__mmask16)~under, p, n);
}

/* Horizontal sums of 16 vectors, lane a of the result = sum of a[a]. */
AI __m512 fold16(const __m512 *a) {
    __m512 b[8], c[4], e[2];
    UNROLL
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] */
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    UNROLL
    for (int i = 0; i < 4; i++) { /* per 128-bit lane: [x, y, z, w] partial sums */
        __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
        c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    UNROLL
    for (int i = 0; i < 2; i++) /* 128-bit lanes [A01, A23, B01, B23] */
        e[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(e[0], e[1], 0x88), _mm512_shuffle_f32x4(e[0], e[1], 0xdd));
}

/* Logits of HB heads (rows q, q+d, ...) x KB keys (rows kr[]), HB*KB = 16,
 * scaled; head h's keys land in s[h*ss + j ...]. */
AI void qk_block_gen(const float *q, uint32_t d, const char *const *kr, int HB, int KB, kvc_dtype dt, float scale,
                 float *s, size_t ss, uint32_t j) {
    __m512 acc[16];
    UNROLL
    for (int a = 0; a < 16; a++) acc[a] = _mm512_setzero_ps();
    uint32_t i = 0;
    for (; d - i >= 16; i += 16) {
        __m512 kv[16];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ld(kr[b], i, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m512 qv = _mm512_loadu_ps(q + (size_t)h * d + i);
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = _mm512_fmadd_ps(qv, kv[b], acc[h * KB + b]);
        }
    }
    if (i < d) {
        __mmask16 m = tail_mask(d - i);
        __m512 kv[16];
        UNROLL
        for (int b = 0; b < KB; b++) kv[b] = ldm(kr[b], i, m, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)h * d + i);
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = _mm512_fmadd_ps(qv, kv[b], acc[h * KB + b]);
        }
    }
    float tmp[16] __attribute__((aligned(64)));
    __m512 sc = _mm512_set1_ps(scale);
    if (dt == KVC_DTYPE_Q8) { /* lane h*KB + b: key b's row scale */
        float ks[16];
        UNROLL
        for (int a = 0; a < 16; a++) ks[a] = scale * kvc__row_scale(kr[a % KB], d, dt);
        sc = _mm512_loadu_ps(ks);
    }
    _mm512_store_ps(tmp, _mm512_mul_ps(fold16(acc), sc));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * ss + j, tmp + h * KB, (size_t)KB * sizeof(float));
}

/* out[h][off..off+16*NC) = out*corr[h] + sum_j p[h][j] * V[j][off..], for HB
 * heads (Q8: V's integers, p carries the row scales); `masked` handles the
 * last, partial group of columns. */
AI void pv_block_gen(const char *vt, size_t rs, uint32_t t, const float *p, int HB, int NC, uint32_t off, uint32_t d,
                     bool masked, kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf, size_t pfb,
                     size_t ss) {
    __m512 acc[4][4];
    __mmask16 mk[4];
    UNROLL
    for (int c = 0; c < NC; c++) {
        uint32_t lo = off + (uint32_t)c * 16;
        mk[c] = lo < d ? tail_mask(d - lo) : 0;
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        UNROLL
        for (int c = 0; c < NC; c++) acc[h][c] = _mm512_setzero_ps();
    }
    uint32_t j = 0;
    if (NC == 1) {
        /* One column group (head_dim <= 16): a row is one FMA per head, so
         * one accumulator per head would be a chain of dependent FMAs, one
         * row per FMA latency. Four rows at a time into four partial sums
         * per head keep the FMA units busy; they are added at the end. */
        __m512 part[4][3];
        UNROLL
        for (int h = 0; h < HB; h++) {
            UNROLL
            for (int r = 0; r < 3; r++) part[h][r] = _mm512_setzero_ps();
        }
        for (; t - j >= 4; j += 4) {
            const char *row = vt + (size_t)j * rs;
            __m512 v[4];
            UNROLL
            for (int r = 0; r < 4; r++) {
                if (j + (uint32_t)r < npf) prefetch_row(pf + (size_t)(j + (uint32_t)r) * rs, pfb);
                v[r] = masked ? ldm(row + (size_t)r * rs, off, mk[0], dt) : ld(row + (size_t)r * rs, off, dt);
            }
            UNROLL
            for (int h = 0; h < HB; h++) {
                const float *ph = p + (size_t)h * ss + j;
                acc[h][0] = _mm512_fmadd_ps(_mm512_set1_ps(ph[0]), v[0], acc[h][0]);
                UNROLL
                for (int r = 1; r < 4; r++)
                    part[h][r - 1] = _mm512_fmadd_ps(_mm512_set1_ps(ph[r]), v[r], part[h][r - 1]);
            }
        }
        UNROLL
        for (int h = 0; h < HB; h++)
            acc[h][0] = _mm512_add_ps(_mm512_add_ps(acc[h][0], part[h][0]), _mm512_add_ps(part[h][1], part[h][2]));
    }
    for (; j < t; j++) {
        const char *row = vt + (size_t)j * rs;
        if (j < npf) prefetch_row(pf + (size_t)j * rs, pfb);
        __m512 v[4];
        UNROLL
        for (int c = 0; c < NC; c++) v[c] = masked ? ldm(row, off + 16 * c, mk[c], dt) : ld(row, off + 16 * c, dt);
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m512 pb = _mm512_set1_ps(p[(size_t)h * ss + j]);
            UNROLL
            for (int c = 0; c < NC; c++) acc[h][c] = _mm512_fmadd_ps(pb, v[c], acc[h][c]);
        }
    }
    UNROLL
    for (int h = 0; h < HB; h++) {
        __m512 cf = _mm512_set1_ps(corr[h]);
        float *o = out + (size_t)h * d + off;
        UNROLL
        for (int c = 0; c < NC; c++) {
            if (masked) {
                __m512 y = _mm512_maskz_loadu_ps(mk[c], o + 16 * c);
                _mm512_mask_storeu_ps(o + 16 * c, mk[c], _mm512_fmadd_ps(y, cf, acc[h][c]));
            } else {
                _mm512_storeu_ps(o + 16 * c, _mm512_fmadd_ps(_mm512_loadu_ps(o + 16 * c), cf, acc[h][c]));
            }
        }
    }
}

/* ---- bf16 by pairs. A 64-byte load holds 32 bf16 as 16 dwords: dword << 16
 * is the even element as f32, dword & 0xffff0000 the odd one, one uop per
 * 16 elements instead of two (zero-extend + shift). Dot products only need q
 * split the same way (done once per pass); PV keeps its sums in even/odd
 * order and interleaves them once per tile. Used when d % 32 == 0 and the
 * split q of every job of the call fits QBUF floats; other shapes take the
 * general path. */
AI __m512 even16(__m512i x) { return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16)); }
AI __m512 odd16(__m512i x) { return _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u))); }

/* qs[h*d + 32c ...]: the 16 even then the 16 odd elements of chunk c of q[h]. */
AI void split_q(float *qs, const float *q, uint32_t G, uint32_t d) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (size_t i = 0; i < (size_t)G * d; i += 32) {
        __m512 lo = _mm512_loadu_ps(q + i), hi = _mm512_loadu_ps(q + i + 16);
        _mm512_store_ps(qs + i, _mm512_permutex2var_ps(lo, ie, hi));
        _mm512_store_ps(qs + i + 16, _mm512_permutex2var_ps(lo, io, hi));
    }
}

AI void qk_block_pairs(const float *qs, uint32_t d, const char *const *kr, int HB, int KB, float scale, float *s,
                       size_t ss, uint32_t j) {
    __m512 acc[16];
    UNROLL
    for (int a = 0; a < 16; a++) acc[a] = _mm512_setzero_ps();
    for (uint32_t i = 0; i < d; i += 32) {
        __m512 qe[4], qo[4];
        UNROLL
        for (int h = 0; h < HB; h++) {
            qe[h] = _mm512_load_ps(qs + (size_t)h * d + i);
            qo[h] = _mm512_load_ps(qs + (size_t)h * d + i + 16);
        }
        UNROLL
        for (int b = 0; b < KB; b++) {
            __m512i x = _mm512_loadu_si512((const void *)((const uint16_t *)(const void *)kr[b] + i));
            __m512 ke = even16(x), ko = odd16(x);
            UNROLL
            for (int h = 0; h < HB; h++) {
                acc[h * KB + b] = _mm512_fmadd_ps(qe[h], ke, acc[h * KB + b]);
                acc[h * KB + b] = _mm512_fmadd_ps(qo[h], ko, acc[h * KB + b]);
            }
        }
    }
    float tmp[16] __attribute__((aligned(64)));
    _mm512_store_ps(tmp, _mm512_mul_ps(fold16(acc), _mm512_set1_ps(scale)));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * ss + j, tmp + h * KB, (size_t)KB * sizeof(float));
}

/* As pv_block over columns [off, off + 64) (or [off, off + 32) when `half`),
 * sums in even/odd order: acc[h][2g] holds columns off+32g+2i, acc[h][2g+1]
 * columns off+32g+2i+1. */
AI void pv_block_pairs(const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d,
                       bool half, float *out, const float *corr, const char *pf, uint32_t npf, size_t pfb, size_t ss) {
    const int NG = half ? 1 : 2;
    __m512 acc[4][4];
    UNROLL
    for (int h = 0; h < HB; h++) {
        UNROLL
        for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    }
    for (uint32_t j = 0; j < t; j++) {
        const char *row = vt + (size_t)j * rs;
        if (j < npf) prefetch_row(pf + (size_t)j * rs, pfb);
        __m512 v[4];
        UNROLL
        for (int g = 0; g < NG; g++) {
            __m512i x = _mm512_loadu_si512((const void *)((const uint16_t *)(const void *)row + off + 32 * g));
            v[2 * g] = even16(x);
            v[2 * g + 1] = odd16(x);
        }
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m512 pb = _mm512_set1_ps(p[(size_t)h * ss + j]);
            UNROLL
            for (int c = 0; c < 2 * NG; c++) acc[h][c] = _mm512_fmadd_ps(pb, v[c], acc[h][c]);
        }
    }
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    UNROLL
    for (int h = 0; h < HB; h++) {
        __m512 cf = _mm512_set1_ps(corr[h]);
        float *o = out + (size_t)h * d + off;
        UNROLL
        for (int g = 0; g < NG; g++) {
            __m512 a = _mm512_permutex2var_ps(acc[h][2 * g], lo, acc[h][2 * g + 1]);
            __m512 b = _mm512_permutex2var_ps(acc[h][2 * g], hi, acc[h][2 * g + 1]);
            _mm512_storeu_ps(o + 32 * g, _mm512_fmadd_ps(_mm512_loadu_ps(o + 32 * g), cf, a));
            _mm512_storeu_ps(o + 32 * g + 16, _mm512_fmadd_ps(_mm512_loadu_ps(o + 32 * g + 16), cf, b));
        }
    }
}

#if KVC__AVX512_EXT
#include "attn/avx512_ext.h"
#endif

/* ---- the driver's entry points */

AI size_t q_stride(int var, uint32_t d) {
#if KVC__AVX512_EXT
    if (var == VAR_VNNI) return q8_stride(d);
#endif
    (void)var;
    return d;
}

AI void q_prepare(int var, kvc_dtype dt, const float *q, uint32_t G, uint32_t d, float *qbuf) {
    (void)dt;
#if KVC__AVX512_EXT
    if (var == VAR_VNNI) {
        for (uint32_t h = 0; h < G; h++) quantize_q(qbuf + h * q8_stride(d), q + (size_t)h * d, d);
        return;
    }
    if (var == VAR_DPBF16) {
        split_q_bf16(qbuf, q, G, d);
        return;
    }
#endif
    (void)var;
    split_q(qbuf, q, G, d);
}

AI void qk_block(int var, const float *q, const float *qbuf, uint32_t d, const char *const *kr, int HB, int KB,
                 kvc_dtype dt, float scale, float *s, size_t ss, uint32_t j) {
#if KVC__AVX512_EXT
    if (var == VAR_VNNI) {
        qk_block_vnni(qbuf, d, kr, HB, KB, scale, s, ss, j);
        return;
    }
    if (var == VAR_DPBF16) {
        qk_block_dpbf16(qbuf, d, kr, HB, KB, scale, s, ss, j);
        return;
    }
#endif
    if (var == VAR_PAIRS)
        qk_block_pairs(qbuf, d, kr, HB, KB, scale, s, ss, j);
    else
        qk_block_gen(q, d, kr, HB, KB, dt, scale, s, ss, j);
}

AI uint32_t pv_cols(int var, int HB) {
    (void)var;
    (void)HB;
    return 64;
}

/* For the pairs variant `masked` means the last 32 columns (d % 32 == 0). */
AI void pv_block(int var, const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t off, uint32_t d,
                 bool masked, kvc_dtype dt, float *out, const float *corr, const char *pf, uint32_t npf,
                 size_t pfb, size_t ss) {
    if (var == VAR_PAIRS || var == VAR_DPBF16)
        pv_block_pairs(vt, rs, t, p, HB, off, d, masked, out, corr, pf, npf, pfb, ss);
    else if (masked && d - off <= 16) /* small head_dim (or tail): no registers of zeros */
        pv_block_gen(vt, rs, t, p, HB, 1, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
    else if (masked && d - off <= 32)
        pv_block_gen(vt, rs, t, p, HB, 2, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
    else
        pv_block_gen(vt, rs, t, p, HB, 4, off, d, masked, dt, out, corr, pf, npf, pfb, ss);
}

AI vf v_exp(vf x) { return exp16(x); }

#include "attn/driver.h"

/* ext: 0 plain AVX-512; 1 with VNNI (Q8 dot products); 2 also with BF16
 * (bf16 dot products). A variant runs only where the per-call q scratch of
 * every job fits QBUF. */
AI void run(const kvc__attn_job *jobs, uint32_t n, int ext) {
    size_t qn = 0, q8n = 0; /* scratch for every job's q in each variant's form */
    for (uint32_t x = 0; x < n; x++) {
        qn += (size_t)jobs[x].r * jobs[x].d;
        q8n += (size_t)jobs[x].r * ((((size_t)jobs[x].d + 31) & ~(size_t)31) / 2 + 16);
    }
    (void)q8n;
#if KVC__AVX512_EXT
    if (ext >= 1 && jobs[0].dtype == KVC_DTYPE_Q8 && jobs[0].d <= Q8_MAX_D && q8n <= QBUF) {
        drive(jobs, n, KVC_DTYPE_Q8, VAR_VNNI);
        return;
    }
    if (ext >= 2 && jobs[0].dtype == KVC_DTYPE_BF16 && jobs[0].d % 32 == 0 && qn <= QBUF) {
        drive(jobs, n, KVC_DTYPE_BF16, VAR_DPBF16);
        return;
    }
#endif
    (void)ext;
    if (jobs[0].dtype == KVC_DTYPE_F16)
        drive(jobs, n, KVC_DTYPE_F16, VAR_GENERAL);
    else if (jobs[0].dtype == KVC_DTYPE_BF16 && jobs[0].d % 32 == 0 && qn <= QBUF)
        drive(jobs, n, KVC_DTYPE_BF16, VAR_PAIRS);
    else if (jobs[0].dtype == KVC_DTYPE_BF16)
        drive(jobs, n, KVC_DTYPE_BF16, VAR_GENERAL);
    else if (jobs[0].dtype == KVC_DTYPE_Q8)
        drive(jobs, n, KVC_DTYPE_Q8, VAR_GENERAL);
    else
        drive(jobs, n, KVC_DTYPE_F32, VAR_GENERAL);
}

#if KVC__AVX512_EXT
void kvc__attn_avx512_vnni(const kvc__attn_job *jobs, uint32_t n) { run(jobs, n, 1); }
void kvc__attn_avx512_bf16(const kvc__attn_job *jobs, uint32_t n) { run(jobs, n, 2); }
#else
void kvc__attn_avx512(const kvc__attn_job *jobs, uint32_t n) { run(jobs, n, 0); }
#endif
