/* The adversarial control of VaSE's pilot experiment: evict the tokens whose
 * value vectors have the LARGEST range (max - min over head_dim) first, the
 * exact opposite of VaSE's reservation. If value range marks the tokens a
 * model needs, this must do worse than evicting at random. Written against
 * the public header only, like any user policy. */
#include "adversary.h"

#include <stddef.h>

typedef struct {
    uint32_t cap;
    float range[]; /* groups x capacity */
} adv_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return sizeof(adv_state) + (size_t)ctx->n_groups * ctx->capacity * sizeof(float);
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    ((adv_state *)state)->cap = ctx->capacity;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    adv_state *s = state;
    s->range[(size_t)g * s->cap + slot] = tok->value_range;
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    adv_state *s = state;
    for (uint32_t i = 0; i < n; i++) keep[i] = -s->range[(size_t)g * s->cap + slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    adv_state *s = state;
    s->range[(size_t)g * s->cap + to] = s->range[(size_t)g * s->cap + from];
}

static const kvc_policy adversary = {
    .abi_version = KVC_POLICY_ABI,
    .struct_size = sizeof(kvc_policy),
    .name = "vrange_max",
    .needs = KVC_NEED_VALUE_STATS,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *reason_policy_vrange_max(void) { return &adversary; }
