/* random: the oblivious baseline of Wang (arXiv 2604.17935): victims drawn
 * uniformly without replacement from the candidates (partial Fisher-Yates). */
#include <string.h>

#include "policy_util.h"

static size_t state_size(const kvc_policy_ctx *ctx) { return (size_t)ctx->capacity * sizeof(uint32_t); }

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    uint32_t *pool = state;
    memcpy(pool, req->candidates, req->n_candidates * sizeof *pool);
    for (uint32_t i = 0; i < req->n_victims; i++) {
        uint32_t j = i + kvc_rng_below(req->rng, req->n_candidates - i);
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        victims[i] = pool[i];
    }
    return 0;
}

/* Prefill: n_victims of the candidates, uniformly, by selection sampling
 * (each taken with probability still-needed / still-unseen): no scratch. */
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    uint32_t need = req->n_victims, m = 0;
    for (uint32_t i = 0; i < req->n_candidates && m < need; i++)
        if (kvc_rng_below(req->rng, req->n_candidates - i) < need - m) victims[m++] = req->candidates[i];
    return 0;
}

static const kvc_policy random_policy = {KVC__POLICY_INIT("random", KVC_NEED_RNG), .state_size = state_size,
                                         .select = select_victims, .prefill = prefill};

const kvc_policy *kvc_policy_random(void) { return &random_policy; }
