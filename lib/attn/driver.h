/* The decode-attention driver shared by the SIMD kernels: tile loop, GQA head
 * blocking, online softmax, the weights output and the final normalisation,
 * written once and instantiated by each ISA file (avx2.c, avx512.c, neon.c)
 * with its own inner blocks. Everything here is always-inline, so each ISA
 * and dtype gets a fully specialised kernel, as if written out by hand.
 *
 * Per kv head (one job), keys go by tiles of TILE rows. A tile of K and V is
 * fetched from memory once; every query head of the group then reuses it
 * from L1/L2, so memory traffic is one pass whatever the GQA ratio.
 *  - QK: QK_LANES dot products at a time (4 heads x QK_LANES/4 keys, 2 x
 *    QK_LANES/2 or 1 x QK_LANES) by the ISA's qk_block; the first head block
 *    also prefetches the next tile's K rows.
 *  - Online softmax per head: running max m and sum l; the tile's
 *    probabilities overwrite its logits in the scratch; raw logits go to the
 *    weights row and are normalised in place at the end (no pass over K/V).
 *  - PV: the ISA's pv_block keeps up to 4 heads x pv_cols(...) output floats
 *    in registers across the tile, each V row slice converted once for all
 *    of them, then folds the tile's sum into out with the correction factor
 *    (blocked summation keeps the rounding error ~ (TILE + n/TILE) ulps
 *    instead of n); the first call also prefetches the next tile's V rows.
 *
 * The including file defines, before including this header:
 *  - vf, VW: its f32 vector type and lane count, and v_load, v_store
 *    (unaligned), v_set1, v_add, v_sub, v_mul, v_max, v_hmax, v_hsum, and
 *    v_exp (e^x for x <= 0, -inf -> 0, NaN stays NaN);
 *  - QK_LANES (dot products per qk_block) and QBUF (floats of per-call
 *    scratch for q_prepare, at least 1);
 *  - q_prepare(var, dt, q, G, d, qbuf): the G query rows in the form variant
 *    `var` (nonzero) reads them, in qbuf (the caller chose a variant whose
 *    form fits QBUF for every head block of the job);
 *  - qk_block(var, q, qbuf, d, kr, HB, KB, dt, scale, s, j): HB x KB scaled
 *    logits into s[h * TILE + j + b] (q and qbuf point at the block's first
 *    head), rows kr[0..KB);
 *  - pv_cols(var, HB): output columns one pv_block covers for HB heads;
 *  - pv_block(var, vt, rs, t, p, HB, off, d, masked, dt, out, corr, t_next);
 *  - prefetch_row(row, bytes).
 * `var` is a compile-time constant selecting a variant of the inner blocks
 * (e.g. bf16 by pairs on AVX-512); 0 is the general one. */
#ifndef KVC_ATTN_DRIVER_H
#define KVC_ATTN_DRIVER_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "attn/attn.h"

AI size_t row_bytes(uint32_t d, kvc_dtype dt) { return (size_t)d * (dt == KVC_DTYPE_F32 ? 4 : 2); }

/* QK over t keys for heads [h, h+HB) in blocks of KB keys. Past the tile's
 * last key the row pointer repeats that key; those logits are never read. */
AI void qk_heads(int var, const float *q, const float *qbuf, uint32_t h, int HB, int KB, uint32_t d, const char *kt,
                 size_t rs, uint32_t t, uint32_t t_next, kvc_dtype dt, float scale, float *s) {
    const char *kr[QK_LANES];
    const size_t rb = row_bytes(d, dt);
    const char *pf = kt + (size_t)TILE * rs;
    for (uint32_t j = 0; j < t; j += (uint32_t)KB) {
        UNROLL
        for (int b = 0; b < KB; b++) kr[b] = kt + (size_t)(j + (uint32_t)b < t ? j + (uint32_t)b : t - 1) * rs;
        if (h == 0)
            for (uint32_t b = j; b < j + (uint32_t)KB && b < t_next; b++) prefetch_row(pf + (size_t)b * rs, rb);
        qk_block(var, q + (size_t)h * d, qbuf + (size_t)h * d, d, kr, HB, KB, dt, scale, s + (size_t)h * TILE, j);
    }
}

/* QK for the whole tile: heads by 4, then 2, then 1. */
AI void qk_tile(int var, const float *q, const float *qbuf, uint32_t G, uint32_t d, const char *kt, size_t rs,
                uint32_t t, uint32_t t_next, kvc_dtype dt, float scale, float *s) {
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4) qk_heads(var, q, qbuf, h, 4, QK_LANES / 4, d, kt, rs, t, t_next, dt, scale, s);
    if (G - h >= 2) {
        qk_heads(var, q, qbuf, h, 2, QK_LANES / 2, d, kt, rs, t, t_next, dt, scale, s);
        h += 2;
    }
    if (G - h == 1) qk_heads(var, q, qbuf, h, 1, QK_LANES, d, kt, rs, t, t_next, dt, scale, s);
}

/* Online softmax step for one head: s[0..t) logits in, probabilities
 * relative to the new running max out (0 past t, up to TILE). */
AI void softmax_tile(float *s, uint32_t t, float *m, float *l, float *corr, float *wrow) {
    if (wrow) memcpy(wrow, s, (size_t)t * sizeof(float));
    for (uint32_t j = t; j < TILE; j++) s[j] = -INFINITY; /* only in a partial last tile */
    vf vmax = v_set1(-INFINITY);
    UNROLL
    for (int c = 0; c < TILE / VW; c++) vmax = v_max(vmax, v_load(s + c * VW));
    const float tmax = v_hmax(vmax);
    const float mnew = tmax > *m ? tmax : *m;
    /* e^(m - mnew), 0 on the first tile (m = -inf); no libm call in the
     * hot loop (a call would also spill every live vector register) */
    float cbuf[VW];
    v_store(cbuf, v_exp(v_set1(*m - mnew)));
    *corr = cbuf[0];
    const vf vm = v_set1(mnew);
    vf sum = v_set1(0.0f);
    UNROLL
    for (int c = 0; c < TILE / VW; c++) {
        vf p = v_exp(v_sub(v_load(s + c * VW), vm));
        v_store(s + c * VW, p);
        sum = v_add(sum, p);
    }
    *l = *l * *corr + v_hsum(sum);
    *m = mnew;
}

/* Columns of HB heads by pv_cols; the last, partial group is `masked`.
 * t_next: rows of the next tile to prefetch (only the first call does). */
AI void pv_heads(int var, const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t d, kvc_dtype dt,
                 float *out, const float *corr, uint32_t t_next) {
    const uint32_t w = pv_cols(var, HB);
    uint32_t off = 0;
    for (; d - off >= w; off += w, t_next = 0) pv_block(var, vt, rs, t, p, HB, off, d, false, dt, out, corr, t_next);
    if (off < d) pv_block(var, vt, rs, t, p, HB, off, d, true, dt, out, corr, t_next);
}

AI void pv_tile(int var, const char *vt, size_t rs, uint32_t t, uint32_t t_next, const float *s, uint32_t G,
                uint32_t d, kvc_dtype dt, float *out, const float *corr) {
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4, t_next = 0)
        pv_heads(var, vt, rs, t, s + (size_t)h * TILE, 4, d, dt, out + (size_t)h * d, corr + h, t_next);
    if (G - h >= 2) {
        pv_heads(var, vt, rs, t, s + (size_t)h * TILE, 2, d, dt, out + (size_t)h * d, corr + h, t_next);
        h += 2;
        t_next = 0;
    }
    if (G - h == 1) pv_heads(var, vt, rs, t, s + (size_t)h * TILE, 1, d, dt, out + (size_t)h * d, corr + h, t_next);
}

/* x[0..n) *= a, or x = e^(x - m) * a when `ex`; tails through a vector-sized
 * buffer (never touching memory past n). */
AI void scale_row(float *x, uint32_t n, float a, bool ex, float m) {
    const vf va = v_set1(a), vm = v_set1(m);
    uint32_t i = 0;
    for (; n - i >= VW; i += VW) {
        vf y = v_load(x + i);
        v_store(x + i, v_mul(ex ? v_exp(v_sub(y, vm)) : y, va));
    }
    if (i < n) {
        float buf[VW];
        memset(buf, 0, sizeof buf);
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        vf y = v_load(buf);
        v_store(buf, v_mul(ex ? v_exp(v_sub(y, vm)) : y, va));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

/* out *= 1/l; weights (raw logits) -> exp(w - m) / l. */
AI void finish(float *out, uint32_t d, float *w, uint32_t n, float m, float l) {
    const float inv = 1.0f / l;
    scale_row(out, d, inv, false, 0.0f);
    if (w) scale_row(w, n, inv, true, m);
}

/* Jobs (kv heads, each with at most MAXH query heads) sharing d, n, the
 * row stride and the scale, with inner-block variant `var`. The key tiles
 * are the outer loop: when several jobs come at once (rows of different kv
 * heads interleaved, token-major), one tile of every head is read while its
 * rows sit side by side in memory, so the pass stays sequential. */
AI void drive(const kvc__attn_job *jobs, uint32_t nj, kvc_dtype dt, int var) {
    const uint32_t d = jobs[0].d, n = jobs[0].n;
    const size_t rs = jobs[0].row_stride * (dt == KVC_DTYPE_F32 ? 4 : 2); /* bytes between rows */
    const float scale = jobs[0].scale;
    float s[MAXH * TILE] __attribute__((aligned(64)));
    float qbuf[QBUF] __attribute__((aligned(64)));
    float m[KVC__MAXJ * MAXH], l[KVC__MAXJ * MAXH], corr[MAXH];
    size_t qoff[KVC__MAXJ];
    for (uint32_t x = 0, qo = 0; x < nj; x++) {
        const kvc__attn_job *job = &jobs[x];
        if (var) q_prepare(var, dt, job->q, job->r, d, qbuf + qo);
        qoff[x] = qo;
        qo += job->r * d;
        for (uint32_t h = 0; h < job->r; h++) {
            m[x * MAXH + h] = -INFINITY;
            l[x * MAXH + h] = 0.0f;
        }
        memset(job->out, 0, (size_t)job->r * d * sizeof(float));
    }
    for (uint32_t j0 = 0, t; j0 < n; j0 += t) { /* += t: never wraps past n */
        t = n - j0 < TILE ? n - j0 : TILE;
        const uint32_t rest = n - j0 - t, t_next = rest < TILE ? rest : TILE;
        for (uint32_t x = 0; x < nj; x++) {
            const kvc__attn_job *job = &jobs[x];
            const uint32_t G = job->r;
            const char *kt = (const char *)job->k + (size_t)j0 * rs;
            const char *vt = (const char *)job->v + (size_t)j0 * rs;
            qk_tile(var, job->q, qbuf + qoff[x], G, d, kt, rs, t, t_next, dt, scale, s);
            for (uint32_t h = 0; h < G; h++)
                softmax_tile(s + (size_t)h * TILE, t, &m[x * MAXH + h], &l[x * MAXH + h], &corr[h],
                             job->weights ? job->weights + (size_t)h * job->wstride + j0 : NULL);
            pv_tile(var, vt, rs, t, t_next, s, G, d, dt, job->out, corr);
        }
    }
    for (uint32_t x = 0; x < nj; x++) {
        const kvc__attn_job *job = &jobs[x];
        for (uint32_t h = 0; h < job->r; h++)
            finish(job->out + (size_t)h * d, d, job->weights ? job->weights + (size_t)h * job->wstride : NULL, n,
                   m[x * MAXH + h], l[x * MAXH + h]);
    }
}

#endif
