/* vatp: value-aware token pruning (Guo et al. 2024, arXiv 2406.12335,
 * "Attention Score is not All You Need for Token Importance"): the keep-score
 * is the accumulated attention mass times the value vector's L1 norm. */
#include "policy_util.h"

typedef struct {
    uint32_t cap;
    float *acc, *vl1;
} vatp_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(vatp_state)) + kvc__slot_arrays(ctx, 2, sizeof(float));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    vatp_state *s = state;
    s->cap = ctx->capacity;
    s->acc = kvc__past_hdr(state, sizeof(vatp_state));
    s->vl1 = s->acc + (size_t)ctx->n_groups * ctx->capacity;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    vatp_state *s = state;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
    s->vl1[(size_t)g * s->cap + slot] = tok->value_l1;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    vatp_state *s = state;
    float *acc = s->acc + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) acc[i] += mass[i];
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    vatp_state *s = state;
    size_t b = (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) keep[i] = s->acc[b + slots[i]] * s->vl1[b + slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    vatp_state *s = state;
    size_t b = (size_t)g * s->cap;
    s->acc[b + to] = s->acc[b + from];
    s->vl1[b + to] = s->vl1[b + from];
}

/* Prefill: the window's attention stands for the accumulated mass. */
static float keep_prefill(const void *ctx, uint32_t t) {
    const kvc_prefill *req = ctx;
    return (req->score ? req->score[t] : 0.0f) * req->tokens[t].value_l1;
}
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    kvc__lowest_k_fn(req->candidates, req->n_candidates, req->n_victims, keep_prefill, req, victims);
    return 0;
}

static const kvc_policy vatp = {
    KVC__POLICY_INIT("vatp", KVC_NEED_ATTN | KVC_NEED_VALUE_STATS),
    .default_sink = 4,
    /* as h2o, whose budget split VATP builds on: a new token has no mass yet,
     * and without a recent window it would be the first to go */
    .default_recent = KVC_RECENT_HALF,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .score = score,
    .on_move = on_move,
    .prefill = prefill,
};

const kvc_policy *kvc_policy_vatp(void) { return &vatp; }
