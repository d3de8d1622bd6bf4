/* The decode-attention driver shared by the SIMD kernels: tile loop, GQA head
 * blocking, online softmax, the weights output and the final normalisation,
 * written once and instantiated by each ISA file (avx2.c, avx512.c, neon.c)
 * with its own inner blocks. Everything here is always-inline, so each ISA
 * and dtype gets a fully specialised kernel, as if written out by hand.
 *
 * Per kv head (one job), keys go by chunks (see drive()), each read in
 * three passes, QK, softmax, PV, by tiles of TILE rows. Every query head of
 * the group uses a tile while it is in L1/L2, so memory traffic is one pass
 * over K and V whatever the GQA ratio.
 *  - QK: QK_LANES dot products at a time (4 heads x QK_LANES/4 keys, 2 x
 *    QK_LANES/2 or 1 x QK_LANES) by the ISA's qk_block, logits into a score
 *    scratch; the first head block prefetches what is read next.
 *  - Softmax per head over the chunk: running max m and sum l (online across
 *    chunks); probabilities overwrite the logits in the scratch; raw logits
 *    go to the weights row and are normalised in place at the end (no pass
 *    over K/V).
 *  - PV: the ISA's pv_block keeps up to 4 heads x pv_cols(...) output floats
 *    in registers across a tile, each V row slice converted once for all of
 *    them, then folds the tile's sum into out (with the chunk's correction
 *    factor on its first tile): blocked summation keeps the rounding error
 *    ~ (TILE + n/TILE) ulps instead of n.
 *
 * The including file defines, before including this header:
 *  - vf, VW: its f32 vector type and lane count, and v_load, v_store
 *    (unaligned), v_set1, v_add, v_sub, v_mul, v_max, v_hmax, v_hsum, and
 *    v_exp (e^x for x <= 0, -inf -> 0, NaN stays NaN);
 *  - QK_LANES (dot products per qk_block) and QBUF (floats of per-call
 *    scratch for q_prepare, at least 1); q_stride(var, d): floats of that
 *    scratch per query head (d where a variant keeps q as it is);
 *  - q_prepare(var, dt, q, G, d, qbuf): the G query rows in the form variant
 *    `var` (nonzero) reads them, in qbuf (the caller chose a variant whose
 *    form fits QBUF for every head block of the job);
 *  - qk_block(var, q, qbuf, d, kr, HB, KB, dt, scale, s, ss, j): HB x KB
 *    scaled logits into s[h * ss + j + b] (q and qbuf point at the block's
 *    first head), rows kr[0..KB);
 *  - pv_cols(var, HB): output columns one pv_block covers for HB heads;
 *  - pv_block(var, vt, rs, t, p, HB, off, d, masked, dt, out, corr, pf, npf,
 *    pfb, ss): out[h][off..] = out*corr[h] + sum_j p[h*ss + j] V[j][off..]
 *    over t rows, prefetching pfb bytes of each of npf rows from pf (rs
 *    apart) on the way (Q8: V[j] is the row's integers, p already carries
 *    the row's scale);
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

AI size_t row_bytes(uint32_t d, kvc_dtype dt) { return kvc__row_bytes(dt, d); }

/* QK over t keys for heads [h, h+HB) in blocks of KB keys, logits into
 * s[h * ss + j]. Past the tile's last key the row pointer repeats that key;
 * those logits are never read. The first head block also prefetches npf
 * rows from pf (rs apart): what the pass after this tile reads first. */
AI void qk_heads(int var, const float *q, const float *qbuf, uint32_t h, int HB, int KB, uint32_t d, const char *kt,
                 size_t rs, uint32_t t, const char *pf, uint32_t npf, kvc_dtype dt, float scale, float *s, size_t ss) {
    const char *kr[QK_LANES];
    const size_t rb = row_bytes(d, dt);
    for (uint32_t j = 0; j < t; j += (uint32_t)KB) {
        UNROLL
        for (int b = 0; b < KB; b++) kr[b] = kt + (size_t)(j + (uint32_t)b < t ? j + (uint32_t)b : t - 1) * rs;
        if (h == 0)
            for (uint32_t b = j; b < j + (uint32_t)KB && b < npf; b++) prefetch_row(pf + (size_t)b * rs, rb);
        qk_block(var, q + (size_t)h * d, qbuf + (size_t)h * q_stride(var, d), d, kr, HB, KB, dt, scale,
                 s + (size_t)h * ss, ss, j);
    }
}

/* QK for one tile of t keys: heads by 4, then 2, then 1. */
AI void qk_tile(int var, const float *q, const float *qbuf, uint32_t G, uint32_t d, const char *kt, size_t rs,
                uint32_t t, const char *pf, uint32_t npf, kvc_dtype dt, float scale, float *s, size_t ss) {
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4, npf = 0)
        qk_heads(var, q, qbuf, h, 4, QK_LANES / 4, d, kt, rs, t, pf, npf, dt, scale, s, ss);
    if (G - h >= 2) {
        qk_heads(var, q, qbuf, h, 2, QK_LANES / 2, d, kt, rs, t, pf, npf, dt, scale, s, ss);
        h += 2;
        npf = 0;
    }
    if (G - h == 1) qk_heads(var, q, qbuf, h, 1, QK_LANES, d, kt, rs, t, pf, npf, dt, scale, s, ss);
}

/* Online softmax step for one head over a chunk: s[0..c) logits in,
 * probabilities relative to the new running max out (0 up to the next
 * multiple of TILE). Each tile's probabilities are summed apart and the
 * tile sums added in order, so l carries the rounding of a TILE-key sum
 * plus one addition per tile, whatever the chunk length. The weights row
 * gets the raw logits, or with `probs` (the only chunk: its max is final)
 * the probabilities themselves, so finish() need not take e^x again. */
AI void softmax_chunk(float *s, uint32_t c, float *m, float *l, float *corr, float *wrow, bool probs) {
    if (wrow && !probs) memcpy(wrow, s, (size_t)c * sizeof(float));
    const uint32_t cp = (c + TILE - 1) / TILE * TILE;
    /* only in a partial last tile; whole vectors where it can, since the
     * loads below would wait on scalar stores they cannot forward from */
    uint32_t jp = c;
    for (; jp < cp && jp % VW; jp++) s[jp] = -INFINITY;
    for (; jp < cp; jp += VW) v_store(s + jp, v_set1(-INFINITY));
    vf vmax = v_set1(-INFINITY);
    for (uint32_t j = 0; j < cp; j += VW) vmax = v_max(vmax, v_load(s + j));
    const float tmax = v_hmax(vmax);
    const float mnew = tmax > *m ? tmax : *m;
    /* e^(m - mnew), 0 on the first chunk (m = -inf); no libm call in the
     * hot loop (a call would also spill every live vector register) */
    if (*m == -INFINITY && mnew != -INFINITY) {
        *corr = 0.0f; /* the first chunk: what v_exp gives, without its latency on the way */
    } else {
        float cbuf[VW];
        v_store(cbuf, v_exp(v_set1(*m - mnew)));
        *corr = cbuf[0];
    }
    const vf vm = v_set1(mnew);
    float sum = 0.0f;
    for (uint32_t j0 = 0; j0 < cp; j0 += TILE) {
        vf ts = v_set1(0.0f);
        UNROLL
        for (int k = 0; k < TILE / VW; k++) {
            vf p = v_exp(v_sub(v_load(s + j0 + k * VW), vm));
            v_store(s + j0 + k * VW, p);
            ts = v_add(ts, p);
        }
        sum += v_hsum(ts);
    }
    *l = *l * *corr + sum;
    *m = mnew;
    if (wrow && probs) memcpy(wrow, s, (size_t)c * sizeof(float));
}

/* Columns of HB heads by pv_cols; the last, partial group is `masked`.
 * The npf rows from pf are prefetched a share of each row per column group
 * (whole lines), so the prefetches are spread over the whole tile instead
 * of all issued in the first group, the others running with the memory
 * idle: measured on a Zen 4 core (8 kv heads, n = 4096 and 32768, two
 * groups per row), 1.07-1.10x for f32 and 1.04-1.07x for f16. */
AI void pv_heads(int var, const char *vt, size_t rs, uint32_t t, const float *p, int HB, uint32_t d, kvc_dtype dt,
                 float *out, const float *corr, const char *pf, uint32_t npf, size_t ss) {
    const uint32_t w = pv_cols(var, HB);
    const size_t rb = row_bytes(d, dt), ng = (d + w - 1) / w;
    const size_t share = (rb / ng + 63) / 64 * 64; /* bytes of a row per group, whole lines */
    size_t at = 0, len; /* where the next group's share starts (at <= rb), its length */
    uint32_t off = 0;
    /* `masked` stays a constant at each call, as the inner loops need; the
     * last group takes the rest of the row */
    for (; d - off >= w; off += w, at += len) {
        len = off + w == d || rb - at < share ? rb - at : share;
        pv_block(var, vt, rs, t, p, HB, off, d, false, dt, out, corr, npf && len ? pf + at : NULL, len ? npf : 0, len,
                 ss);
    }
    if (off < d) {
        len = rb - at;
        pv_block(var, vt, rs, t, p, HB, off, d, true, dt, out, corr, npf && len ? pf + at : NULL, len ? npf : 0, len,
                 ss);
    }
}

/* out[h] = out[h] * corr[h] + the tile's sum of p[h][j] V[j]. Q8: each V
 * row's scale goes into the tile's weights first, in place (PV is the
 * scratch's last reader), once for every head and column group: the same
 * f32 products p * scale the PV loops would form, without a scalar
 * multiply and broadcast per row and head in the hot loop. */
AI void pv_tile(int var, const char *vt, size_t rs, uint32_t t, const char *pf, uint32_t npf, float *s, size_t ss,
                uint32_t G, uint32_t d, kvc_dtype dt, float *out, const float *corr) {
    if (dt == KVC_DTYPE_Q8) {
        float vs[TILE] __attribute__((aligned(64)));
        uint32_t j = 0;
        for (; j < t; j++) vs[j] = kvc__row_scale(vt + (size_t)j * rs, d, dt);
        for (; j < TILE; j++) vs[j] = 0.0f; /* past t: never read by pv_block */
        for (uint32_t h = 0; h < G; h++) /* whole tiles: softmax_chunk pads the scratch */
            for (j = 0; j < TILE; j += VW) v_store(s + (size_t)h * ss + j, v_mul(v_load(s + (size_t)h * ss + j), v_load(vs + j)));
    }
    uint32_t h = 0;
    for (; h + 4 <= G; h += 4, npf = 0)
        pv_heads(var, vt, rs, t, s + (size_t)h * ss, 4, d, dt, out + (size_t)h * d, corr + h, pf, npf, ss);
    if (G - h >= 2) {
        pv_heads(var, vt, rs, t, s + (size_t)h * ss, 2, d, dt, out + (size_t)h * d, corr + h, pf, npf, ss);
        h += 2;
        npf = 0;
    }
    if (G - h == 1) pv_heads(var, vt, rs, t, s + (size_t)h * ss, 1, d, dt, out + (size_t)h * d, corr + h, pf, npf, ss);
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

/* out *= 1/l; weights (raw logits) -> exp(w - m) / l, or (probs: already
 * exp(w - m), the same bits) -> w / l. */
AI void finish(float *out, uint32_t d, float *w, uint32_t n, float m, float l, bool probs) {
    const float inv = 1.0f / l;
    scale_row(out, d, inv, false, 0.0f);
    if (w) scale_row(w, n, inv, !probs, m);
}

/* Floats of score scratch on the stack (32 KiB): a chunk of keys is as long
 * as the scratch holds for the job's query heads (2048 keys for 4 heads). */
#define SCRATCH 8192
#ifndef KVC__PF_MIN
#define KVC__PF_MIN (128u << 10)
#endif
#ifndef KVC__MAXJ_CHUNK
#define KVC__MAXJ_CHUNK (512u << 10)
#endif
#ifndef KVC__CHUNKED
#define KVC__CHUNKED 1
#endif

/* Jobs (kv heads, each with at most MAXH query heads) sharing d, n, the
 * row stride and the scale, with inner-block variant `var`.
 *
 * Keys go by chunks, and each chunk of each job in three passes: QK over all
 * of its K rows (logits into the L1/L2-resident scratch), one vectorised
 * softmax step over the whole chunk, then PV over all of its V rows. Each
 * pass is one long sequential stream, which the hardware prefetchers
 * follow best; software prefetch runs one tile ahead of the stream being
 * read, and at the end of a pass asks for the start of the next pass (the
 * chunk's V rows, then the next chunk's or job's K rows), so the memory
 * pipe never drains between passes. With several jobs (rows of different kv
 * heads interleaved, token-major) every job's chunk is read in turn, so the
 * interleaved rows are all used while they sit side by side. */
AI void drive(const kvc__attn_job *jobs, uint32_t nj, kvc_dtype dt, int var) {
    const uint32_t d = jobs[0].d, n = jobs[0].n;
    const size_t rs = jobs[0].row_stride * kvc__esize(dt); /* bytes between rows */
    const float scale = jobs[0].scale;
    float s[SCRATCH] __attribute__((aligned(64)));
    float qbuf[QBUF] __attribute__((aligned(64)));
    float m[KVC__MAXJ * MAXH], l[KVC__MAXJ * MAXH], corr[MAXH], ones[MAXH];
    size_t qoff[KVC__MAXJ];
    uint32_t gmax = 1;
    for (uint32_t x = 0, qo = 0; x < nj; x++) {
        const kvc__attn_job *job = &jobs[x];
        /* only a variant uses the scratch: without one every job's offset stays
         * 0, as qbuf + anything past its end is not a pointer C allows */
        qoff[x] = qo;
        if (var) {
            q_prepare(var, dt, job->q, job->r, d, qbuf + qo);
            qo += job->r * q_stride(var, d);
        }
        gmax = job->r > gmax ? job->r : gmax;
        for (uint32_t h = 0; h < job->r; h++) {
            m[x * MAXH + h] = -INFINITY;
            l[x * MAXH + h] = 0.0f;
        }
        memset(job->out, 0, (size_t)job->r * d * sizeof(float));
    }
    for (uint32_t h = 0; h < MAXH; h++) ones[h] = 1.0f;
    /* chunk length: a multiple of TILE, at least one tile (gmax <= MAXH);
     * heads' scratch rows 64 bytes more than a power of two apart, so the
     * rows a pv_block reads together do not alias in L1 (4 KiB aliasing) */
    uint32_t ch = KVC__CHUNKED ? (SCRATCH / gmax - 16) / TILE * TILE : TILE;
    /* several jobs (token-major rows, heads interleaved): a chunk of all of
     * them, K and V, within KVC__MAXJ_CHUNK bytes, so it stays in L2 while
     * every job reads its part of the token rows (the hardware fetches more
     * of a row than one job's bytes; a longer chunk loses those lines before
     * the next job gets to them). Measured on a Zen 4 core (1 MiB L2), 8 kv
     * heads, n = 32768: f16 and bf16 1.12-1.21x, f32 1.04-1.16x, q8
     * 0.99-1.11x against chunks as long as the scratch allows. */
    if (nj > 1) {
        const size_t fit = (size_t)KVC__MAXJ_CHUNK / 2 / rs / TILE * TILE; /* rs >= 1: no overflow */
        if (fit < ch) ch = fit > TILE ? (uint32_t)fit : TILE;
    }
    /* K and V of every job within KVC__PF_MIN bytes: read from L1/L2 (a small
     * cache, just written to or read a layer ago), where software prefetch
     * only takes issue slots */
    const bool pfon = (size_t)n * rs * 2 * nj > KVC__PF_MIN;
    const size_t ss = ch + 16; /* scratch stride between heads */
    const bool one = n <= ch;  /* a single chunk: its softmax is the final one */
    for (uint32_t c0 = 0, c; c0 < n; c0 += c) { /* += c: never wraps past n */
        c = n - c0 < ch ? n - c0 : ch;
        for (uint32_t x = 0; x < nj; x++) {
            const kvc__attn_job *job = &jobs[x];
            const uint32_t G = job->r;
            const char *kc = (const char *)job->k + (size_t)c0 * rs;
            const char *vc = (const char *)job->v + (size_t)c0 * rs;
            /* what follows this chunk's V pass: the next job's K, or the next chunk's first job's */
            const uint32_t nx = x + 1 < nj ? c0 : c0 + c;
            const uint32_t nknext = pfon && nx < n ? (n - nx < TILE ? n - nx : TILE) : 0;
            /* formed only when it is a row: past the last one it would be a pointer
             * beyond K (or a wrapped offset when a single row has a huge stride) */
            const char *knext = nknext ? (const char *)jobs[x + 1 < nj ? x + 1 : 0].k + (size_t)nx * rs : NULL;
            for (uint32_t j0 = 0, t; j0 < c; j0 += t) {
                t = c - j0 < TILE ? c - j0 : TILE;
                const bool last = j0 + t == c;
                const uint32_t npf = !pfon ? 0 : last ? (c < TILE ? c : TILE) : (c - j0 - t < TILE ? c - j0 - t : TILE);
                qk_tile(var, job->q, qbuf + qoff[x], G, d, kc + (size_t)j0 * rs, rs, t,
                        last ? vc : kc + (size_t)(j0 + t) * rs, npf, dt, scale, s + j0, ss);
            }
            for (uint32_t h = 0; h < G; h++)
                softmax_chunk(s + (size_t)h * ss, c, &m[x * MAXH + h], &l[x * MAXH + h], &corr[h],
                              job->weights ? job->weights + (size_t)h * job->wstride + c0 : NULL, one);
            for (uint32_t j0 = 0, t; j0 < c; j0 += t) {
                t = c - j0 < TILE ? c - j0 : TILE;
                const bool last = j0 + t == c;
                pv_tile(var, vc + (size_t)j0 * rs, rs, t, last ? knext : vc + (size_t)(j0 + t) * rs,
                        last ? nknext : !pfon ? 0 : (c - j0 - t < TILE ? c - j0 - t : TILE), s + j0, ss, G, d, dt,
                        job->out, j0 == 0 ? corr : ones);
            }
        }
    }
    for (uint32_t x = 0; x < nj; x++) {
        const kvc__attn_job *job = &jobs[x];
        for (uint32_t h = 0; h < job->r; h++)
            finish(job->out + (size_t)h * d, d, job->weights ? job->weights + (size_t)h * job->wstride : NULL, n,
                   m[x * MAXH + h], l[x * MAXH + h], one);
    }
}

#endif
