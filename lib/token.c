/* What both modes do with a new token: validate it, compute the statistics
 * its policy asked for, and record it in a slot. */
#include "internal.h"

#include <math.h>

int kvc__check_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return KVC_ENONFINITE;
    return KVC_OK;
}

static void head_stats(const float *k, const float *v, uint32_t d, uint32_t needs, float st[3]) {
    if (needs & KVC_NEED_KEY_STATS) {
        double ss = 0.0;
        for (uint32_t i = 0; i < d; i++) ss += (double)k[i] * k[i];
        st[0] = (float)sqrt(ss);
    }
    if (needs & KVC_NEED_VALUE_STATS) {
        float lo = v[0], hi = v[0];
        double l1 = 0.0;
        for (uint32_t i = 0; i < d; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
            l1 += fabs((double)v[i]);
        }
        st[1] = hi - lo;
        st[2] = (float)l1;
    }
}

/* The statistics of group g's kvc_token: each averaged over the group's kv heads. */
static void token_stats(const kvc_cache *c, uint32_t g, const float *k, const float *v, kvc_token *tok) {
    uint32_t needs = c->pol.needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS);
    tok->key_norm = tok->value_range = tok->value_l1 = 0.0f;
    if (!needs || !k || !v) return;
    uint32_t h0 = c->n_groups == 1 ? 0 : g, h1 = c->n_groups == 1 ? c->n_kv : g + 1;
    float sum[3] = {0, 0, 0};
    for (uint32_t h = h0; h < h1; h++) {
        float st[3] = {0, 0, 0};
        head_stats(k + (size_t)h * c->d, v + (size_t)h * c->d, c->d, needs, st);
        for (int i = 0; i < 3; i++) sum[i] += st[i];
    }
    float inv = 1.0f / (float)(h1 - h0);
    tok->key_norm = sum[0] * inv;
    tok->value_range = sum[1] * inv;
    tok->value_l1 = sum[2] * inv;
}

int kvc__check_token(kvc_cache *c, int64_t pos, const float *k, const float *v, bool need_kv) {
    if (need_kv && (!k || !v)) return kvc__fail(c, KVC_EINVAL, "k and v must not be NULL");
    if (pos < 0) return kvc__fail(c, KVC_EINVAL, "position %lld is negative", (long long)pos);
    if (pos <= c->last_pos)
        return kvc__fail(c, KVC_EORDER, "position %lld is not greater than the previous position %lld",
                         (long long)pos, (long long)c->last_pos);
    size_t n = (size_t)c->n_kv * c->d;
    if (k && kvc__check_finite(k, n)) return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in k at position %lld", (long long)pos);
    if (v && kvc__check_finite(v, n)) return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in v at position %lld", (long long)pos);
    if (need_kv && (c->dtype == KVC_DTYPE_F16 || c->dtype == KVC_DTYPE_BF16)) {
        /* a finite value that rounds to Inf in 16 bits would poison every score of its head */
        float lim = c->dtype == KVC_DTYPE_F16 ? 65520.0f : 0x1.ffp+127f;
        for (size_t i = 0; i < 2 * n; i++) {
            float x = i < n ? k[i] : v[i - n];
            if (!(fabsf(x) < lim))
                return kvc__fail(c, KVC_ERANGE, "%s[%zu] = %g overflows the %s storage type (position %lld)",
                                 i < n ? "k" : "v", i % n, (double)x, c->dtype == KVC_DTYPE_F16 ? "f16" : "bf16",
                                 (long long)pos);
        }
    }
    return KVC_OK;
}

void kvc__insert(kvc_cache *c, uint32_t g, uint32_t slot, int64_t pos, const float *k, const float *v) {
    size_t gi = (size_t)g * c->cap;
    c->pos[gi + slot] = pos;
    c->seq[gi + slot] = c->appended;
    if (c->pol.on_insert) {
        kvc_token tok;
        kvc__token_facts(c, g, pos, c->appended, k, v, &tok);
        c->pol.on_insert(c->pstate, g, slot, &tok);
    }
}

void kvc__token_facts(const kvc_cache *c, uint32_t g, int64_t pos, uint64_t seq, const float *k, const float *v,
                      kvc_token *tok) {
    tok->pos = pos;
    tok->seq = seq;
    token_stats(c, g, k, v, tok);
    /* the group's rows: its kv head's, or all of them in shared scope */
    size_t off = c->n_groups == 1 ? 0 : (size_t)g * c->d;
    tok->key = (c->pol.needs & KVC_NEED_KEYS) && k ? k + off : NULL;
    tok->value = (c->pol.needs & KVC_NEED_VALUES) && v ? v + off : NULL;
}
