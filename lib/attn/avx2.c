/* AVX2 + FMA + F16C kernel. Compiled with ISA_FLAGS_avx2 and only called when
 * the dispatcher saw these in cpuid and YMM state enabled by the OS (XGETBV).
 *
 * Same plan as the AVX-512 kernel (see avx512.c), sized for 16 YMM registers:
 *  - keys by tiles of TILE rows, one memory pass per tile shared by every
 *    query head of the group;
 *  - QK: 8 dot products at a time (4 heads x 2 keys, 2 x 4 or 1 x 8), folded
 *    by a transpose-add tree into one vector of 8 logits;
 *  - online softmax per head (running max and sum); raw logits go to the
 *    weights row and are normalised in place at the end;
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

AI __m256 widen(__m128i h, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 elements of a row from element i, widened to f32 (exact). */
AI __m256 ld(const void *row, uint32_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm256_loadu_ps((const float *)row + i);
    return widen(_mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)row + i)), dt);
}

/* Ask for a row of the next tile while this one is computed (see avx512.c). */
AI void prefetch_row(const char *row, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(row + o, _MM_HINT_T1);
    if ((uintptr_t)row & 63) _mm_prefetch(row + bytes - 1, _MM_HINT_T1);
}

/* Lane mask for the first k (< 8 or more) lanes. */
AI __m256i lanes(uint32_t k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k < 8 ? k : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first k (< 8) elements from element i, the rest 0. */
AI __m256 ldm(const void *row, uint32_t i, uint32_t k, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return _mm256_maskload_ps((const float *)row + i, lanes(k));
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

/* Logits of HB heads x KB keys (HB*KB = 8), scaled, into s[h*TILE + j ...]. */
AI void qk_block(const float *q, uint32_t d, const char *const *kr, int HB, int KB, kvc_dtype dt, float scale,
                 float *s, uint32_t j) {
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
    _mm256_store_ps(tmp, _mm256_mul_ps(fold8(acc), _mm256_set1_ps(scale)));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * TILE + j, tmp + h * KB, (size_t)KB * sizeof(float));
}

/* QK for the tile: heads by 4, 2, 1; past the last key the row pointer
 * repeats it, and those logits are never read. The first pass also
 * prefetches the next tile's K rows (t_next of them). */
AI void qk_tile(const float *q, uint32_t G, uint32_t d, const char *kt, size_t rs, uint32_t t, uint32_t t_next,
                kvc_dtype dt, float scale, float *s) {
    const char *kr[8];
    const size_t rb = (size_t)d * (dt == KVC_DTYPE_F32 ? 4 : 2);
    const char *pf = t_next ? kt + (size_t)TILE * rs : kt;
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4)
        for (uint32_t j = 0; j < t; j += 2) {
            UNROLL
            for (int b = 0; b < 2; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 2 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 4, 2, dt, scale, s + (size_t)h * TILE, j);
        }
    if (G - h >= 2) {
        for (uint32_t j = 0; j < t; j += 4) {
            UNROLL
            for (int b = 0; b < 4; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 4 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 2, 4, dt, scale, s + (size_t)h * TILE, j);
        }
        h += 2;
    }
    if (G - h == 1)
        for (uint32_t j = 0; j < t; j += 8) {
            UNROLL
            for (int b = 0; b < 8; b++) kr[b] = kt + (size_t)(j + b < t ? j + b : t - 1) * rs;
            if (h == 0)
                for (uint32_t b = j; b < j + 8 && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
            qk_block(q + (size_t)h * d, d, kr, 1, 8, dt, scale, s + (size_t)h * TILE, j);
        }
}

/* Online softmax step for one head (see avx512.c). */
AI void softmax_tile(float *s, uint32_t t, float *m, float *l, float *corr, float *wrow) {
    __m256 x[TILE / 8];
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    UNROLL
    for (int c = 0; c < TILE / 8; c++) {
        uint32_t lo = (uint32_t)c * 8;
        if (lo + 8 <= t) {
            x[c] = _mm256_loadu_ps(s + lo);
            if (wrow) _mm256_storeu_ps(wrow + lo, x[c]);
        } else if (lo < t) {
            __m256i k = lanes(t - lo);
            x[c] = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_loadu_ps(s + lo), _mm256_castsi256_ps(k));
            if (wrow) _mm256_maskstore_ps(wrow + lo, k, x[c]);
        } else {
            x[c] = _mm256_set1_ps(-INFINITY);
        }
        vmax = _mm256_max_ps(vmax, x[c]);
    }
    float tmax = hmax8(vmax);
    float mnew = tmax > *m ? tmax : *m;
    /* e^(m - mnew), 0 on the first tile (m = -inf); no libm call here */
    *corr = _mm256_cvtss_f32(exp8(_mm256_set1_ps(*m - mnew)));
    __m256 vm = _mm256_set1_ps(mnew), sum = _mm256_setzero_ps();
    UNROLL
    for (int c = 0; c < TILE / 8; c++) {
        __m256 p = exp8(_mm256_sub_ps(x[c], vm));
        _mm256_store_ps(s + c * 8, p);
        sum = _mm256_add_ps(sum, p);
    }
    *l = *l * *corr + hsum8(sum);
    *m = mnew;
}

/* out[h][off..off+8*DC) = out*corr[h] + sum_j p[h][j] * V[j][off..] for HB
 * heads; `masked` handles the last, partial group of columns. */
AI void pv_block(const char *vt, size_t rs, uint32_t t, const float *p, int HB, int DC, uint32_t off, uint32_t d,
                 bool masked, kvc_dtype dt, float *out, const float *corr, uint32_t t_next) {
    const size_t rb = (size_t)d * (dt == KVC_DTYPE_F32 ? 4 : 2);
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
        if (j < t_next) prefetch_row(row + (size_t)TILE * rs, rb);
        __m256 v[4];
        UNROLL
        for (int c = 0; c < DC; c++)
            v[c] = !masked ? ld(row, off + 8 * c, dt)
                           : cnt[c] == 8 ? ld(row, off + 8 * c, dt)
                                         : cnt[c] ? ldm(row, off + 8 * c, cnt[c], dt) : _mm256_setzero_ps();
        UNROLL
        for (int h = 0; h < HB; h++) {
            __m256 pb = _mm256_broadcast_ss(p + (size_t)h * TILE + j);
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

/* t_next: rows of the next tile to prefetch (only the first call does). */
AI void pv_heads(const char *vt, size_t rs, uint32_t t, const float *p, int HB, int DC, uint32_t d, kvc_dtype dt,
                 float *out, const float *corr, uint32_t t_next) {
    const uint32_t w = 8u * (uint32_t)DC;
    uint32_t off = 0;
    for (; d - off >= w; off += w, t_next = 0) pv_block(vt, rs, t, p, HB, DC, off, d, false, dt, out, corr, t_next);
    if (off < d) pv_block(vt, rs, t, p, HB, DC, off, d, true, dt, out, corr, t_next);
}

AI void pv_tile(const char *vt, size_t rs, uint32_t t, uint32_t t_next, const float *s, uint32_t G, uint32_t d,
                kvc_dtype dt, float *out, const float *corr) {
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4, t_next = 0)
        pv_heads(vt, rs, t, s + (size_t)h * TILE, 4, 2, d, dt, out + (size_t)h * d, corr + h, t_next);
    if (G - h >= 2) {
        pv_heads(vt, rs, t, s + (size_t)h * TILE, 2, 4, d, dt, out + (size_t)h * d, corr + h, t_next);
        h += 2;
        t_next = 0;
    }
    if (G - h == 1) pv_heads(vt, rs, t, s + (size_t)h * TILE, 1, 4, d, dt, out + (size_t)h * d, corr + h, t_next);
}

/* out *= 1/l; weights (raw logits) -> exp(w - m) / l. */
static void finish(float *out, uint32_t d, float *w, uint32_t n, float m, float l) {
    float inv = 1.0f / l;
    __m256 vi = _mm256_set1_ps(inv), vm = _mm256_set1_ps(m);
    uint32_t i = 0;
    for (; d - i >= 8; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), vi));
    for (; i < d; i++) out[i] *= inv;
    if (!w) return;
    for (i = 0; n - i >= 8; i += 8)
        _mm256_storeu_ps(w + i, _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(w + i), vm)), vi));
    if (i < n) {
        __m256i k = lanes(n - i);
        _mm256_maskstore_ps(w + i, k, _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(w + i, k), vm)), vi));
    }
}

AI void run(const kvc__attn_job *job, kvc_dtype dt) {
    const uint32_t d = job->d, n = job->n;
    const size_t rs = job->row_stride * (dt == KVC_DTYPE_F32 ? 4 : 2);
    float s[MAXH * TILE] __attribute__((aligned(32)));
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

void kvc__attn_avx2(const kvc__attn_job *job) {
    if (job->dtype == KVC_DTYPE_F16)
        run_f16(job);
    else if (job->dtype == KVC_DTYPE_BF16)
        run_bf16(job);
    else
        run_f32(job);
}
