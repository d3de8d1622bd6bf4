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

/* One window row's softmax over the candidates' slots, added to out per unit:
 * the exact path, for the rare row whose candidates the kernel's weights
 * lost (the protected tokens took all the mass) or whose logits overflowed
 * f32 (a remembered query against a key appended after it). In double, where
 * q.k of finite f32 values cannot overflow, so the weights stay finite. */
static double logit_exact(kvc_cache *c, const char *kb, const float *q, uint32_t slot) {
    const float *kr = key_f32(c, kb + (size_t)slot * c->row_stride * c->esize, c->krow);
    double dot = 0.0;
    for (uint32_t t = 0; t < c->d; t++) dot += (double)q[t] * kr[t];
    return dot * c->scale;
}

static void row_exact(kvc_cache *c, const char *kb, const float *q, const uint32_t *units, uint32_t n_units,
                      float *lg, float *out) {
    const uint32_t B = c->block;
    double mx = -INFINITY, sum = 0.0;
    for (uint32_t u = 0; u < n_units; u++)
        for (uint32_t j = 0; j < B; j++) {
            const double l = logit_exact(c, kb, q, units[u] + j);
            mx = l > mx ? l : mx;
        }
    size_t m = 0; /* second pass: the logits do not fit lg's floats, their exponentials do */
    for (uint32_t u = 0; u < n_units; u++)
        for (uint32_t j = 0; j < B; j++, m++) sum += (lg[m] = (float)exp(logit_exact(c, kb, q, units[u] + j) - mx));
    const float inv = (float)(1.0 / sum);
    m = 0;
    for (uint32_t u = 0; u < n_units; u++)
        for (uint32_t j = 0; j < B; j++, m++) out[u] += lg[m] * inv;
}

/* Window scores (VaSE): for each recent query and each query head of the
 * group, softmax (T=1, the cache's scale) over the candidate units' slots;
 * mean over queries and heads; summed per unit. The SIMD decode kernel does
 * the work: KVC__WBLOCK recent queries of one head are the "query heads" of
 * one call over every resident row of its kv head (STORE keeps them in slots
 * [0, len)), whose weights are the softmax over all of them; renormalised over
 * the candidates, that is exactly the softmax restricted to the candidates. */
void kvc__window_scores(kvc_cache *c, uint32_t g, const uint32_t *units, uint32_t n_units, float *out) {
    const uint32_t B = c->block, d = c->d, cap = c->cap, n = c->len;
    const uint32_t h0 = c->n_groups == 1 ? 0 : g * c->qpg, h1 = h0 + c->qpg;
    const uint32_t ratio = c->n_q / c->n_kv;
    for (uint32_t i = 0; i < n_units; i++) out[i] = 0.0f;
    uint32_t rows = 0;
    for (uint32_t h = h0; h < h1; h++) {
        const char *kb = (const char *)c->k + (size_t)(h / ratio) * c->head_stride * c->esize;
        for (uint32_t qb = 0; qb < c->qring_n; qb += KVC__WBLOCK) {
            const uint32_t nb = c->qring_n - qb < KVC__WBLOCK ? c->qring_n - qb : KVC__WBLOCK;
            for (uint32_t r = 0; r < nb; r++)
                memcpy(c->wq + (size_t)r * d, c->qring + ((size_t)(qb + r) * c->n_q + h) * d, d * sizeof(float));
            /* one kv head, nb query heads; V is read as K (the output is discarded) */
            kvc_attn_layout L = {nb, 1, d, n, c->dtype, c->row_stride, c->head_stride, c->scale};
            kvc__attention_heads(&L, 0, 1, c->wq, kb, kb, c->wout, c->wlogit, cap);
            for (uint32_t r = 0; r < nb; r++) {
                const float *p = c->wlogit + (size_t)r * cap;
                double s = 0.0;
                for (uint32_t u = 0; u < n_units; u++)
                    for (uint32_t j = 0; j < B; j++) s += p[units[u] + j];
                if (!(s > 1e-30) || !isfinite(s)) { /* no candidate mass left, or an overflow (NaN) */
                    row_exact(c, kb, c->wq + (size_t)r * d, units, n_units, c->wlogit + (size_t)r * cap, out);
                    continue;
                }
                const float inv = (float)(1.0 / s);
                for (uint32_t u = 0; u < n_units; u++) {
                    float w = 0.0f;
                    for (uint32_t j = 0; j < B; j++) w += p[units[u] + j];
                    out[u] += w * inv;
                }
            }
            rows += nb;
        }
    }
    if (rows)
        for (uint32_t i = 0; i < n_units; i++) out[i] /= (float)rows;
}
