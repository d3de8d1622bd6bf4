/* Portable scalar kernel: the reference every SIMD path is tested against and
 * the fallback on any CPU. Online softmax over tiles of keys; the query heads
 * of a group (up to 8 at a time) share each pass over a K and V row. Kept
 * deliberately simple: the SIMD kernels follow the same tile structure. */
#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "convert.h"

#define HEADS 8
#define CHUNK 64 /* output columns summed per tile at a time */

/* Element i of a row; rsc: the row's scale (Q8). */
static inline float load(const void *base, size_t i, kvc_dtype dt, float rsc) {
    if (dt == KVC_DTYPE_F32) return ((const float *)base)[i];
    if (dt == KVC_DTYPE_Q8) return rsc * (float)((const int8_t *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return dt == KVC_DTYPE_F16 ? kvc__f16_to_f32(h) : kvc__bf16_to_f32(h);
}

static void heads(const kvc__attn_job *job, uint32_t h0, uint32_t nh) {
    const uint32_t d = job->d, n = job->n;
    const size_t esz = kvc__esize(job->dtype);
    float m[HEADS], l[HEADS], corr[HEADS], s[HEADS][TILE], acc[HEADS][CHUNK];
    for (uint32_t h = 0; h < nh; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
        memset(job->out + (size_t)(h0 + h) * d, 0, d * sizeof(float));
    }
    for (uint32_t j0 = 0, t; j0 < n; j0 += t) { /* += t: never wraps past n */
        t = n - j0 < TILE ? n - j0 : TILE;
        for (uint32_t j = 0; j < t; j++) {
            const void *kr = (const char *)job->k + (size_t)(j0 + j) * job->row_stride * esz;
            const float ksc = kvc__row_scale(kr, d, job->dtype);
            for (uint32_t h = 0; h < nh; h++) {
                const float *q = job->q + (size_t)(h0 + h) * d;
                float a = 0.0f;
                for (uint32_t i = 0; i < d; i++) a += q[i] * load(kr, i, job->dtype, ksc);
                s[h][j] = a * job->scale;
            }
        }
        for (uint32_t h = 0; h < nh; h++) {
            float tmax = m[h];
            for (uint32_t j = 0; j < t; j++) tmax = s[h][j] > tmax ? s[h][j] : tmax;
            corr[h] = expf(m[h] - tmax); /* 0 on the first tile (m = -inf) */
            if (job->weights) memcpy(job->weights + (size_t)(h0 + h) * job->wstride + j0, s[h], t * sizeof(float));
            float sum = 0.0f;
            for (uint32_t j = 0; j < t; j++) {
                s[h][j] = expf(s[h][j] - tmax);
                sum += s[h][j];
            }
            l[h] = l[h] * corr[h] + sum;
            m[h] = tmax;
        }
        /* The tile's share of out is summed apart, then folded in with the
         * correction: rounding error grows like TILE + n/TILE, not n. */
        for (uint32_t c0 = 0, w; c0 < d; c0 += w) {
            w = d - c0 < CHUNK ? d - c0 : CHUNK;
            for (uint32_t h = 0; h < nh; h++) memset(acc[h], 0, w * sizeof(float));
            for (uint32_t j = 0; j < t; j++) {
                const void *vr = (const char *)job->v + (size_t)(j0 + j) * job->row_stride * esz;
                const float vsc = kvc__row_scale(vr, d, job->dtype);
                for (uint32_t i = 0; i < w; i++) {
                    float x = load(vr, c0 + i, job->dtype, vsc);
                    for (uint32_t h = 0; h < nh; h++) acc[h][i] += s[h][j] * x;
                }
            }
            for (uint32_t h = 0; h < nh; h++) {
                float *o = job->out + (size_t)(h0 + h) * d + c0;
                for (uint32_t i = 0; i < w; i++) o[i] = o[i] * corr[h] + acc[h][i];
            }
        }
    }
    for (uint32_t h = 0; h < nh; h++) {
        float inv = 1.0f / l[h];
        float *o = job->out + (size_t)(h0 + h) * d;
        for (uint32_t i = 0; i < d; i++) o[i] *= inv;
        if (job->weights) {
            /* weights held raw logits: normalise with the final max and sum */
            float *w = job->weights + (size_t)(h0 + h) * job->wstride;
            for (uint32_t j = 0; j < n; j++) w[j] = expf(w[j] - m[h]) * inv;
        }
    }
}

void kvc__attn_scalar(const kvc__attn_job *jobs, uint32_t n) {
    for (uint32_t x = 0; x < n; x++)
        for (uint32_t h0 = 0; h0 < jobs[x].r; h0 += HEADS)
            heads(&jobs[x], h0, jobs[x].r - h0 < HEADS ? jobs[x].r - h0 : HEADS);
}
