/* sink (StreamingLLM, Xiao et al. 2023, arXiv 2309.17453): the first tokens
 * absorb attention mass, so keep `sink` of them (default 4) and a window of the
 * most recent. The core protects the sinks; among the rest the oldest goes. */
#include "policy_util.h"

static void score(void *state, uint32_t group, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)group, (void)slots;
    for (uint32_t i = 0; i < n; i++) keep[i] = 0.0f;
}

/* Prefill keeps the most recent too: the oldest candidates go. */
static int prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
    return 0;
}

static const kvc_policy sink = {KVC__POLICY_INIT("sink", 0), .default_sink = 4, .score = score,
                                 .prefill = prefill};

const kvc_policy *kvc_policy_sink(void) { return &sink; }
