/* User-defined policies written only against the public header (kvc.h):
 * a score policy with state, parameters set through a spec string and every
 * lifecycle hook; a select policy; a query-window select policy whose
 * window scores are recomputed here; and an older, shorter vtable. */
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"


/* ------------------------------------------------------------ "decay" */
/* Keep-score: exponentially decayed attention mass; with bonus=odd, odd
 * positions get +1000. Mirrors the slot -> position map through on_insert
 * and on_move, so the test can check the core told it every move. */

typedef struct {
    uint32_t groups, cap, bonus;
    float decay;
    float *score;
    int64_t *pos;
} decay_state;

static struct {
    int inits, finis, zeroed, aligned;
    kvc_policy_ctx ctx;
    double params[2];
    decay_state *state;
    uint32_t attend_n, moves;
    uint64_t last_seq;
} du;

static size_t decay_size(const kvc_policy_ctx *ctx) {
    size_t n = (size_t)ctx->n_groups * ctx->capacity;
    return 64 + n * (sizeof(float) + sizeof(int64_t));
}

static int decay_init(void *state, const kvc_policy_ctx *ctx) {
    size_t size = decay_size(ctx);
    const unsigned char *b = state;
    int zero = 1;
    for (size_t i = 0; i < size; i++) zero &= b[i] == 0;
    du.zeroed &= zero;
    du.aligned &= ((uintptr_t)state % 64) == 0;
    du.inits++;
    du.ctx = *ctx;
    du.params[0] = ctx->params[0];
    du.params[1] = ctx->params[1];
    decay_state *s = state;
    s->groups = ctx->n_groups;
    s->cap = ctx->capacity;
    s->decay = (float)ctx->params[0];
    s->bonus = (uint32_t)ctx->params[1];
    s->pos = (int64_t *)(void *)((char *)state + 64);
    s->score = (float *)(void *)(s->pos + (size_t)s->groups * s->cap);
    for (size_t i = 0; i < (size_t)s->groups * s->cap; i++) s->pos[i] = -1;
    du.state = s;
    return 0;
}

static void decay_fini(void *state) {
    (void)state;
    du.finis++;
}

static void decay_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    decay_state *s = state;
    s->score[(size_t)g * s->cap + slot] = 0.0f;
    s->pos[(size_t)g * s->cap + slot] = tok->pos;
    du.last_seq = tok->seq;
}

static void decay_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    decay_state *s = state;
    for (uint32_t i = 0; i < n; i++) s->score[(size_t)g * s->cap + i] = s->decay * s->score[(size_t)g * s->cap + i] + mass[i];
    du.attend_n = n;
}

static float decay_keep(const decay_state *s, uint32_t g, uint32_t slot) {
    size_t i = (size_t)g * s->cap + slot;
    return s->score[i] + (s->bonus && (s->pos[i] & 1) ? 1000.0f : 0.0f);
}

static void decay_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    for (uint32_t i = 0; i < n; i++) keep[i] = decay_keep(state, g, slots[i]);
}

static void decay_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    decay_state *s = state;
    size_t b = (size_t)g * s->cap;
    s->score[b + to] = s->score[b + from];
    s->pos[b + to] = s->pos[b + from];
    s->pos[b + from] = -1;
    du.moves++;
}

static const char *const bonus_names[] = {"none", "odd", NULL};
static const kvc_param decay_params[] = {
    {"decay", 0.5, 0.0, 1.0, NULL, "weight of the past"},
    {"bonus", 0, 0, 1, bonus_names, "none, or keep odd positions"},
};

static const kvc_policy decay_policy = {
    .abi_version = KVC_POLICY_ABI,
    .struct_size = sizeof(kvc_policy),
    .name = "decay",
    .needs = KVC_NEED_ATTN,
    .default_recent = 3,
    .n_params = 2,
    .params = decay_params,
    .state_size = decay_size,
    .init = decay_init,
    .on_insert = decay_insert,
    .on_attend = decay_attend,
    .score = decay_score,
    .on_move = decay_move,
    .fini = decay_fini,
};

/* Expected victims of group g under the policy's own scores: the `chunk`
 * lowest candidates, ties to the older; candidates exclude the first `sink`
 * tokens and the last `recent` (positions here are 10*t, so order = seq). */
static void expected_victims(const kvc_cache *c, uint32_t g, uint32_t sink, uint32_t recent, uint32_t chunk,
                             int64_t appended, int64_t *victims) {
    uint32_t cap = kvc_cache_capacity(c);
    int64_t pos[64];
    kvc_cache_positions(c, g, pos);
    for (uint32_t k = 0; k < chunk; k++) {
        int best = -1;
        for (uint32_t s = 0; s < cap; s++) {
            int64_t p = pos[s];
            if (p < 0 || p / 10 < sink || p / 10 + recent >= appended) continue;
            int taken = 0;
            for (uint32_t j = 0; j < k; j++) taken |= victims[j] == p;
            if (taken) continue;
            float kp = decay_keep(du.state, g, s), kb = best < 0 ? 0 : decay_keep(du.state, g, (uint32_t)best);
            if (best < 0 || kp < kb || (kp == kb && p < pos[best])) best = (int)s;
        }
        victims[k] = best >= 0 ? pos[best] : -2;
    }
}

TEST(user_policy_score_path_store) {
    memset(&du, 0, sizeof du);
    du.zeroed = du.aligned = 1;
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 2, 4, 8, 16, KVC_DTYPE_F32, KVC_MODE_STORE, &decay_policy, NULL) == KVC_OK);
    int64_t r;
    CHECK(kvc_cache_get(c, KVC_OPT_RECENT, &r) == KVC_OK && r == 3); /* the policy's default */
    REQUIRE(kvc_cache_apply_spec(c, "decay=0.25 bonus=odd sink=1 recent=2 chunk=2") == KVC_OK);
    double v;
    CHECK(kvc_cache_get_param(c, "bonus", &v) == KVC_OK && v == 1);
    CHECK(kvc_cache_get_param(c, "decay", &v) == KVC_OK && v == 0.25);
    CHECK_EQ(kvc_cache_apply_spec(c, "bonus=even"), KVC_EUNKNOWN); /* not one of its choices */
    CHECK_EQ(kvc_cache_apply_spec(c, "bonus=2"), KVC_ERANGE);
    CHECK_EQ(kvc_cache_apply_spec(c, "decay=0.5 colour=3"), KVC_EUNKNOWN);
    CHECK(kvc_cache_get_param(c, "decay", &v) == KVC_OK && v == 0.25); /* all or nothing */
    CHECK_EQ(du.inits, 0);
    CHECK(strcmp(kvc_cache_policy_name(c), "decay") == 0);

    uint64_t rs = 21;
    float k[16], val[16], q[32], out[32];
    int64_t pos[2][16];
    for (int t = 0; t < 200; t++) {
        for (int i = 0; i < 16; i++) k[i] = kvt_frand(&rs), val[i] = kvt_frand(&rs);
        for (int i = 0; i < 32; i++) q[i] = 3 * kvt_frand(&rs);
        int64_t want[2][2] = {{-1, -1}, {-1, -1}};
        int full = kvc_cache_len(c) == 16;
        if (full)
            for (uint32_t g = 0; g < 2; g++) expected_victims(c, g, 1, 2, 2, t, want[g]);
        for (uint32_t g = 0; g < 2; g++) kvc_cache_positions(c, g, pos[g]);
        REQUIRE(kvc_cache_append(c, 10 * t, k, val) == KVC_OK);
        CHECK_EQ(du.last_seq, t);
        for (uint32_t g = 0; g < 2; g++) {
            int64_t now[16];
            kvc_cache_positions(c, g, now);
            /* the policy's mirror, kept through on_insert and on_move, matches the map */
            CHECKF(memcmp(now, du.state->pos + g * 16, sizeof now) == 0, "step %d group %u: mirror differs", t, g);
            if (!full) continue;
            for (int j = 0; j < 2; j++) {
                int still = 0;
                for (int s = 0; s < 16; s++) still |= now[s] == want[g][j];
                CHECKF(!still && want[g][j] >= 0, "step %d group %u: expected victim %lld still resident", t, g,
                       (long long)want[g][j]);
            }
        }
        if (t % 3 != 2) {
            REQUIRE(kvc_cache_attend(c, q, out) == KVC_OK);
            CHECK_EQ(du.attend_n, kvc_cache_len(c));
        }
        if (kvt_failed()) break;
    }
    CHECK(du.moves > 0);
    /* what init saw */
    CHECK_EQ(du.inits, 1);
    CHECK(du.zeroed && du.aligned);
    CHECK(du.ctx.n_groups == 2 && du.ctx.capacity == 16 && du.ctx.head_dim == 8 && du.ctx.q_per_group == 2);
    CHECK(du.ctx.block == 1 && du.ctx.chunk == 2 && du.ctx.sink == 1 && du.ctx.recent == 2);
    CHECK(du.ctx.mode == KVC_MODE_STORE && du.ctx.rng != NULL);
    CHECK(du.params[0] == 0.25 && du.params[1] == 1);
    /* reset: fini, zeroed state, init again; destroy: fini */
    CHECK_EQ(kvc_cache_reset(c), KVC_OK);
    CHECK(du.inits == 2 && du.finis == 1 && du.zeroed);
    for (int s = 0; s < 16; s++) CHECK_EQ(du.state->pos[s], -1);
    kvc_cache_destroy(c);
    CHECK_EQ(du.finis, 2);
}

TEST(user_policy_score_path_index_shared) {
    memset(&du, 0, sizeof du);
    du.zeroed = du.aligned = 1;
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 2, 2, 4, 12, KVC_DTYPE_F32, KVC_MODE_INDEX, &decay_policy, NULL) == KVC_OK);
    REQUIRE(kvc_cache_apply_spec(c, "scope=shared sink=2 recent=1 chunk=3 decay=1") == KVC_OK);
    float mass[12];
    uint32_t slot;
    int64_t ev[3];
    uint64_t rs = 4;
    for (int t = 0; t < 120; t++) {
        int64_t want[3];
        int full = kvc_cache_len(c) == 12;
        if (full) {
            /* an observation reaches the policy at the reserve, before the eviction */
            for (int s = 0; s < 12; s++) mass[s] = (kvt_frand(&rs) + 1) / 4;
            REQUIRE(kvc_cache_observe(c, 0, mass, 12) == KVC_OK);
            for (int s = 0; s < 12; s++) du.state->score[s] += mass[s]; /* decay=1: a plain sum */
            expected_victims(c, 0, 2, 1, 3, t, want);
            for (int s = 0; s < 12; s++) du.state->score[s] -= mass[s];
        }
        REQUIRE(kvc_cache_reserve(c, 10 * t, NULL, NULL, &slot, ev) == KVC_OK);
        if (full) {
            CHECK_EQ(du.attend_n, 12); /* INDEX mode: one entry per slot */
            for (int j = 0; j < 3; j++) {
                int found = 0;
                for (int i = 0; i < 3; i++) found |= ev[i] == want[j];
                CHECKF(found, "step %d: expected victim %lld not evicted", t, (long long)want[j]);
            }
        }
        /* occupied slots match the mirror (a freed slot is not announced: it
         * keeps its stale entry until the next on_insert) */
        int64_t now[12];
        kvc_cache_positions(c, 0, now);
        for (int s = 0; s < 12; s++) CHECK(now[s] < 0 || now[s] == du.state->pos[s]);
        if (kvt_failed()) break;
    }
    CHECK_EQ(du.moves, 0); /* nothing moves in INDEX mode */
    CHECK(du.ctx.n_groups == 1 && du.ctx.q_per_group == 2 && du.ctx.mode == KVC_MODE_INDEX);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------ "evens" */
/* select path: evict units whose first position is even, oldest first, then
 * odd ones; checks the request it gets. */

static struct {
    uint32_t calls, bad_requests, groups, chunk, block, cap;
    int64_t chosen[8][8]; /* [group][victim]: first position of each chosen unit */
} ev_log;

static int evens_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    ev_log.calls++;
    uint32_t n = req->n_candidates, k = 0;
    int bad = req->group >= ev_log.groups || req->n_victims != ev_log.chunk || req->block != ev_log.block ||
              req->window_score != NULL || req->rng == NULL || n < req->n_victims;
    for (uint32_t i = 0; i < n; i++) {
        bad |= req->candidates[i] >= ev_log.cap || req->candidates[i] % req->block != 0;
        bad |= req->positions[req->candidates[i]] < 0;
        if (i) bad |= req->positions[req->candidates[i]] <= req->positions[req->candidates[i - 1]];
    }
    ev_log.bad_requests += (uint32_t)bad;
    (void)kvc_rng_next(req->rng); /* the generator is usable */
    for (int parity = 0; parity < 2; parity++)
        for (uint32_t i = 0; i < n && k < req->n_victims; i++)
            if ((req->positions[req->candidates[i]] & 1) == parity) {
                ev_log.chosen[req->group][k] = req->positions[req->candidates[i]];
                victims[k++] = req->candidates[i];
            }
    return 0;
}

static const kvc_policy evens_policy = {.abi_version = KVC_POLICY_ABI,
                                        .struct_size = sizeof(kvc_policy),
                                        .name = "evens",
                                        .needs = KVC_NEED_RNG,
                                        .select = evens_select};

TEST(user_policy_select_path) {
    for (int mode = 0; mode < 2; mode++) {
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 3, 3, 2, 24, KVC_DTYPE_BF16, (kvc_mode)mode, &evens_policy, NULL) == KVC_OK);
        REQUIRE(kvc_cache_apply_spec(c, "block=3 chunk=2 recent=4 sink=1") == KVC_OK);
        memset(&ev_log, 0, sizeof ev_log);
        ev_log.groups = 3, ev_log.chunk = 2, ev_log.block = 3, ev_log.cap = 24;
        float kv[6] = {1, 2, 3, 4, 5, 6};
        uint32_t slots[3];
        int64_t evicted[3 * 6], before[3][24], now[24];
        uint64_t rs = 8;
        int64_t p = 0;
        for (int t = 0; t < 150; t++) {
            p += 1 + (int64_t)(kvt_mix64(&rs) % 3); /* mixed parities */
            for (uint32_t g = 0; g < 3; g++) kvc_cache_positions(c, g, before[g]);
            uint32_t calls = ev_log.calls;
            int rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, p, kv, kv)
                                            : kvc_cache_reserve(c, p, NULL, NULL, slots, evicted);
            REQUIRE(rc == KVC_OK);
            if (ev_log.calls == calls) continue;
            CHECK_EQ(ev_log.calls - calls, 3); /* once per group */
            for (uint32_t g = 0; g < 3; g++) {
                /* exactly the chosen units left: their 3 slots' tokens each */
                kvc_cache_positions(c, g, now);
                uint32_t gone = 0;
                for (int s = 0; s < 24; s++) {
                    if (before[g][s] < 0) continue;
                    int still = 0;
                    for (int j = 0; j < 24; j++) still |= now[j] == before[g][s];
                    if (still) continue;
                    gone++;
                    int mine = 0;
                    for (int j = 0; j < 2; j++) mine |= before[g][(s / 3) * 3] == ev_log.chosen[g][j];
                    CHECKF(mine, "mode %d step %d group %u: position %lld left without being chosen", mode, t, g,
                           (long long)before[g][s]);
                }
                CHECK_EQ(gone, 6);
            }
            if (kvt_failed()) break;
        }
        CHECK(ev_log.calls > 0);
        CHECK_EQ(ev_log.bad_requests, 0);
        kvc_cache_destroy(c);
    }
}

/* ------------------------------------------------------------ "window probe" */
/* A select policy with KVC_NEED_QUERY_WINDOW: the window scores it gets are
 * recomputed here in double from the stored keys and the last queries. */

enum { WP_KV = 2, WP_Q = 4, WP_D = 5, WP_CAP = 16, WP_WIN = 3 };
static struct {
    int calls, null_scores;
    uint32_t n[WP_KV];
    uint32_t cand[WP_KV][WP_CAP];
    float ws[WP_KV][WP_CAP];
} wp;

static int wp_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    wp.calls++;
    if (!req->window_score) wp.null_scores++;
    wp.n[req->group] = req->n_candidates;
    for (uint32_t i = 0; i < req->n_candidates; i++) {
        wp.cand[req->group][i] = req->candidates[i];
        wp.ws[req->group][i] = req->window_score ? req->window_score[i] : -1.0f;
    }
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
    return 0;
}

static const kvc_policy wp_policy = {.abi_version = KVC_POLICY_ABI,
                                     .struct_size = sizeof(kvc_policy),
                                     .name = "window_probe",
                                     .needs = KVC_NEED_QUERY_WINDOW,
                                     .select = wp_select};

TEST(user_policy_query_window_scores) {
    for (int shared = 0; shared < 2; shared++)
        for (uint32_t block = 1; block <= 2; block++) {
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, WP_KV, WP_Q, WP_D, WP_CAP, KVC_DTYPE_F32, KVC_MODE_STORE, &wp_policy, NULL) ==
                    KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_QUERY_WINDOW, WP_WIN) == KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_SCOPE, shared) == KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_BLOCK, block) == KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_RECENT, 2) == KVC_OK);
            REQUIRE(kvc_cache_set_scale(c, 0.6f) == KVC_OK);
            memset(&wp, 0, sizeof wp);
            float k[WP_KV * WP_D], q[8][WP_Q * WP_D], out[WP_Q * WP_D];
            uint64_t rs = 31 + block;
            int nq = 0;
            for (int t = 0; t < 60; t++) {
                for (int i = 0; i < WP_KV * WP_D; i++) k[i] = 2 * kvt_frand(&rs);
                /* the keys of the candidates before the append, by slot */
                float keys[WP_KV][WP_CAP][WP_D];
                for (uint32_t h = 0; h < WP_KV; h++)
                    for (uint32_t s = 0; s < kvc_cache_len(c); s++) kvc_cache_read(c, h, s, keys[h][s], NULL);
                int calls = wp.calls;
                REQUIRE(kvc_cache_append(c, t, k, k) == KVC_OK);
                if (wp.calls != calls && nq > 0) {
                    uint32_t G = shared ? 1 : WP_KV;
                    for (uint32_t g = 0; g < G; g++) {
                        double ref[WP_CAP] = {0}, total = 0;
                        int rows = 0;
                        for (int qi = nq > WP_WIN ? nq - WP_WIN : 0; qi < nq; qi++)
                            for (uint32_t h = 0; h < WP_Q; h++) {
                                uint32_t kv = h / (WP_Q / WP_KV);
                                if (!shared && kv != g) continue;
                                double l[WP_CAP * 2], mx = -INFINITY, sum = 0;
                                uint32_t m = 0;
                                for (uint32_t u = 0; u < wp.n[g]; u++)
                                    for (uint32_t j = 0; j < block; j++, m++) {
                                        double dot = 0;
                                        for (int e = 0; e < WP_D; e++)
                                            dot += (double)q[qi % 8][h * WP_D + e] * keys[kv][wp.cand[g][u] + j][e];
                                        l[m] = 0.6f * dot;
                                        mx = l[m] > mx ? l[m] : mx;
                                    }
                                for (uint32_t i = 0; i < m; i++) sum += exp(l[i] - mx);
                                m = 0;
                                for (uint32_t u = 0; u < wp.n[g]; u++)
                                    for (uint32_t j = 0; j < block; j++, m++) ref[u] += exp(l[m] - mx) / sum;
                                rows++;
                            }
                        for (uint32_t u = 0; u < wp.n[g]; u++) {
                            ref[u] /= rows;
                            total += wp.ws[g][u];
                            CHECKF(fabs(wp.ws[g][u] - ref[u]) < 1e-6, "shared %d block %u group %u unit %u: %.8g vs %.8g",
                                   shared, block, g, u, wp.ws[g][u], ref[u]);
                        }
                        CHECK(fabs(total - 1.0) < 1e-5); /* renormalised over the candidates */
                    }
                }
                if (t % 2 == 0) {
                    for (int i = 0; i < WP_Q * WP_D; i++) q[nq % 8][i] = 2 * kvt_frand(&rs);
                    REQUIRE(kvc_cache_attend(c, q[nq % 8], out) == KVC_OK);
                    nq++;
                }
                if (kvt_failed()) break;
            }
            CHECK(wp.calls > 0);
            kvc_cache_destroy(c);
        }
    /* INDEX mode holds no queries: window_score is NULL */
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 2, 4, KVC_DTYPE_F32, KVC_MODE_INDEX, &wp_policy, NULL) == KVC_OK);
    memset(&wp, 0, sizeof wp);
    uint32_t slot;
    for (int t = 0; t < 6; t++) REQUIRE(kvc_cache_reserve(c, t, NULL, NULL, &slot, NULL) == KVC_OK);
    CHECK(wp.calls == 2 && wp.null_scores == 2);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------ older vtable */
/* A policy compiled against a shorter kvc_policy (struct_size ends before
 * `select`): the core must not read past it, so the stray select below is
 * never called and the score path is used. */

static int stray_calls;
static int stray_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state, (void)req, (void)victims;
    stray_calls++;
    return KVC_EPOLICY;
}
static void oldest_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)g, (void)slots;
    for (uint32_t i = 0; i < n; i++) keep[i] = 1.0f;
}

TEST(user_policy_shorter_vtable) {
    kvc_policy old = {.abi_version = KVC_POLICY_ABI,
                      .struct_size = (uint32_t)offsetof(kvc_policy, select),
                      .name = "old",
                      .score = oldest_score,
                      .select = stray_select};
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 2, 4, KVC_DTYPE_F32, KVC_MODE_STORE, &old, NULL) == KVC_OK);
    old.name = "changed after create"; /* the struct was copied */
    old.score = NULL;
    float kv[2] = {1, 2};
    for (int t = 0; t < 10; t++) REQUIRE(kvc_cache_append(c, t, kv, kv) == KVC_OK);
    CHECK_EQ(stray_calls, 0);
    int64_t pos[4];
    kvc_cache_positions(c, 0, pos);
    int64_t sum = pos[0] + pos[1] + pos[2] + pos[3];
    CHECK_EQ(sum, 6 + 7 + 8 + 9); /* equal scores: the oldest went each time */
    CHECK(strcmp(kvc_cache_policy_name(c), "old") == 0);
    kvc_cache_destroy(c);
}

/* kvc_cache_control reaches the policy's control slot with its state, and
 * kvc_policy::user comes back in the context. */
typedef struct {
    void *user;
    int last_op;
} ctl_state;

static size_t ctl_state_size(const kvc_policy_ctx *ctx) {
    (void)ctx;
    return sizeof(ctl_state);
}
static int ctl_init(void *state, const kvc_policy_ctx *ctx) {
    ((ctl_state *)state)->user = ctx->user;
    return 0;
}
static int ctl_control(void *state, int op, void *arg) {
    ctl_state *s = state;
    if (op != 7) return KVC_ENOTSUP;
    s->last_op = op;
    *(void **)arg = s->user;
    return KVC_OK;
}

TEST(user_policy_control_and_user_pointer) {
    static int marker;
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = "ctl";
    p.state_size = ctl_state_size;
    p.init = ctl_init;
    p.control = ctl_control;
    p.user = &marker;
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_INDEX, &p, NULL) == KVC_OK);
    void *got = NULL;
    CHECK_EQ(kvc_cache_control(c, 7, &got), KVC_OK);
    CHECK(got == &marker);
    CHECK_EQ(kvc_cache_control(c, 8, &got), KVC_ENOTSUP);
    CHECK_EQ(kvc_cache_control(NULL, 7, &got), KVC_EINVAL);
    kvc_cache_destroy(c);
    /* a built-in policy has no control operations */
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_window(), NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_control(c, 1, NULL), KVC_ENOTSUP);
    CHECK(kvc_cache_last_error(c)[0] != 0);
    kvc_cache_destroy(c);
}
