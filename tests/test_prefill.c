/* Prefill compression: the kept set of every built-in policy (and of a user
 * policy without a prefill slot) against the reference model of its rule
 * (ref_prefill.c), in both modes and scopes, over prompts shorter and much
 * longer than the capacity; rows stored as given; reproducible stochastic
 * rules; every bad input refused with the cache unchanged. */
#include <stdlib.h>

#include "kvc.h"
#include "ref_prefill.h"
#include "snapshot.h"
#include "test.h"

typedef struct {
    uint32_t n_kv, n_q, d, cap, sink, recent;
    int64_t protect;
    uint32_t n, w;
} pf_shape;

static const pf_shape shapes[] = {
    {2, 4, 8, 16, 2, 3, 0, 40, 4},    /* GQA 2 */
    {1, 4, 4, 24, 0, 0, 5, 100, 8},   /* GQA 4, a protected prefix, nothing else */
    {4, 8, 4, 32, 3, 5, 0, 33, 0},    /* no window: score-free rules */
    {2, 2, 4, 16, 1, 0, 0, 12, 4},    /* fits: everything kept */
    {3, 3, 5, 9, 1, 2, 2, 50, 2},     /* odd sizes */
    {1, 1, 3, 5, 0, 1, 0, 60, 1},     /* tiny */
    {2, 4, 16, 64, 4, 8, 10, 300, 32} /* SnapKV-like window */
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

typedef struct {
    const char *spec; /* policy name and parameters; NULL: the user policy below */
    ref_rule rule;
    uint32_t kernel;
    int avgpool;
} pf_rule;

static const pf_rule rules[] = {
    {"window", REF_WINDOW, 0, 0}, {"sink", REF_SINK, 0, 0},   {"h2o", REF_H2O, 0, 0},
    {"tova", REF_TOVA, 0, 0},     {"knorm", REF_KNORM, 0, 0}, {"vatp", REF_VATP, 0, 0},
    {"snapkv", REF_SNAPKV, 7, 0}, {"snapkv kernel=5 pool=avg", REF_SNAPKV, 5, 1},
    {"snapkv kernel=4", REF_SNAPKV, 4, 0}, {"random", REF_RANDOM, 0, 0},
    {"vase", REF_VASE, 0, 0},     {NULL, REF_DEFAULT, 0, 0},
    /* the decode-time policies without a prefill slot: the core's default rule */
    {"vase_dkv", REF_DEFAULT, 0, 0}, {"rkv", REF_DEFAULT, 0, 0}, {"keydiff", REF_DEFAULT, 0, 0},
    {"scissorhands", REF_DEFAULT, 0, 0}, {"keyformer", REF_DEFAULT, 0, 0},
};
#define N_RULES (sizeof rules / sizeof rules[0])

/* A user policy with no prefill slot: the core's default rule applies. */
static void user_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)g, (void)slots;
    for (uint32_t i = 0; i < n; i++) keep[i] = 0.0f;
}
static const kvc_policy user_default = {
    .abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = "user_default", .score = user_score};

static kvc_cache *pf_make(const pf_rule *r, const pf_shape *s, kvc_mode mode, int shared, kvc_dtype dt,
                          uint64_t seed) {
    kvc_cache *c = NULL;
    char spec[160];
    int rc;
    if (r->spec) {
        snprintf(spec, sizeof spec, "%s scope=%s sink=%u recent=%u protect=%lld prefill_max=%u seed=%llu chunk=1",
                 r->spec, shared ? "shared" : "head", s->sink, s->recent, (long long)s->protect, s->n + 3,
                 (unsigned long long)seed);
        rc = kvc_cache_create_spec(&c, s->n_kv, s->n_q, s->d, s->cap, dt, mode, spec, NULL);
    } else {
        rc = kvc_cache_create(&c, s->n_kv, s->n_q, s->d, s->cap, dt, mode, &user_default, NULL);
        snprintf(spec, sizeof spec, "scope=%s sink=%u recent=%u protect=%lld prefill_max=%u chunk=1",
                 shared ? "shared" : "head", s->sink, s->recent, (long long)s->protect, s->n + 3);
        if (!rc) rc = kvc_cache_apply_spec(c, spec);
    }
    if (rc) {
        kvt_fail(__FILE__, __LINE__, "create '%s': %s (%s)", spec, kvc_strerror(rc), c ? kvc_cache_last_error(c) : "");
        kvc_cache_destroy(c);
        return NULL;
    }
    return c;
}

static void pf_fill(float *x, size_t n, uint64_t *rs, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * kvt_frand(rs);
}

typedef struct {
    uint64_t checks, exact, hash;
} pf_out;

/* One prompt through one cache; every group's kept set checked. */
static int pf_run(const pf_rule *r, const pf_shape *s, kvc_mode mode, int shared, uint64_t seed, uint64_t trace,
                  int with_scores, pf_out *o) {
    uint64_t rs = trace;
    int bad = 0;
    size_t kvn = (size_t)s->n * s->n_kv * s->d;
    uint32_t G = shared ? 1 : s->n_kv, cap = s->cap;
    float *k = malloc(kvn * sizeof *k), *v = malloc(kvn * sizeof *v);
    float *q = malloc(((size_t)s->w * s->n_q * s->d + 1) * sizeof *q);
    float *scores = malloc(((size_t)G * s->n + 1) * sizeof *scores);
    double *dscore = malloc(((size_t)G * s->n + 1) * sizeof *dscore);
    uint32_t *keep = malloc((size_t)G * cap * sizeof *keep);
    int64_t *pos = malloc(cap * sizeof *pos);
    kvc_cache *c = pf_make(r, s, mode, shared, KVC_DTYPE_F32, seed);
    if (!c || !k || !v || !q || !scores || !dscore || !keep || !pos) {
        bad = 1;
        goto done;
    }
    /* keys large enough that the window's softmax is far from uniform */
    pf_fill(k, kvn, &rs, 2.0f);
    pf_fill(v, kvn, &rs, 1.0f);
    pf_fill(q, (size_t)s->w * s->n_q * s->d, &rs, 2.0f);
    for (size_t i = 0; i < (size_t)G * s->n; i++) {
        /* dyadic engine scores with ties, so sums and ties are exact */
        scores[i] = (float)(kvt_mix64(&rs) % 17) / 16.0f;
        dscore[i] = scores[i];
    }
    ref_cfg rc = {r->rule, s->n_kv, s->n_q, s->d, cap, shared, mode == KVC_MODE_INDEX, s->sink, s->recent, 1, 1,
                  0, 0.25, 5, 0, 1.0 / sqrt((double)s->d), 0.1, 0.5, 400, 0, s->protect, r->kernel, r->avgpool};
    int64_t p0 = 3 + (int64_t)(kvt_mix64(&rs) % 5);
    ref_prompt p = {p0, s->n, s->w, k, v, q};
    int rcode;
    if (mode == KVC_MODE_STORE) {
        rcode = kvc_cache_prefill(c, p0, s->n, k, v, s->w ? q : NULL, s->w);
        for (uint32_t g = 0; g < G; g++) ref_prefill_scores(&rc, g, &p, dscore + (size_t)g * s->n);
    } else {
        rcode = kvc_cache_prefill_index(c, p0, s->n, k, v, with_scores ? scores : NULL, s->w, keep);
    }
    const int have_scores = mode == KVC_MODE_STORE ? s->w > 0 : with_scores;
    if (rcode) {
        kvt_fail(__FILE__, __LINE__, "%s prefill: %s (%s)", r->spec ? r->spec : "user", kvc_strerror(rcode),
                 kvc_cache_last_error(c));
        bad = 1;
        goto done;
    }
    uint32_t want = s->n < cap ? s->n : cap;
    CHECK_EQ(kvc_cache_len(c), want);
    for (uint32_t g = 0; g < G && !bad; g++) {
        uint32_t kept[REF_MAXCAP];
        kvc_cache_positions(c, g, pos);
        for (uint32_t sl = 0; sl < cap; sl++) {
            int64_t x = pos[sl];
            if ((sl < want) != (x >= 0) || (x >= 0 && (x < p0 || x >= p0 + (int64_t)s->n))) {
                kvt_fail(__FILE__, __LINE__, "group %u slot %u holds position %lld (len %u)", g, sl, (long long)x, want);
                bad = 1;
                break;
            }
            if (sl < want) kept[sl] = (uint32_t)(x - p0);
            if (mode == KVC_MODE_INDEX && keep[(size_t)g * cap + sl] != (sl < want ? kept[sl] : UINT32_MAX)) {
                kvt_fail(__FILE__, __LINE__, "group %u keep[%u] = %u disagrees with the slot map", g, sl,
                         keep[(size_t)g * cap + sl]);
                bad = 1;
                break;
            }
            o->hash = o->hash * 31 + (uint64_t)x;
        }
        if (bad) break;
        ref_verdict vd = ref_prefill_check(&rc, g, &p, have_scores ? dscore + (size_t)g * s->n : NULL, kept, want,
                                           mode == KVC_MODE_STORE ? 1e-4 : 1e-6);
        if (!vd.ok) {
            kvt_fail(__FILE__, __LINE__, "%s %s %s n=%u cap=%u w=%u group %u: %s", r->spec ? r->spec : "user",
                     mode == KVC_MODE_STORE ? "STORE" : "INDEX", shared ? "shared" : "head", s->n, cap, s->w, g,
                     vd.why);
            bad = 1;
        }
        o->checks++;
        o->exact += (uint64_t)vd.exact;
        /* STORE: each kv head's slots hold the rows of the tokens its group kept */
        if (mode == KVC_MODE_STORE)
            for (uint32_t h = shared ? 0 : g; h < (shared ? s->n_kv : g + 1u) && !bad; h++)
                for (uint32_t sl = 0; sl < want; sl++) {
                    float kr[16], vr[16];
                    int rr = kvc_cache_read(c, h, sl, kr, vr);
                    size_t off = ((size_t)kept[sl] * s->n_kv + h) * s->d;
                    if (rr || memcmp(kr, k + off, s->d * sizeof *kr) || memcmp(vr, v + off, s->d * sizeof *vr)) {
                        kvt_fail(__FILE__, __LINE__, "head %u slot %u: stored rows differ from prompt token %u", h,
                                 sl, kept[sl]);
                        bad = 1;
                        break;
                    }
                }
    }
    kvc_stats st;
    kvc_cache_stats(c, &st);
    CHECK_EQ(st.appends, s->n);
    CHECK_EQ(st.evictions, (uint64_t)G * (s->n - want));
    /* decoding continues: the next positions append (or reserve) normally */
    for (int t = 0; t < 5 && !bad; t++) {
        float kk[64], vv[64], qq[128], out[128];
        uint32_t slots[8];
        pf_fill(kk, (size_t)s->n_kv * s->d, &rs, 1.0f);
        pf_fill(vv, (size_t)s->n_kv * s->d, &rs, 1.0f);
        pf_fill(qq, (size_t)s->n_q * s->d, &rs, 1.0f);
        int64_t at = p0 + s->n + t;
        int e = mode == KVC_MODE_STORE ? kvc_cache_append(c, at, kk, vv) : kvc_cache_reserve(c, at, kk, vv, slots, NULL);
        if (!e && mode == KVC_MODE_STORE) e = kvc_cache_attend(c, qq, out);
        CHECKF(e == KVC_OK, "decode after prefill: %s (%s)", kvc_strerror(e), kvc_cache_last_error(c));
        if (e) bad = 1;
    }
    CHECK_EQ(kvc_cache_len(c), want + 5 < cap ? want + 5 : cap);
done:
    kvc_cache_destroy(c);
    free(k), free(v), free(q), free(scores), free(dscore), free(keep), free(pos);
    return bad;
}

TEST(prefill_rule_every_policy) {
    pf_out o = {0, 0, 0};
    for (size_t ri = 0; ri < N_RULES; ri++)
        for (int mode = 0; mode < 2; mode++)
            for (int shared = 0; shared < 2; shared++)
                for (size_t si = 0; si < N_SHAPES; si++)
                    for (int sc = 0; sc < (mode ? 2 : 1); sc++)
                        if (pf_run(&rules[ri], &shapes[si], (kvc_mode)mode, shared, 5, 100 * si + 7 * ri + mode, !sc,
                                   &o))
                            return;
    CHECK(o.checks > 400);
    /* near-ties inside the tolerance are legitimate but must stay rare */
    CHECKF(o.exact * 10 >= o.checks * 9, "%llu of %llu kept sets matched only within tolerance",
           (unsigned long long)(o.checks - o.exact), (unsigned long long)o.checks);
}

/* random and vase: the same seed keeps the same tokens, another seed does not. */
TEST(prefill_stochastic_reproducible) {
    const pf_shape s = {2, 4, 8, 16, 2, 3, 0, 80, 4};
    for (size_t ri = 9; ri <= 10; ri++)
        for (int mode = 0; mode < 2; mode++) {
            pf_out a = {0, 0, 0}, b = {0, 0, 0}, c = {0, 0, 0};
            REQUIRE(!pf_run(&rules[ri], &s, (kvc_mode)mode, 0, 21, 3, 1, &a));
            REQUIRE(!pf_run(&rules[ri], &s, (kvc_mode)mode, 0, 21, 3, 1, &b));
            REQUIRE(!pf_run(&rules[ri], &s, (kvc_mode)mode, 0, 22, 3, 1, &c));
            CHECKF(a.hash == b.hash, "%s: the same seed kept different tokens", rules[ri].spec);
            CHECKF(a.hash != c.hash, "%s: seeds 21 and 22 kept the same tokens", rules[ri].spec);
        }
}

/* SnapKV on a prompt whose window points at a few far-back tokens: those
 * (and their pooled neighbourhood) survive a 16x compression. */
TEST(prefill_snapkv_keeps_what_the_window_reads) {
    enum { D = 16, N = 1024, CAP = 64, W = 32 };
    static float k[N * D], v[N * D], q[W * D];
    uint64_t rs = 99;
    pf_fill(k, sizeof k / sizeof *k, &rs, 0.3f);
    pf_fill(v, sizeof v / sizeof *v, &rs, 1.0f);
    const uint32_t needles[] = {37, 300, 301, 777};
    for (uint32_t r = 0; r < W; r++)
        for (uint32_t t = 0; t < D; t++) q[r * D + t] = 0.0f;
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
        for (uint32_t t = 0; t < D; t++) {
            float x = kvt_frand(&rs);
            k[needles[i] * D + t] = 3.0f * x;
            for (uint32_t r = 0; r < W; r++) q[r * D + t] += x;
        }
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, D, CAP, KVC_DTYPE_F32, KVC_MODE_STORE, "snapkv prefill_max=1024", NULL) ==
            KVC_OK);
    REQUIRE(kvc_cache_prefill(c, 0, N, k, v, q, W) == KVC_OK);
    int64_t pos[CAP];
    kvc_cache_positions(c, 0, pos);
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++) {
        int found = 0;
        for (uint32_t s = 0; s < CAP; s++) found |= pos[s] == needles[i];
        CHECKF(found, "needle at position %u was dropped", needles[i]);
    }
    int window = 0;
    for (uint32_t s = 0; s < CAP; s++) window += pos[s] >= N - W;
    CHECK_EQ(window, W);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------- bad input */

/* A user policy whose prefill answers are chosen by the test. */
static int bad_mode_sel;
static int bad_prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
    switch (bad_mode_sel) {
    case 1: if (req->n_victims > 1) victims[1] = victims[0]; break;              /* duplicate */
    case 2: victims[0] = req->n_tokens - 1; break;                                /* protected (the window) */
    case 3: victims[0] = req->n_tokens + 5; break;                                /* out of range */
    case 4: if (req->n_victims > 1) victims[req->n_victims - 1] = UINT32_MAX; break; /* short answer */
    case 5: kvc_rng_next(req->rng); return KVC_ENOMEM;                            /* its own error */
    case 6: kvc_rng_next(req->rng); return 42;                                    /* a stray value */
    case 7: /* valid, drawn from the generator */
        for (uint32_t i = 0; i < req->n_victims; i++) {
            uint32_t j = i + kvc_rng_below(req->rng, req->n_candidates - i);
            victims[i] = req->candidates[j];
            for (uint32_t t = 0; t < i; t++)
                if (victims[t] == victims[i]) victims[i] = req->candidates[i]; /* keep them distinct */
            for (uint32_t t = 0; t < i; t++)
                if (victims[t] == victims[i]) return KVC_EINVAL;
        }
        break;
    default: break;
    }
    return 0;
}
static const kvc_policy bad_policy = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy),
                                      .name = "bad_prefill", .needs = KVC_NEED_RNG, .score = user_score,
                                      .prefill = bad_prefill};

enum { BK = 2, BQ = 4, BD = 4, BCAP = 8, BN = 20, BW = 3 };

static kvc_cache *bad_make(const kvc_policy *pol, kvc_mode mode, kvc_dtype dt, const char *spec) {
    kvc_cache *c = NULL;
    if (kvc_cache_create(&c, BK, BQ, BD, BCAP, dt, mode, pol, NULL)) return NULL;
    if (kvc_cache_apply_spec(c, spec)) {
        kvc_cache_destroy(c);
        return NULL;
    }
    return c;
}

/* Call `expr` on a fresh cache (prepared when `prep`): it must fail with
 * `want`, record a message, and leave every observable thing as it was. */
#define PF_BAD(pol, mode, dt, spec, prep, expr, want)                                                               \
    do {                                                                                                            \
        kvc_cache *c = bad_make(pol, mode, dt, spec);                                                               \
        REQUIRE(c != NULL);                                                                                         \
        if (prep) REQUIRE(kvc_cache_prepare(c) == KVC_OK);                                                          \
        kvt_snap before, after;                                                                                     \
        kvt_snap_take(c, pol, BK, BD, &before);                                                                     \
        int got_ = (expr);                                                                                          \
        kvt_snap_take(c, pol, BK, BD, &after);                                                                      \
        char why_[160];                                                                                             \
        CHECKF(got_ == (want), "%s: %d (%s), expected %d", #expr, got_, kvc_strerror(got_), (int)(want));          \
        CHECKF(kvt_snap_equal(&before, &after, why_, sizeof why_), "%s changed the cache: %s", #expr, why_);       \
        CHECKF(*kvc_cache_last_error(c), "%s: no message", #expr);                                                  \
        kvt_snap_free(&before);                                                                                     \
        kvt_snap_free(&after);                                                                                      \
        kvc_cache_destroy(c);                                                                                       \
    } while (0)

TEST(prefill_bad_input) {
    static float k[BN * BK * BD], v[BN * BK * BD], q[BN * BQ * BD], sc[BK * BN], kbad[BN * BQ * BD];
    uint32_t keep[BK * BCAP];
    uint64_t rs = 5;
    pf_fill(k, sizeof k / sizeof *k, &rs, 1.0f);
    pf_fill(v, sizeof v / sizeof *v, &rs, 1.0f);
    pf_fill(q, sizeof q / sizeof *q, &rs, 1.0f);
    for (size_t i = 0; i < sizeof sc / sizeof *sc; i++) sc[i] = 0.5f;
    const kvc_policy *h2o = kvc_policy_h2o(), *knorm = kvc_policy_knorm(), *full = kvc_policy_full();
    const char *ok = "prefill_max=20 recent=2 sink=1";
    const kvc_mode S = KVC_MODE_STORE, I = KVC_MODE_INDEX;
    const kvc_dtype F = KVC_DTYPE_F32;
    /* STORE */
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, NULL, v, q, BW), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, NULL, q, BW), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, v, NULL, BW), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, 0, k, v, q, 0), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, 5, k, v, q, 6), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, -1, BN, k, v, q, BW), KVC_EINVAL);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, INT64_MAX - 5, BN, k, v, q, BW), KVC_ERANGE);
    PF_BAD(h2o, S, F, "prefill_max=19", 0, kvc_cache_prefill(c, 0, BN, k, v, q, BW), KVC_ERANGE);
    PF_BAD(h2o, S, F, "recent=2 sink=1", 1, kvc_cache_prefill(c, 0, BN, k, v, q, BW), KVC_ERANGE);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, k, v, sc, BW, keep), KVC_EMODE);
    PF_BAD(h2o, S, F, "prefill_max=20 sink=4 recent=2", 0, kvc_cache_prefill(c, 0, BN, k, v, q, 5), KVC_ERANGE);
    PF_BAD(h2o, S, F, "prefill_max=20 protect=6 recent=1", 0, kvc_cache_prefill(c, 0, BN, k, v, q, BW), KVC_ERANGE);
    PF_BAD(full, S, F, "prefill_max=20", 0, kvc_cache_prefill(c, 0, BN, k, v, q, BW), KVC_EFULL);
    memcpy(kbad, k, sizeof k);
    kbad[BN * BK * BD - 1] = NAN;
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, kbad, v, q, BW), KVC_ENONFINITE);
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, kbad, q, BW), KVC_ENONFINITE);
    kbad[BW * BQ * BD - 1] = INFINITY;
    PF_BAD(h2o, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, v, kbad, BW), KVC_ENONFINITE);
    memcpy(kbad, k, sizeof k);
    kbad[7] = 70000.0f;
    PF_BAD(h2o, S, KVC_DTYPE_F16, ok, 0, kvc_cache_prefill(c, 0, BN, kbad, v, q, BW), KVC_ERANGE);
    /* INDEX */
    PF_BAD(h2o, I, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, v, q, BW), KVC_EMODE);
    PF_BAD(h2o, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, k, v, sc, BW, NULL), KVC_EINVAL);
    PF_BAD(knorm, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, NULL, v, sc, BW, keep), KVC_EINVAL);
    PF_BAD(h2o, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, NULL, NULL, sc, BN + 1, keep), KVC_EINVAL);
    sc[7] = -0.25f;
    PF_BAD(h2o, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, NULL, NULL, sc, BW, keep), KVC_ENONFINITE);
    sc[7] = NAN;
    PF_BAD(h2o, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, NULL, NULL, sc, BW, keep), KVC_ENONFINITE);
    sc[7] = 0.5f;
    /* a policy's bad answers, and its own failures */
    static const int want_sel[] = {0, KVC_EPOLICY, KVC_EPOLICY, KVC_EPOLICY, KVC_EPOLICY, KVC_ENOMEM, KVC_EPOLICY};
    for (int sel = 1; sel <= 6; sel++) {
        bad_mode_sel = sel;
        PF_BAD(&bad_policy, S, F, ok, 0, kvc_cache_prefill(c, 0, BN, k, v, q, BW), want_sel[sel]);
        PF_BAD(&bad_policy, I, F, ok, 0, kvc_cache_prefill_index(c, 0, BN, NULL, NULL, sc, BW, keep), want_sel[sel]);
    }
    /* a failed prefill leaves the generator as it was: the next one draws what a fresh cache's would */
    {
        kvc_cache *u = bad_make(&bad_policy, I, F, ok), *w = bad_make(&bad_policy, I, F, ok);
        REQUIRE(u && w);
        uint32_t keep_u[BK * BCAP], keep_w[BK * BCAP];
        bad_mode_sel = 5; /* consumes a number, then fails */
        REQUIRE(kvc_cache_prefill_index(u, 0, BN, NULL, NULL, sc, BW, keep_u) == KVC_ENOMEM);
        bad_mode_sel = 7;
        int ru = kvc_cache_prefill_index(u, 0, BN, NULL, NULL, sc, BW, keep_u);
        int rw = kvc_cache_prefill_index(w, 0, BN, NULL, NULL, sc, BW, keep_w);
        CHECK(ru == rw);
        if (ru == KVC_OK) CHECK(memcmp(keep_u, keep_w, sizeof keep_u) == 0);
        kvc_cache_destroy(u);
        kvc_cache_destroy(w);
    }
    /* not empty */
    {
        kvc_cache *c = bad_make(h2o, S, F, ok);
        REQUIRE(c != NULL);
        REQUIRE(kvc_cache_append(c, 0, k, v) == KVC_OK);
        kvt_snap before, after;
        char why[160];
        kvt_snap_take(c, h2o, BK, BD, &before);
        CHECK_EQ(kvc_cache_prefill(c, 1, BN, k, v, q, BW), KVC_ESTATE);
        kvt_snap_take(c, h2o, BK, BD, &after);
        CHECKF(kvt_snap_equal(&before, &after, why, sizeof why), "prefill on a used cache changed it: %s", why);
        kvt_snap_free(&before);
        kvt_snap_free(&after);
        /* after reset, prefill works again */
        REQUIRE(kvc_cache_reset(c) == KVC_OK);
        CHECK_EQ(kvc_cache_prefill(c, 1, BN, k, v, q, BW), KVC_OK);
        CHECK_EQ(kvc_cache_prefill(c, 100, BN, k, v, q, BW), KVC_ESTATE);
        kvc_cache_destroy(c);
    }
    CHECK_EQ(kvc_cache_prefill(NULL, 0, BN, k, v, q, BW), KVC_EINVAL);
    CHECK_EQ(kvc_cache_prefill_index(NULL, 0, BN, k, v, sc, BW, keep), KVC_EINVAL);
}

/* After any accepted prefill the cache must keep decoding: for every small
 * configuration (capacity 1-8, every block that divides it, every sink and
 * recent, chunk 1-2, protect 0 or 2, prompts up to 2 x capacity + 2 tokens,
 * windows 0-2), the prompt is either refused because what it pins exceeds the
 * capacity, or accepted, and then 12 appends with attends all succeed: the
 * freeze rule with block > 1 leaves room for the next eviction however the
 * prefill left the slots. */
TEST(prefill_then_decode_every_small_config) {
    static const char *const pols[] = {"window", "h2o", "snapkv", "random"};
    float k[32 * 2], v[32 * 2], q[3 * 2], out[2];
    for (int i = 0; i < 64; i++) k[i] = (float)((i * 37) % 11) / 11.0f - 0.5f, v[i] = (float)((i * 13) % 7) / 7.0f;
    for (int i = 0; i < 6; i++) q[i] = (float)((i * 5) % 9) / 9.0f - 0.4f;
    long accepted = 0, refused = 0;
    const uint32_t cap_max = kvt_short() ? 4 : 8; /* valgrind: capacities 1-4 */
    for (size_t pi = 0; pi < sizeof pols / sizeof *pols; pi++)
        for (uint32_t cap = 1; cap <= cap_max; cap++)
            for (uint32_t B = 1; B <= cap; B++) {
                if (cap % B) continue;
                for (uint32_t sink = 0; sink <= cap; sink++)
                    for (uint32_t rec = 0; rec <= cap; rec++)
                        for (uint32_t ch = 1; ch <= 2 && ch <= cap; ch++)
                            for (int prot = 0; prot <= 2; prot += 2) {
                                char spec[160];
                                snprintf(spec, sizeof spec, "%s sink=%u recent=%u chunk=%u block=%u prefill_max=32 protect=%d",
                                         pols[pi], sink, rec, ch, B, prot);
                                for (uint32_t n = 1; n <= 2 * cap + 2; n++)
                                    for (uint32_t w = 0; w <= 2 && w <= n; w++) {
                                        kvc_cache *c;
                                        REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, cap, KVC_DTYPE_F32, KVC_MODE_STORE, spec,
                                                                      NULL) == KVC_OK);
                                        int rc = kvc_cache_prefill(c, 0, n, k, v, w ? q : NULL, w);
                                        if (rc != KVC_OK) {
                                            /* refused: by the freeze rule (a plain append is refused too) or for pinning too much */
                                            kvc_cache *c2;
                                            REQUIRE(kvc_cache_create_spec(&c2, 1, 1, 2, cap, KVC_DTYPE_F32, KVC_MODE_STORE,
                                                                          spec, NULL) == KVC_OK);
                                            const int freeze_ok = kvc_cache_append(c2, 0, k, v) == KVC_OK;
                                            CHECKF(!freeze_ok || (rc == KVC_ERANGE &&
                                                                  strstr(kvc_cache_last_error(c), "more than the capacity")),
                                                   "%s n=%u w=%u: %s (%s)", spec, n, w, kvc_strerror(rc),
                                                   kvc_cache_last_error(c));
                                            kvc_cache_destroy(c2);
                                            kvc_cache_destroy(c);
                                            refused++;
                                            continue;
                                        }
                                        accepted++;
                                        for (uint32_t t = 0; t < 12 && !kvt_failed(); t++) {
                                            rc = kvc_cache_append(c, n + t, k + 2 * t, v + 2 * t);
                                            CHECKF(rc == KVC_OK, "%s n=%u w=%u, append %u after the prefill: %s (%s)", spec, n,
                                                   w, t, kvc_strerror(rc), kvc_cache_last_error(c));
                                            if (t % 3 == 0) CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
                                        }
                                        kvc_cache_destroy(c);
                                        if (kvt_failed()) return;
                                    }
                            }
            }
    CHECKF(accepted > 1000 && refused > 100, "%ld accepted, %ld refused", accepted, refused);
}
