/* snapkv: SnapKV (Li et al. 2024, arXiv 2404.14469), prompt compression by
 * the observation window. The last queries of a prompt already attend to
 * what generation will need, so:
 *  prefill: score each prompt token by the window's attention (computed by
 *    the core in STORE mode, by the engine in INDEX mode), smooth the scores
 *    over neighbouring positions with a 1-D pool (`kernel` wide, max or
 *    average, as SnapKV's max_pool1d / avg_pool1d with padding kernel/2),
 *    keep the observation window and the best-pooled tokens;
 *  decode: SnapKV itself never evicts while generating, but a fixed budget
 *    must. Evicting the oldest (window-like) would drop the selected prompt
 *    tokens first and waste the selection, so the same rule runs again at
 *    each eviction: candidates scored by the recent queries (STORE: the core's
 *    window scores; INDEX: the mass observed since the group's previous
 *    eviction), pooled in position order, the lowest go. Deterministic. */
#include "policy_util.h"

enum { POOL_MAX = 0, POOL_AVG = 1 };

typedef struct {
    uint32_t cap, kernel, pool;
    float *acc;     /* per (group, slot): mass observed since the group's last eviction (INDEX) */
    float *w;       /* scratch: raw weights, max(capacity, prefill_max) */
    float *pooled;  /* scratch: pooled weights, same size */
    uint32_t *idx;  /* scratch: 0..n-1, same size */
} snap_state;

static size_t scratch_n(const kvc_policy_ctx *ctx) {
    return ctx->prefill_max > ctx->capacity ? ctx->prefill_max : ctx->capacity;
}

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(snap_state)) + kvc__slot_arrays(ctx, 1, sizeof(float)) +
           scratch_n(ctx) * (2 * sizeof(float) + sizeof(uint32_t));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    snap_state *s = state;
    size_t gc = (size_t)ctx->n_groups * ctx->capacity, m = scratch_n(ctx);
    s->cap = ctx->capacity;
    s->kernel = (uint32_t)ctx->params[0];
    s->pool = (uint32_t)ctx->params[1];
    s->acc = kvc__past_hdr(state, sizeof(snap_state));
    s->w = s->acc + gc;
    s->pooled = s->w + m;
    s->idx = (uint32_t *)(void *)(s->pooled + m);
    for (size_t i = 0; i < m; i++) s->idx[i] = (uint32_t)i;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    snap_state *s = state;
    (void)tok;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    snap_state *s = state;
    float *acc = s->acc + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) acc[i] += mass[i];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    snap_state *s = state;
    s->acc[(size_t)g * s->cap + to] = s->acc[(size_t)g * s->cap + from];
}

/* pooled[i] over w[i - kernel/2 .. i - kernel/2 + kernel - 1] within [0, n):
 * the max of those, or their sum / kernel (zero padding, as avg_pool1d). */
static void pool(const snap_state *s, const float *w, uint32_t n, float *pooled) {
    uint32_t half = s->kernel / 2, right = s->kernel - 1 - half;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lo = i >= half ? i - half : 0, hi = i + right < n ? i + right : n - 1;
        float r = s->pool == POOL_MAX ? w[lo] : 0.0f;
        for (uint32_t j = lo; j <= hi; j++) r = s->pool == POOL_MAX ? (w[j] > r ? w[j] : r) : r + w[j];
        pooled[i] = s->pool == POOL_MAX ? r : r / (float)s->kernel;
    }
}

static float keep_pooled(const void *ctx, uint32_t i) { return ((const snap_state *)ctx)->pooled[i]; }

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    snap_state *s = state;
    uint32_t n = req->n_candidates, B = req->block;
    float *acc = s->acc + (size_t)req->group * s->cap;
    for (uint32_t i = 0; i < n; i++) {
        float w = 0.0f;
        if (req->window_score)
            w = req->window_score[i];
        else
            for (uint32_t j = 0; j < B; j++) w += acc[req->candidates[i] + j];
        s->w[i] = w;
    }
    pool(s, s->w, n, s->pooled);
    kvc__lowest_k_fn(s->idx, n, req->n_victims, keep_pooled, s, victims);
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[victims[i]];
    for (uint32_t i = 0; i < s->cap; i++) acc[i] = 0.0f; /* the next window starts now */
    return 0;
}

/* The prompt's prefix (everything before the observation window) is pooled
 * in position order; candidates are all in the prefix. */
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    snap_state *s = state;
    uint32_t prefix = req->n_tokens - req->n_window;
    if (!req->score) { /* no window: keep the most recent */
        for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
        return 0;
    }
    pool(s, req->score, prefix, s->pooled);
    kvc__lowest_k_fn(req->candidates, req->n_candidates, req->n_victims, keep_pooled, s, victims);
    return 0;
}

static const char *const pools[] = {"max", "avg", NULL};
static const kvc_param params[] = {
    {"kernel", 7, 1, 255, NULL, "width of the 1-D pooling over neighbouring positions"},
    {"pool", POOL_MAX, 0, 1, pools, "max: max_pool1d (SnapKV LongBench); avg: avg_pool1d (kvpress)"},
};

static const kvc_policy snapkv = {
    KVC__POLICY_INIT("snapkv", KVC_NEED_QUERY_WINDOW),
    .default_recent = 32,
    .default_chunk = 32,
    .default_query_window = 32,
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

const kvc_policy *kvc_policy_snapkv(void) { return &snapkv; }
