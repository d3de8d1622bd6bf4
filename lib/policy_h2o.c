/* h2o: Heavy-Hitter Oracle (Zhang et al. 2023, arXiv 2306.14048). Each slot
 * accumulates the attention mass it receives; the least accumulated goes.
 * Half the budget is a protected recent window, as in the reference code.
 * norm=lifetime divides by the steps a token was observed, so old tokens are
 * not favoured merely for having been around longer. */
#include "policy_util.h"

enum { NORM_SUM = 0, NORM_LIFETIME = 1 };

/* The steps a token was observed are the group's attend count now minus its
 * count when the token arrived (on_attend always covers every resident slot),
 * so each attend writes one counter instead of a per-slot array: half the
 * per-attend memory traffic of the policy. */
typedef struct {
    uint32_t cap, norm;
    float *acc;
    uint32_t *birth;   /* per slot: its group's attend count at insert */
    uint32_t *attends; /* per group: attends observed (wraps; differences stay exact) */
} h2o_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(h2o_state)) + kvc__slot_arrays(ctx, 1, sizeof(float)) +
           kvc__slot_arrays(ctx, 1, sizeof(uint32_t)) + (size_t)ctx->n_groups * sizeof(uint32_t);
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    h2o_state *s = state;
    const size_t slots = (size_t)ctx->n_groups * ctx->capacity;
    s->cap = ctx->capacity;
    s->norm = (uint32_t)ctx->params[0];
    s->acc = kvc__past_hdr(state, sizeof(h2o_state));
    s->birth = (uint32_t *)(void *)(s->acc + slots);
    s->attends = s->birth + slots;
    for (uint32_t g = 0; g < ctx->n_groups; g++) s->attends[g] = 0;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    h2o_state *s = state;
    (void)tok;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
    s->birth[(size_t)g * s->cap + slot] = s->attends[g];
}

/* Runs on every attend over all resident slots: written as blocks of 4
 * independent scalars on non-aliasing pointers so gcc and clang vectorise it
 * at -O2 (the plain loop stays scalar under gcc). */
static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    h2o_state *s = state;
    float *restrict acc = s->acc + (size_t)g * s->cap;
    const float *restrict m = mass;
    s->attends[g]++;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float a0 = acc[i] + m[i], a1 = acc[i + 1] + m[i + 1], a2 = acc[i + 2] + m[i + 2], a3 = acc[i + 3] + m[i + 3];
        acc[i] = a0, acc[i + 1] = a1, acc[i + 2] = a2, acc[i + 3] = a3;
    }
    for (; i < n; i++) acc[i] += m[i];
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    h2o_state *s = state;
    const float *acc = s->acc + (size_t)g * s->cap;
    const uint32_t *birth = s->birth + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) {
        float a = acc[slots[i]];
        uint32_t t = s->attends[g] - birth[slots[i]];
        keep[i] = s->norm == NORM_LIFETIME ? a / (float)(t ? t : 1) : a;
    }
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    h2o_state *s = state;
    size_t b = (size_t)g * s->cap;
    s->acc[b + to] = s->acc[b + from];
    s->birth[b + to] = s->birth[b + from];
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
