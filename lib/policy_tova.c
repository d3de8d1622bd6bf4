/* tova: Token Omission Via Attention (Oren et al. 2024, arXiv 2401.06104).
 * The victim is the token with the least attention at the current step,
 * averaged over heads: shared scope by default, no recent window. */
#include "policy_util.h"

typedef struct {
    uint32_t cap;
    float *cur;
} tova_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(tova_state)) + kvc__slot_arrays(ctx, 1, sizeof(float));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    tova_state *s = state;
    s->cap = ctx->capacity;
    s->cur = kvc__past_hdr(state, sizeof(tova_state));
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    tova_state *s = state;
    (void)tok;
    s->cur[(size_t)g * s->cap + slot] = 0.0f;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    tova_state *s = state;
    float *cur = s->cur + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) cur[i] = mass[i];
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    tova_state *s = state;
    const float *cur = s->cur + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) keep[i] = cur[slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    tova_state *s = state;
    s->cur[(size_t)g * s->cap + to] = s->cur[(size_t)g * s->cap + from];
}

static const kvc_policy tova = {
    KVC__POLICY_INIT("tova", KVC_NEED_ATTN),
    .default_scope = KVC_SCOPE_SHARED,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_tova(void) { return &tova; }
