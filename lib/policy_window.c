/* window: keep the last `capacity` tokens. Every token scores the same, and
 * the core breaks ties towards the oldest: the victim is always the oldest. */
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

static const kvc_policy window = {KVC__POLICY_INIT("window", 0), .score = score, .prefill = prefill};

const kvc_policy *kvc_policy_window(void) { return &window; }
