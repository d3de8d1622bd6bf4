/* custom_policy: a complete eviction policy written only against <kvc.h>.
 *
 * "lra" (least recently attended) is an LRU cache whose "use" is attention:
 * at each attention step a token is *hit* when its mass is at least `hit`
 * times the mean mass of the slots that received any; a new token counts as
 * hit when it is inserted. The victim is the token whose last hit is oldest
 * (the core breaks ties towards the older position).
 *
 * The program then checks the policy against a small reference model of that
 * rule in INDEX mode (masses chosen here, two observations per step), and runs
 * it in STORE mode next to `window` on a stream in which one early token keeps
 * drawing attention: lra keeps it, window drops it. Exit 1 on any failure. */
#include <stdio.h>
#include <string.h>

#include <kvc.h>

/* ------------------------------------------------------------------ policy */

typedef struct {
    uint32_t cap;
    float hit;
    uint64_t *step; /* per group: attention steps seen */
    uint64_t *last; /* per (group, slot): step of the resident's last hit */
} lra_state;

/* One block, allocated and zeroed by the cache when it freezes. */
static size_t lra_state_size(const kvc_policy_ctx *ctx) {
    return sizeof(lra_state) + ((size_t)ctx->n_groups + (size_t)ctx->n_groups * ctx->capacity) * sizeof(uint64_t);
}

/* Also called by kvc_cache_reset(), on zeroed state again. */
static int lra_init(void *state, const kvc_policy_ctx *ctx) {
    lra_state *s = state;
    s->cap = ctx->capacity;
    s->hit = (float)ctx->params[0]; /* our parameter, possibly set by name or spec */
    s->step = (uint64_t *)(void *)(s + 1);
    s->last = s->step + ctx->n_groups;
    return KVC_OK;
}

static void lra_on_insert(void *state, uint32_t group, uint32_t slot, const kvc_token *tok) {
    lra_state *s = state;
    (void)tok; /* pos, seq, and the stats we asked for in `needs` (none) */
    s->last[(size_t)group * s->cap + slot] = s->step[group];
}

/* One attention step of a group: mass by slot (0 for empty slots). */
static void lra_on_attend(void *state, uint32_t group, const float *mass, uint32_t n) {
    lra_state *s = state;
    uint64_t *last = s->last + (size_t)group * s->cap;
    float sum = 0.0f;
    uint32_t live = 0;
    for (uint32_t i = 0; i < n; i++)
        if (mass[i] > 0.0f) sum += mass[i], live++;
    s->step[group]++;
    if (!live) return;
    const float bar = s->hit * sum / (float)live;
    for (uint32_t i = 0; i < n; i++)
        if (mass[i] > 0.0f && mass[i] >= bar) last[i] = s->step[group];
}

/* Keep-scores of candidate slots: the core evicts the lowest. */
static void lra_score(void *state, uint32_t group, const uint32_t *slots, uint32_t n, float *keep) {
    lra_state *s = state;
    const uint64_t *last = s->last + (size_t)group * s->cap;
    for (uint32_t i = 0; i < n; i++) keep[i] = -(float)(s->step[group] - last[slots[i]]); /* minus the age */
}

/* STORE mode keeps residents dense: follow the slot that moved. */
static void lra_on_move(void *state, uint32_t group, uint32_t from, uint32_t to) {
    lra_state *s = state;
    s->last[(size_t)group * s->cap + to] = s->last[(size_t)group * s->cap + from];
}

static const kvc_param lra_params[] = {
    {"hit", 1.0, 0.0, 1000.0, NULL, "a step hits a token whose mass is >= hit x the mean mass"},
};

static const kvc_policy lra_policy = {
    .abi_version = KVC_POLICY_ABI,
    .struct_size = sizeof(kvc_policy),
    .name = "lra",
    .needs = KVC_NEED_ATTN,
    .default_sink = 4,
    .default_recent = 8,
    .n_params = 1,
    .params = lra_params,
    .state_size = lra_state_size,
    .init = lra_init,
    .on_insert = lra_on_insert,
    .on_attend = lra_on_attend,
    .score = lra_score,
    .on_move = lra_on_move,
};

/* ------------------------------------------------------- reference check */

static uint64_t rng_state = 42;
static uint32_t rnd(uint32_t bound) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % bound;
}

enum { CAP = 16, SINK = 2, RECENT = 3, STEPS = 3000 };

/* INDEX mode, masses in multiples of 1/64 so every sum is exact: the model
 * below must pick the very same victim at every step. */
static int check_against_model(void) {
    kvc_cache *c;
    int rc = kvc_cache_create(&c, 1, 1, 8, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, &lra_policy, NULL);
    if (!rc) rc = kvc_cache_apply_spec(c, "sink=2 recent=3 hit=1.5");
    if (rc) return fprintf(stderr, "create: %s\n", kvc_strerror(rc)), 1;

    int64_t slot_pos[CAP];  /* model: position in each slot, -1 = empty */
    uint64_t last[STEPS];   /* model: last hit of each position */
    uint64_t step = 0;
    float obs[CAP] = {0};   /* model: observed mass, summed over calls */
    int calls = 0, errors = 0;
    for (int s = 0; s < CAP; s++) slot_pos[s] = -1;

    for (int64_t pos = 0; pos < STEPS && !errors; pos++) {
        /* model: the pending observations become one step (their mean) */
        if (calls) {
            float avg[CAP], sum = 0.0f, inv = 1.0f / (float)calls;
            uint32_t live = 0;
            for (int s = 0; s < CAP; s++) {
                avg[s] = obs[s] * inv;
                if (avg[s] > 0.0f) sum += avg[s], live++;
                obs[s] = 0.0f;
            }
            step++;
            for (int s = 0; s < CAP && live; s++)
                if (avg[s] > 0.0f && avg[s] >= 1.5f * sum / (float)live) last[slot_pos[s]] = step;
            calls = 0;
        }
        /* model: victim = oldest last hit among unprotected residents, then oldest position */
        int64_t expect = -1, resident = 0;
        for (int s = 0; s < CAP; s++) resident += slot_pos[s] >= 0;
        if (resident == CAP)
            for (int s = 0; s < CAP; s++) {
                int64_t p = slot_pos[s];
                if (p < SINK || p >= pos - RECENT) continue;
                if (expect < 0 || last[p] < last[expect] || (last[p] == last[expect] && p < expect)) expect = p;
            }

        uint32_t slot;
        int64_t evicted[1];
        rc = kvc_cache_reserve(c, pos, NULL, NULL, &slot, evicted);
        if (rc) return fprintf(stderr, "reserve: %s (%s)\n", kvc_strerror(rc), kvc_cache_last_error(c)), 1;
        if (evicted[0] != expect) {
            fprintf(stderr, "position %lld: lra evicted %lld, the model %lld\n", (long long)pos,
                    (long long)evicted[0], (long long)expect);
            errors++;
        }
        for (int s = 0; s < CAP; s++)
            if (slot_pos[s] == evicted[0]) slot_pos[s] = -1;
        slot_pos[slot] = pos;
        last[pos] = step;

        /* two observations (e.g. two layers), random masses, some steps none */
        int n_obs = rnd(4) == 0 ? 0 : 2;
        for (int o = 0; o < n_obs; o++) {
            float mass[CAP];
            for (int s = 0; s < CAP; s++) mass[s] = slot_pos[s] >= 0 ? (float)rnd(64) / 64.0f : 0.0f;
            if ((rc = kvc_cache_observe(c, 0, mass, CAP))) return fprintf(stderr, "observe failed\n"), 1;
            for (int s = 0; s < CAP; s++) obs[s] += mass[s];
            calls++;
        }
    }
    kvc_stats st;
    kvc_cache_stats(c, &st);
    printf("lra vs. its reference model: %d steps, %llu evictions, %d disagreements\n", STEPS,
           (unsigned long long)st.evictions, errors);
    kvc_cache_destroy(c);
    return errors != 0;
}

/* ------------------------------------------------------ STORE-mode demo */

enum { DIM = 8, SCAP = 8, TOKENS = 40, NEEDLE = 3 };

/* Does a STORE cache with this policy still hold position NEEDLE after the stream? */
static int keeps_needle(const kvc_policy *policy, const char *options, int *kept) {
    kvc_cache *c;
    int rc = kvc_cache_create(&c, 1, 1, DIM, SCAP, KVC_DTYPE_F32, KVC_MODE_STORE, policy, NULL);
    if (!rc) rc = kvc_cache_apply_spec(c, options);
    float k[DIM], v[DIM], q[DIM] = {2.0f}, out[DIM]; /* every query looks along axis 0 */
    for (int64_t pos = 0; pos < TOKENS && !rc; pos++) {
        for (int i = 0; i < DIM; i++) k[i] = v[i] = (float)rnd(200) / 100.0f - 1.0f;
        k[0] = pos == NEEDLE ? 4.0f : 0.0f; /* only the needle's key points there */
        if (!(rc = kvc_cache_append(c, pos, k, v))) rc = kvc_cache_attend(c, q, out);
    }
    int64_t p[SCAP];
    *kept = 0;
    if (!rc && !(rc = kvc_cache_positions(c, 0, p)))
        for (int s = 0; s < SCAP; s++) *kept |= p[s] == NEEDLE;
    if (rc) fprintf(stderr, "%s: %s (%s)\n", policy->name, kvc_strerror(rc), kvc_cache_last_error(c));
    kvc_cache_destroy(c);
    return rc;
}

int main(void) {
    int failed = check_against_model();

    int lra_kept = 0, window_kept = 1;
    failed |= keeps_needle(&lra_policy, "sink=0 recent=2 hit=1", &lra_kept) != 0;
    failed |= keeps_needle(kvc_policy_window(), "", &window_kept) != 0;
    printf("needle at position %d after %d tokens, capacity %d: lra %s it, window %s it\n", NEEDLE, TOKENS, SCAP,
           lra_kept ? "keeps" : "lost", window_kept ? "keeps" : "lost");
    failed |= !lra_kept || window_kept;
    return failed ? 1 : 0;
}
