/* STORE mode's query window: a ring of the last `query_window` queries and,
 * from it, the window scores a ::KVC_NEED_QUERY_WINDOW policy ranks by. */
#include "internal.h"

#include "attn/attn.h"

#include <math.h>
#include <string.h>

#include "convert.h"

void kvc__window_push(kvc_cache *c, const float *q) {
    if (!c->qring) return;
    size_t qn = (size_t)c->n_q * c->d;
    memcpy(c->qring + (size_t)c->qring_head * qn, q, qn * sizeof *q);
    c->qring_head = (c->qring_head + 1) % c->qwin;
    if (c->qring_n < c->qwin) c->qring_n++;
}

/* Window scores (VaSE): for each recent query and each query head of the group,
 * softmax (T=1, the cache's scale) over the candidate units' slots; mean over
 * queries and heads; summed per unit. Renormalising over candidates is the
 * same as a softmax restricted to them. Queries are taken KVC__WBLOCK at a
 * time, transposed, so each key row is converted to f32 once per block and
 * the block's dot products run side by side (a loop the compiler vectorises
 * without reordering any sum). */
static void dots(const float *restrict qt, const float *restrict k, uint32_t d, float *restrict out) {
    float acc[KVC__WBLOCK] = {0};
    for (uint32_t t = 0; t < d; t++)
        for (uint32_t r = 0; r < KVC__WBLOCK; r++) acc[r] += qt[(size_t)t * KVC__WBLOCK + r] * k[t];
    memcpy(out, acc, sizeof acc);
}

static const float *key_f32(const kvc_cache *c, const char *row, float *buf) {
    if (c->dtype == KVC_DTYPE_F32) return (const float *)(const void *)row;
    if (c->dtype == KVC_DTYPE_Q8) { /* the dequantised values, as the kernel reads them */
        const float sc = kvc__row_scale(row, c->d, c->dtype);
        for (uint32_t t = 0; t < c->d; t++) buf[t] = sc * (float)((const int8_t *)(const void *)row)[t];
        return buf;
    }
    const uint16_t *kr = (const uint16_t *)(const void *)row;
    for (uint32_t t = 0; t < c->d; t++)
        buf[t] = c->dtype == KVC_DTYPE_F16 ? kvc__f16_to_f32(kr[t]) : kvc__bf16_to_f32(kr[t]);
    return buf;
}

void kvc__window_scores(kvc_cache *c, uint32_t g, const uint32_t *units, uint32_t n_units, float *out) {
    uint32_t B = c->block, d = c->d, cap = c->cap;
    uint32_t h0 = c->n_groups == 1 ? 0 : g * c->qpg, h1 = h0 + c->qpg;
    uint32_t ratio = c->n_q / c->n_kv;
    for (uint32_t i = 0; i < n_units; i++) out[i] = 0.0f;
    uint32_t rows = 0;
    for (uint32_t h = h0; h < h1; h++) {
        const char *kb = (const char *)c->k + (size_t)(h / ratio) * c->head_stride * c->esize;
        for (uint32_t qb = 0; qb < c->qring_n; qb += KVC__WBLOCK) {
            uint32_t nb = c->qring_n - qb < KVC__WBLOCK ? c->qring_n - qb : KVC__WBLOCK;
            for (uint32_t r = 0; r < KVC__WBLOCK; r++)
                for (uint32_t t = 0; t < d; t++)
                    c->wqt[(size_t)t * KVC__WBLOCK + r] = r < nb ? c->qring[((size_t)(qb + r) * c->n_q + h) * d + t] : 0.0f;
            size_t m = 0;
            float acc[KVC__WBLOCK];
            for (uint32_t u = 0; u < n_units; u++)
                for (uint32_t j = 0; j < B; j++, m++) {
                    const float *kr = key_f32(c, kb + (size_t)(units[u] + j) * c->row_stride * c->esize, c->krow);
                    dots(c->wqt, kr, d, acc);
                    for (uint32_t r = 0; r < nb; r++) c->wlogit[(size_t)r * cap + m] = acc[r] * c->scale;
                }
            for (uint32_t r = 0; r < nb; r++) {
                float *logit = c->wlogit + (size_t)r * cap, mx = -INFINITY;
                for (size_t t = 0; t < m; t++) mx = logit[t] > mx ? logit[t] : mx;
                double sum = 0.0;
                for (size_t t = 0; t < m; t++) {
                    logit[t] = expf(logit[t] - mx);
                    sum += logit[t];
                }
                float inv = (float)(1.0 / sum);
                size_t t = 0;
                for (uint32_t u = 0; u < n_units; u++)
                    for (uint32_t j = 0; j < B; j++, t++) out[u] += logit[t] * inv;
            }
            rows += nb;
        }
    }
    if (rows)
        for (uint32_t i = 0; i < n_units; i++) out[i] /= (float)rows;
}
