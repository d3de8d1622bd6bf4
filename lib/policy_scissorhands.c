/* scissorhands: persistence of importance (Liu et al., "Scissorhands",
 * arXiv 2305.17118).
 *
 * Tokens that mattered once keep mattering, so a token's record over a
 * history window predicts its future: at every attention step a token whose
 * mass is below the uniform share 1/t (t = tokens of the sequence so far) is
 * counted as unimportant at that step, and the tokens unimportant in the most
 * steps of the last `history` steps are evicted first (ties: the older one).
 * The count is kept as one bit per step in a ring of `history` bits per slot,
 * so a step costs one bit flip and one counter update per slot, and a token
 * younger than the window simply has fewer steps on record. */
#include "policy_util.h"

typedef struct {
    uint32_t cap, history, words;
    uint64_t seen;     /* tokens inserted so far: the paper's t */
    uint64_t *bits;    /* per (group, slot): `words` words of step flags */
    uint32_t *count;   /* per (group, slot): flags set in the ring */
    uint32_t *step;    /* per group: ring position of the next step */
} scissor_state;

static uint32_t ring_words(const kvc_policy_ctx *ctx) { return ((uint32_t)ctx->params[0] + 63) / 64; }

static size_t state_size(const kvc_policy_ctx *ctx) {
    return kvc__hdr(sizeof(scissor_state)) + kvc__slot_arrays(ctx, ring_words(ctx), sizeof(uint64_t)) +
           kvc__slot_arrays(ctx, 1, sizeof(uint32_t)) + (size_t)ctx->n_groups * sizeof(uint32_t);
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    scissor_state *s = state;
    size_t slots = (size_t)ctx->n_groups * ctx->capacity;
    s->cap = ctx->capacity;
    s->history = (uint32_t)ctx->params[0];
    s->words = ring_words(ctx);
    s->seen = 0;
    s->bits = kvc__past_hdr(state, sizeof(scissor_state));
    s->count = (uint32_t *)(void *)(s->bits + slots * s->words);
    s->step = s->count + slots;
    for (uint32_t g = 0; g < ctx->n_groups; g++) s->step[g] = 0;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    scissor_state *s = state;
    size_t i = (size_t)g * s->cap + slot;
    for (uint32_t w = 0; w < s->words; w++) s->bits[i * s->words + w] = 0;
    s->count[i] = 0;
    if (tok->seq + 1 > s->seen) s->seen = tok->seq + 1;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    scissor_state *s = state;
    double thr = 1.0 / (double)(s->seen ? s->seen : 1);
    uint32_t b = s->step[g], w = b / 64;
    uint64_t bit = 1ull << (b % 64);
    size_t base = (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t *word = &s->bits[(base + i) * s->words + w];
        uint32_t was = (*word & bit) != 0, now = (double)mass[i] < thr;
        s->count[base + i] += now - was; /* the flag of `history` steps ago leaves the window */
        *word = now ? *word | bit : *word & ~bit;
    }
    s->step[g] = b + 1 == s->history ? 0 : b + 1;
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    scissor_state *s = state;
    for (uint32_t i = 0; i < n; i++) keep[i] = -(float)s->count[(size_t)g * s->cap + slots[i]];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    scissor_state *s = state;
    size_t a = (size_t)g * s->cap + from, b = (size_t)g * s->cap + to;
    for (uint32_t w = 0; w < s->words; w++) s->bits[b * s->words + w] = s->bits[a * s->words + w];
    s->count[b] = s->count[a];
}

static const kvc_param params[] = {
    {"history", 400, 1, 65536, NULL, "attention steps over which a token's unimportant steps are counted"},
};

static const kvc_policy scissorhands = {
    KVC__POLICY_INIT("scissorhands", KVC_NEED_ATTN),
    .default_recent = 10,
    .n_params = 1,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_scissorhands(void) { return &scissorhands; }
