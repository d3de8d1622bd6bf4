/* vase: value-aware stochastic eviction (VaSE, arXiv 2606.03928).
 *
 * Evicting the rare tokens whose value vectors have a large range sends
 * reasoning models into repetition loops; a deterministic top-k by attention
 * makes the same mistake again and again. So, at each eviction:
 *  1. reserve: the `reserve` x capacity tokens with the largest value range
 *     (max - min over head_dim) are kept; the sinks are forced in and count
 *     against that reservation;
 *  2. the remaining candidates are kept by sampling without replacement in
 *     proportion to their attention from the last queries (softmax at T=1
 *     over the candidates, mean over the query window and the GQA group, as
 *     computed by the core), smoothed by a `pool`-wide average over
 *     neighbouring candidates in position order;
 *  3. what was not kept is evicted.
 * Sampling uses Efraimidis-Spirakis keys log(u)/w: keeping the largest keys is
 * the same distribution as drawing one at a time in proportion to weight.
 * In INDEX mode, where the core holds no queries, the weights are the masses
 * the engine observed since this group's previous eviction. */
#include <math.h>

#include "policy_util.h"

typedef struct {
    uint32_t cap, sink;
    double reserve;
    uint32_t pool;
    float *vrange, *acc; /* per (group, slot) */
    uint32_t *idx;       /* scratch, capacity entries each */
    double *key;
    float *w, *pooled;
    uint8_t *tier;
} vase_state;

/* Scratch entries: candidates of an eviction, or of a prefill's prompt. */
static size_t scratch_n(const kvc_policy_ctx *ctx) {
    return ctx->prefill_max > ctx->capacity ? ctx->prefill_max : ctx->capacity;
}

static size_t state_size(const kvc_policy_ctx *ctx) {
    size_t cap = scratch_n(ctx);
    return kvc__hdr(sizeof(vase_state)) + kvc__slot_arrays(ctx, 2, sizeof(float)) +
           cap * (sizeof(uint32_t) + sizeof(double) + 2 * sizeof(float) + 1) + 64;
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    vase_state *s = state;
    size_t gc = (size_t)ctx->n_groups * ctx->capacity, cap = scratch_n(ctx);
    s->cap = ctx->capacity;
    s->sink = ctx->sink;
    s->reserve = ctx->params[0];
    s->pool = (uint32_t)ctx->params[1];
    s->vrange = kvc__past_hdr(state, sizeof(vase_state));
    s->acc = s->vrange + gc;
    s->key = (double *)(void *)(((uintptr_t)(s->acc + gc) + 7) & ~(uintptr_t)7);
    s->idx = (uint32_t *)(void *)(s->key + cap);
    s->w = (float *)(void *)(s->idx + cap);
    s->pooled = s->w + cap;
    s->tier = (uint8_t *)(void *)(s->pooled + cap);
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    vase_state *s = state;
    s->vrange[(size_t)g * s->cap + slot] = tok->value_range;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    vase_state *s = state;
    float *acc = s->acc + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) acc[i] += mass[i];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    vase_state *s = state;
    size_t b = (size_t)g * s->cap;
    s->vrange[b + to] = s->vrange[b + from];
    s->acc[b + to] = s->acc[b + from];
}

/* Shell sort of idx[0..n) by a strict "a before b" order; no allocation. */
static void sort_idx(uint32_t *idx, uint32_t n, int (*before)(const vase_state *, uint32_t, uint32_t),
                     const vase_state *s) {
    static const uint32_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (int gi = 0; gi < 8; gi++) {
        uint32_t gap = gaps[gi];
        for (uint32_t i = gap; i < n; i++) {
            uint32_t x = idx[i], j = i;
            while (j >= gap && before(s, x, idx[j - gap])) {
                idx[j] = idx[j - gap];
                j -= gap;
            }
            idx[j] = x;
        }
    }
}

/* Larger value range first; on equal range the newer (higher index) first. */
static int by_range(const vase_state *s, uint32_t a, uint32_t b) {
    return s->w[a] > s->w[b] || (s->w[a] == s->w[b] && a > b);
}
/* Smaller sampling key first (evicted first); ties: older first. */
static int by_key(const vase_state *s, uint32_t a, uint32_t b) {
    if (s->tier[a] != s->tier[b]) return s->tier[a] < s->tier[b];
    return s->key[a] < s->key[b] || (s->key[a] == s->key[b] && a < b);
}

/* Step 1 on n candidates whose value ranges are in s->w: the `reserve`
 * largest become tier 2 (kept), the others tier 1 (the sampling pool). */
static void reserve_top(vase_state *s, uint32_t n, uint32_t reserve) {
    for (uint32_t i = 0; i < n; i++) {
        s->idx[i] = i;
        s->tier[i] = 1;
    }
    sort_idx(s->idx, n, by_range, s);
    for (uint32_t i = 0; i < reserve; i++) s->tier[s->idx[i]] = 2;
}

/* Steps 2-3 on the weights in s->w (clamped at 0): pool over neighbouring
 * candidates, sample the pool with Efraimidis-Spirakis keys; afterwards
 * s->idx[0 .. nv) are the victims' candidate indices. */
static void sample(vase_state *s, uint32_t n, kvc_rng *rng) {
    for (uint32_t i = 0; i < n; i++) s->w[i] = s->w[i] > 0.0f ? s->w[i] : 0.0f;
    /* window [i - pool/2, i - pool/2 + pool - 1]: exactly `pool` wide, also when even */
    uint32_t half = s->pool / 2, right = s->pool - 1 - half;
    for (uint32_t i = 0; i < n; i++) {
        float sum = 0.0f;
        uint32_t lo = i >= half ? i - half : 0, hi = i + right < n ? i + right : n - 1;
        for (uint32_t j = lo; j <= hi; j++) sum += s->w[j];
        s->pooled[i] = sum / (float)s->pool; /* zero padding at the ends, as avg_pool1d does */
    }
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (s->tier[i] == 2) continue;
        double u = 1.0 - kvc_rng_uniform(rng); /* (0, 1] */
        double w = s->pooled[i];
        if (w > 0.0) {
            s->key[i] = log(u) / w;
        } else {
            s->tier[i] = 0; /* weightless: evicted before any weighted token, at random among themselves */
            s->key[i] = log(u);
        }
        s->idx[m++] = i;
    }
    sort_idx(s->idx, m, by_key, s);
}

/* Reserved units: `reserve` x capacity, the sinks counting against it, leaving room for nv victims. */
static uint32_t reserve_count(const vase_state *s, uint32_t B, uint32_t n, uint32_t nv) {
    uint32_t reserve_units = (uint32_t)(s->reserve * s->cap) / B, sink_units = (s->sink + B - 1) / B;
    uint32_t rc = reserve_units > sink_units ? reserve_units - sink_units : 0;
    return rc > n - nv ? n - nv : rc;
}

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    vase_state *s = state;
    uint32_t n = req->n_candidates, B = req->block, nv = req->n_victims;
    const float *vr = s->vrange + (size_t)req->group * s->cap;
    const float *acc = s->acc + (size_t)req->group * s->cap;

    /* 1. reservation by value range (summed over a unit's tokens) */
    for (uint32_t i = 0; i < n; i++) {
        float r = 0.0f;
        for (uint32_t j = 0; j < B; j++) r += vr[req->candidates[i] + j];
        s->w[i] = r;
    }
    reserve_top(s, n, reserve_count(s, B, n, nv));

    /* 2. weights: window attention, or observed mass since the last eviction */
    for (uint32_t i = 0; i < n; i++) {
        float w = 0.0f;
        if (req->window_score)
            w = req->window_score[i];
        else
            for (uint32_t j = 0; j < B; j++) w += acc[req->candidates[i] + j];
        s->w[i] = w;
    }
    sample(s, n, req->rng);
    for (uint32_t i = 0; i < nv; i++) victims[i] = req->candidates[s->idx[i]];

    /* the window restarts after each eviction (INDEX-mode weights) */
    float *a = s->acc + (size_t)req->group * s->cap;
    for (uint32_t i = 0; i < s->cap; i++) a[i] = 0.0f;
    return 0;
}

/* Prefill: the same rule over the prompt's candidates, weighted by the
 * window's attention (uniform sampling when there is none). */
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    vase_state *s = state;
    uint32_t n = req->n_candidates, nv = req->n_victims;
    for (uint32_t i = 0; i < n; i++) s->w[i] = req->tokens[req->candidates[i]].value_range;
    reserve_top(s, n, reserve_count(s, 1, n, nv));
    for (uint32_t i = 0; i < n; i++) s->w[i] = req->score ? req->score[req->candidates[i]] : 0.0f;
    sample(s, n, req->rng);
    for (uint32_t i = 0; i < nv; i++) victims[i] = req->candidates[s->idx[i]];
    return 0;
}

static const kvc_param params[] = {
    {"reserve", 0.25, 0.0, 1.0, NULL, "fraction of the capacity reserved for the largest value ranges"},
    {"pool", 5, 1, 255, NULL, "width of the average pooling over neighbouring candidates"},
};

static const kvc_policy vase = {
    KVC__POLICY_INIT("vase", KVC_NEED_QUERY_WINDOW | KVC_NEED_VALUE_STATS | KVC_NEED_RNG),
    .default_sink = 4,
    .default_recent = 64,
    .default_chunk = 64,
    .n_params = 2,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .select = select_victims,
    .on_move = on_move,
    .prefill = prefill,
};

const kvc_policy *kvc_policy_vase(void) { return &vase; }
