/* keyformer: accumulated Gumbel-softmax scores (Adnan et al., "Keyformer",
 * arXiv 2403.09054).
 *
 * H2O's accumulated attention, but each step adds a Gumbel-perturbed softmax
 * with a temperature that rises over the generation: the noise keeps tokens
 * that were unlucky in one step in the running, and the rising temperature
 * flattens the later, noisier contributions. Step s adds to each slot
 *     y_i = softmax_i((x_i + g_i) / tau_s),  g_i ~ Gumbel(0, 1),
 *     tau_s = tau_init + (tau_end - tau_init) * min(s, horizon) / horizon,
 * where x_i are the step's attention logits. The core hands over softmax
 * weights m_i, and a softmax is shift-invariant, so x_i = log m_i serves (a
 * zero weight stays zero). exp(g_i) = 1/E_i with E_i ~ Exp(1), hence
 * y_i is proportional to (m_i / E_i)^(1/tau_s). The least accumulated goes. The
 * noise comes from the cache's seeded generator, one draw per slot and step.
 * GQA: the perturbation is applied to the group's mean weight (the reference
 * is multi-head: one query head per kv head). */
#include <math.h>

#include "policy_util.h"

typedef struct {
    uint32_t cap;
    double tau_init, tau_end, horizon;
    kvc_rng *rng;
    float *acc;        /* per (group, slot) */
    uint32_t *steps;   /* per group: steps seen */
    double *z;         /* scratch: capacity log-weights */
} keyformer_state;

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(keyformer_state)) + kvc__slot_arrays(ctx, 1, sizeof(float)) +
           (size_t)ctx->n_groups * sizeof(uint32_t) + 8 + (size_t)ctx->capacity * sizeof(double);
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    keyformer_state *s = state;
    size_t slots = (size_t)ctx->n_groups * ctx->capacity;
    s->cap = ctx->capacity;
    s->tau_init = ctx->params[0];
    s->tau_end = ctx->params[1];
    s->horizon = ctx->params[2];
    s->rng = ctx->rng;
    s->acc = kvc__past_hdr(state, sizeof(keyformer_state));
    s->steps = (uint32_t *)(void *)(s->acc + slots);
    s->z = (double *)(void *)(((uintptr_t)(s->steps + ctx->n_groups) + 7) & ~(uintptr_t)7);
    for (uint32_t g = 0; g < ctx->n_groups; g++) s->steps[g] = 0;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    keyformer_state *s = state;
    (void)tok;
    s->acc[(size_t)g * s->cap + slot] = 0.0f;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    keyformer_state *s = state;
    double t = s->steps[g] < s->horizon ? s->steps[g] : s->horizon;
    double inv_tau = 1.0 / (s->tau_init + (s->tau_end - s->tau_init) * t / s->horizon);
    if (s->steps[g] != UINT32_MAX) s->steps[g]++;
    double zmax = -INFINITY;
    for (uint32_t i = 0; i < n; i++) {
        const double u = kvc_rng_uniform(s->rng); /* drawn for every slot, in slot order */
        s->z[i] = -INFINITY;
        if (mass[i] > 0.0f) {
            double e = -log(1.0 - u); /* Exp(1) */
            if (e < 1e-300) e = 1e-300;
            s->z[i] = (log((double)mass[i]) - log(e)) * inv_tau;
        }
        if (s->z[i] > zmax) zmax = s->z[i];
    }
    if (zmax == -INFINITY) return; /* no weight anywhere: nothing to add */
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) sum += (s->z[i] = exp(s->z[i] - zmax));
    float *acc = s->acc + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) acc[i] += (float)(s->z[i] / sum);
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    keyformer_state *s = state;
    for (uint32_t i = 0; i < n; i++) keep[i] = s->acc[(size_t)g * s->cap + slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    keyformer_state *s = state;
    s->acc[(size_t)g * s->cap + to] = s->acc[(size_t)g * s->cap + from];
}

static const kvc_param params[] = {
    {"tau_init", 1.0, 0.01, 100.0, NULL, "Gumbel-softmax temperature at the first step"},
    {"tau_end", 2.0, 0.01, 100.0, NULL, "temperature reached after `horizon` steps"},
    {"horizon", 128, 1, 1e9, NULL, "steps over which the temperature rises (the reference's max_new_tokens)"},
};

static const kvc_policy keyformer = {
    KVC__POLICY_INIT("keyformer", KVC_NEED_ATTN | KVC_NEED_RNG),
    .default_recent = KVC_RECENT_PERCENT(30),
    .n_params = 3,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_keyformer(void) { return &keyformer; }
