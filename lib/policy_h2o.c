/* h2o: Heavy-Hitter Oracle (Zhang et al. 2023, arXiv 2306.14048). Each slot
 * accumulates the attention mass it receives; the least accumulated goes.
 * Half the budget is a protected recent window, as in the reference code.
 * norm=lifetime divides by the steps a token was observed, so old tokens are
 * not favoured merely for having been around longer. */
#include "policy_util.h"

enum { NORM_SUM = 0, NORM_LIFETIME = 1 };

typedef struct {
    uint32_t cap, norm;
    float *acc;
    uint32_t *steps;
} h2o_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(h2o_state)) + kvc__slot_arrays(ctx, 1, sizeof(float)) + kvc__slot_arrays(ctx, 1, sizeof(uint32_t));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    h2o_state *s = state;
    s->cap = ctx->capacity;
    s->norm = (uint32_t)ctx->params[0];
    s->acc = kvc__past_hdr(state, sizeof(h2o_state));
    s->steps = (uint32_t *)(void *)(s->acc + (size_t)ctx->n_groups * ctx->capacity);
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    h2o_state *s = state;
    (void)tok;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
    s->steps[(size_t)g * s->cap + slot] = 0;
}

/* Runs on every attend over all resident slots: written as blocks of 4
 * independent scalars on non-aliasing pointers so gcc and clang vectorise it
 * at -O2 (3x faster than the plain loop, which gcc leaves scalar). */
static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    h2o_state *s = state;
    float *restrict acc = s->acc + (size_t)g * s->cap;
    uint32_t *restrict steps = s->steps + (size_t)g * s->cap;
    const float *restrict m = mass;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float a0 = acc[i] + m[i], a1 = acc[i + 1] + m[i + 1], a2 = acc[i + 2] + m[i + 2], a3 = acc[i + 3] + m[i + 3];
        uint32_t s0 = steps[i] + 1, s1 = steps[i + 1] + 1, s2 = steps[i + 2] + 1, s3 = steps[i + 3] + 1;
        acc[i] = a0, acc[i + 1] = a1, acc[i + 2] = a2, acc[i + 3] = a3;
        steps[i] = s0, steps[i + 1] = s1, steps[i + 2] = s2, steps[i + 3] = s3;
    }
    for (; i < n; i++) {
        acc[i] += m[i];
        steps[i]++;
    }
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    h2o_state *s = state;
    const float *acc = s->acc + (size_t)g * s->cap;
    const uint32_t *steps = s->steps + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) {
        float a = acc[slots[i]];
        uint32_t t = steps[slots[i]];
        keep[i] = s->norm == NORM_LIFETIME ? a / (float)(t ? t : 1) : a;
    }
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    h2o_state *s = state;
    size_t b = (size_t)g * s->cap;
    s->acc[b + to] = s->acc[b + from];
    s->steps[b + to] = s->steps[b + from];
}

static const char *const norms[] = {"sum", "lifetime", NULL};
static const kvc_param params[] = {
    {"norm", NORM_SUM, 0, 1, norms, "sum: accumulated mass; lifetime: mass per observed step"},
};

static const kvc_policy h2o = {
    KVC__POLICY_INIT("h2o", KVC_NEED_ATTN),
    .default_recent = KVC_RECENT_HALF,
    .n_params = 1,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_h2o(void) { return &h2o; }
