/* knorm: attention-free key-norm eviction (Devoto et al. 2024, arXiv
 * 2406.11430): keys with a low L2 norm draw high attention, so the largest
 * key norm goes first. Needs no attention weights at all. */
#include "policy_util.h"

typedef struct {
    uint32_t cap;
    float *norm;
} knorm_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(knorm_state)) + kvc__slot_arrays(ctx, 1, sizeof(float));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    knorm_state *s = state;
    s->cap = ctx->capacity;
    s->norm = kvc__past_hdr(state, sizeof(knorm_state));
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    knorm_state *s = state;
    s->norm[(size_t)g * s->cap + slot] = tok->key_norm;
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    knorm_state *s = state;
    const float *norm = s->norm + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) keep[i] = -norm[slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    knorm_state *s = state;
    s->norm[(size_t)g * s->cap + to] = s->norm[(size_t)g * s->cap + from];
}

/* Prefill: the same rule over the prompt, the largest key norms go. */
static float keep_low_norm(const void *ctx, uint32_t t) { return -((const kvc_token *)ctx)[t].key_norm; }
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    kvc__lowest_k_fn(req->candidates, req->n_candidates, req->n_victims, keep_low_norm, req->tokens, victims);
    return 0;
}

static const kvc_policy knorm = {
    KVC__POLICY_INIT("knorm", KVC_NEED_KEY_STATS),
    .default_sink = 4,
    /* the newest keys often have the largest norms: unprotected, knorm evicts
     * the tokens it has just read (docs/reasoning.md, docs/quality.md) */
    .default_recent = KVC_RECENT_HALF,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .score = score,
    .on_move = on_move,
    .prefill = prefill,
};

const kvc_policy *kvc_policy_knorm(void) { return &knorm; }
