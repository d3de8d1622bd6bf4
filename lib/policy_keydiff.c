/* keydiff: key-similarity eviction (Park et al., "KeyDiff", arXiv 2504.15364).
 *
 * Query-free: a token whose key points the same way as most keys adds little
 * that the others do not already provide, so the token whose key is most
 * similar to the anchor (the mean of the group's normalised resident keys) is
 * evicted, and distinctive keys stay. Keep-score = -cos(k, anchor); in shared
 * scope the cosine is averaged over kv heads, each head with its own anchor.
 * The anchor covers every resident, protected ones included, as in the
 * reference scorer (NVIDIA kvpress, keydiff_press.py), which averages the
 * normalised keys of the whole cache. The incoming token is not part of it:
 * the core makes room before the token enters. */
#include <math.h>

#include "policy_util.h"

typedef struct {
    uint32_t cap, d, heads;
    float *khat;     /* per (group, slot): heads x d unit keys */
    double *anchor;  /* heads x d */
    float *unit;     /* heads x d: anchor / |anchor| (0 for a zero anchor) */
    double *score;   /* per candidate unit */
    uint32_t *order; /* scratch */
} keydiff_state;

static size_t row(const keydiff_state *s) { return (size_t)s->heads * s->d; }

static size_t state_size(const kvc_policy_ctx *ctx) {
    size_t hd = (size_t)ctx->kv_heads * ctx->head_dim;
    return kvc__hdr(sizeof(keydiff_state)) + kvc__slot_arrays(ctx, hd, sizeof(float)) + 8 +
           hd * (sizeof(double) + sizeof(float)) + (size_t)ctx->capacity * (sizeof(double) + sizeof(uint32_t));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    keydiff_state *s = state;
    s->cap = ctx->capacity;
    s->d = ctx->head_dim;
    s->heads = ctx->kv_heads;
    s->khat = kvc__past_hdr(state, sizeof(keydiff_state));
    float *end = s->khat + (size_t)ctx->n_groups * ctx->capacity * row(s);
    s->anchor = (double *)(void *)(((uintptr_t)end + 7) & ~(uintptr_t)7);
    s->score = s->anchor + row(s);
    s->order = (uint32_t *)(void *)(s->score + s->cap);
    s->unit = (float *)(void *)(s->order + s->cap);
    return 0;
}

static float *khat_of(const keydiff_state *s, uint32_t g, uint32_t slot) {
    return s->khat + ((size_t)g * s->cap + slot) * row(s);
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    keydiff_state *s = state;
    float *dst = khat_of(s, g, slot);
    for (uint32_t h = 0; h < s->heads; h++) {
        const float *k = tok->key + (size_t)h * s->d;
        double ss = 0.0;
        for (uint32_t t = 0; t < s->d; t++) ss += (double)k[t] * k[t];
        double inv = 1.0 / fmax(sqrt(ss), 1e-12); /* a zero key stays zero: cosine 0 */
        for (uint32_t t = 0; t < s->d; t++) dst[(size_t)h * s->d + t] = (float)(k[t] * inv);
    }
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    keydiff_state *s = state;
    float *a = khat_of(s, g, from), *b = khat_of(s, g, to);
    for (size_t i = 0; i < row(s); i++) b[i] = a[i];
}

/* acc += x, widened: blocks of 4 independent scalars on non-aliasing
 * pointers, the form gcc and clang vectorise at -O2 (as h2o's on_attend). */
static void add_row(double *restrict acc, const float *restrict x, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double a0 = acc[i] + x[i], a1 = acc[i + 1] + x[i + 1], a2 = acc[i + 2] + x[i + 2], a3 = acc[i + 3] + x[i + 3];
        acc[i] = a0, acc[i + 1] = a1, acc[i + 2] = a2, acc[i + 3] = a3;
    }
    for (; i < n; i++) acc[i] += x[i];
}

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    keydiff_state *s = state;
    size_t r = row(s);
    for (size_t i = 0; i < r; i++) s->anchor[i] = 0.0;
    for (uint32_t slot = 0; slot < s->cap; slot++) {
        if (req->positions[slot] < 0) continue;
        add_row(s->anchor, khat_of(s, req->group, slot), r);
    }
    /* cos(k, a) = khat . a / |a|: the 1/n of the mean cancels */
    for (uint32_t h = 0; h < s->heads; h++) {
        const double *a = s->anchor + (size_t)h * s->d;
        double ss = 0.0;
        for (uint32_t t = 0; t < s->d; t++) ss += a[t] * a[t];
        double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
        for (uint32_t t = 0; t < s->d; t++) s->unit[(size_t)h * s->d + t] = (float)(a[t] * inv);
    }
    for (uint32_t i = 0; i < req->n_candidates; i++) {
        double keep = 0.0;
        for (uint32_t j = 0; j < req->block; j++) {
            const float *kh = khat_of(s, req->group, req->candidates[i] + j);
            double cos = 0.0;
            for (uint32_t h = 0; h < s->heads; h++)
                cos += kvc__dot_f32(kh + (size_t)h * s->d, s->unit + (size_t)h * s->d, s->d);
            keep -= cos / s->heads;
        }
        s->score[i] = keep;
    }
    kvc__evict_lowest(s->score, req->n_candidates, req->n_victims, req->candidates, s->order, victims);
    return 0;
}

static const kvc_policy keydiff = {
    KVC__POLICY_INIT("keydiff", KVC_NEED_KEYS),
    /* not the reference's (it protects nothing): the keys just read are among
     * the most typical, so unprotected they went first (docs/policies.md) */
    .default_recent = KVC_RECENT_PERCENT(25),
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .select = select_victims,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_keydiff(void) { return &keydiff; }
