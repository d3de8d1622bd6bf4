/* Distribution tests of the stochastic policies: random must pick uniformly
 * among the candidates, vase must keep a pool candidate with probability
 * proportional to its pooled window weight. Pearson chi-square with fixed
 * seeds: a correct implementation fails with probability < 1e-6, and every
 * test also shows it would reject the plausible wrong rules. */
#include <stdlib.h>

#include "kvc.h"
#include "ref_model.h"
#include "test.h"

#define P_PASS 1e-6 /* a correct implementation fails with this probability */

static float frand(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)kvt_unif(s);
}

/* KVC_TEST_SHORT=1 (valgrind): half the trials; the rejection checks below
 * show the tests keep their power. */
static int trials(int n) {
    const char *s = getenv("KVC_TEST_SHORT");
    return s && strcmp(s, "1") == 0 ? n / 2 : n;
}

static void check_fit(const char *what, const uint64_t *counts, const double *p, uint32_t k) {
    double x;
    double pv = ref_chi2_test(counts, p, k, &x);
    CHECKF(pv > P_PASS, "%s: chi-square %.1f on %u cells, p = %.3g", what, x, k, pv);
    if (getenv("KVC_TEST_VERBOSE")) printf("  %s: chi-square %.2f, %u cells, p = %.3g\n", what, x, k, pv);
}
static void check_rejects(const char *what, const uint64_t *counts, const double *p, uint32_t k) {
    double x;
    double pv = ref_chi2_test(counts, p, k, &x);
    CHECKF(pv < P_PASS, "the test cannot tell %s apart: chi-square %.1f, p = %.3g", what, x, pv);
    if (getenv("KVC_TEST_VERBOSE")) printf("  rejects %s: chi-square %.1f, p = %.3g\n", what, x, pv);
}

TEST(chi2_tail_values) {
    /* known quantiles: the test statistics rely on this tail function */
    CHECK(fabs(ref_chi2_sf(3.841458820694124, 1) - 0.05) < 1e-9);
    CHECK(fabs(ref_chi2_sf(11.070497693516351, 5) - 0.05) < 1e-9);
    CHECK(fabs(ref_chi2_sf(33.10705559, 5) / 3.5e-6 - 1.0) < 0.05);
    CHECK(fabs(ref_chi2_sf(2.0, 2) - exp(-1.0)) < 1e-12); /* df 2: exp(-x/2) */
    CHECK(fabs(ref_chi2_sf(100.0, 2) - exp(-50.0)) < 1e-25);
    CHECK(ref_chi2_sf(0.0, 4) == 1.0);
}

/* Sorted copy of the resident positions of one group. */
static uint32_t residents(const kvc_cache *c, uint32_t g, int64_t *sorted) {
    uint32_t cap = kvc_cache_capacity(c), n = 0;
    int64_t pos[64];
    kvc_cache_positions(c, g, pos);
    for (uint32_t s = 0; s < cap; s++)
        if (pos[s] >= 0) {
            uint32_t j = n++;
            while (j > 0 && sorted[j - 1] > pos[s]) {
                sorted[j] = sorted[j - 1];
                j--;
            }
            sorted[j] = pos[s];
        }
    return n;
}

static int contains(const int64_t *a, uint32_t n, int64_t x) {
    for (uint32_t i = 0; i < n; i++)
        if (a[i] == x) return 1;
    return 0;
}

/* random, chunk 1, INDEX mode: with sink 1 and recent 2 at capacity 10, seven
 * candidates; the victim's rank among them (position order) is uniform. */
TEST(random_uniform_victim) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 4, 10, KVC_DTYPE_F32, KVC_MODE_INDEX,
                                  "random sink=1 recent=2 chunk=1 seed=2024", NULL) == KVC_OK);
    enum { K = 7, N = 14000 };
    uint64_t counts[K] = {0};
    int64_t before[16], after[16], ev[1];
    uint32_t slot;
    int ok = 1;
    for (int64_t pos = 0; pos < 10 + N && ok; pos++) {
        uint32_t nb = residents(c, 0, before);
        ok = kvc_cache_reserve(c, pos, NULL, NULL, &slot, ev) == KVC_OK;
        if (pos < 10 || !ok) continue;
        uint32_t na = residents(c, 0, after);
        /* candidates: all but the first token and the two newest */
        int rank = -1;
        for (uint32_t i = 1; i + 2 < nb; i++)
            if (before[i] == ev[0]) rank = (int)i - 1;
        ok = rank >= 0 && na == 10 && !contains(after, na, ev[0]);
        if (ok) counts[rank]++;
    }
    REQUIRE(ok);
    double p[K], tilt[K];
    for (int i = 0; i < K; i++) {
        p[i] = 1.0 / K;
        tilt[i] = (1.0 + 0.15 * (i - 3) / 3.0) / K; /* a 15% bias towards newer candidates */
    }
    check_fit("random, 7 candidates", counts, p, K);
    check_rejects("a 15% tilt", counts, tilt, K);
    kvc_cache_destroy(c);
}

/* random, chunk 2 of block 2, STORE mode: the pair of victim units is uniform
 * over the 21 pairs of the 7 candidate units (sampling without replacement). */
TEST(random_uniform_pairs_blocks) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 2, 4, 2, 16, KVC_DTYPE_F32, KVC_MODE_STORE,
                                  "random sink=0 recent=2 chunk=2 block=2 scope=shared seed=99", NULL) == KVC_OK);
    enum { U = 7, PAIRS = 21, N = 8400 };
    uint64_t counts[PAIRS] = {0};
    int pair_id[U][U], id = 0;
    for (int a = 0; a < U; a++)
        for (int b = a + 1; b < U; b++) pair_id[a][b] = id++;
    float k[4] = {0.1f, 0.2f, 0.3f, 0.4f}, v[4] = {1, 2, 3, 4};
    int64_t before[16], after[16];
    int ok = 1, events = 0;
    for (int64_t pos = 0; events < N && ok; pos++) {
        uint32_t nb = residents(c, 0, before);
        ok = kvc_cache_append(c, pos, k, v) == KVC_OK;
        if (!ok || nb < 16) continue;
        uint32_t na = residents(c, 0, after);
        /* units are consecutive pairs in position order; the last holds the recent tokens */
        int gone[U], ng = 0;
        for (int u = 0; u < 8; u++) {
            int in0 = contains(after, na, before[2 * u]), in1 = contains(after, na, before[2 * u + 1]);
            if (in0 != in1 || (!in0 && u == 7)) ok = 0;
            if (!in0 && ng < 2) gone[ng] = u;
            ng += !in0;
        }
        ok = ok && ng == 2;
        if (ok) counts[pair_id[gone[0]][gone[1]]]++;
        events++;
    }
    REQUIRE(ok);
    double p[PAIRS];
    for (int i = 0; i < PAIRS; i++) p[i] = 1.0 / PAIRS;
    check_fit("random, pairs of 7 units", counts, p, PAIRS);
    /* with replacement-then-dedupe or a biased second draw the pairs would not be uniform */
    double skew[PAIRS];
    for (int i = 0; i < PAIRS; i++) skew[i] = (i < 6 ? 1.3 : 1.0);
    double z = 0;
    for (int i = 0; i < PAIRS; i++) z += skew[i];
    for (int i = 0; i < PAIRS; i++) skew[i] /= z;
    check_rejects("pairs involving unit 0 30% more likely", counts, skew, PAIRS);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------------ vase */

/* STORE mode. Capacity 12, recent 3, sink 0, reserve 0.25 (3 tokens), chunk 5:
 * of the 9 candidates, 3 are reserved by value range and 5 of the other 6 are
 * evicted, so exactly one pool candidate is kept, drawn with probability
 * proportional to its pooled window weight. Window: the last 3 of 4 queries,
 * 2 query heads per kv head (GQA 2), pool 3. */
enum { VS_CAP = 12, VS_D = 4, VS_NQ = 2, VS_NCAND = 9, VS_QUERIES = 4, VS_WIN = 3, VS_POOL = 3 };
static const int vs_reserved[3] = {1, 4, 7};
static const int vs_pool[6] = {0, 2, 3, 5, 6, 8};

static void vs_data(float k[VS_CAP + 1][VS_D], float v[VS_CAP + 1][VS_D], float q[VS_QUERIES][VS_NQ * VS_D]) {
    uint64_t s = 77;
    for (int t = 0; t <= VS_CAP; t++) {
        int big = t == 1 || t == 4 || t == 7;
        for (int e = 0; e < VS_D; e++) {
            k[t][e] = frand(&s, -2.0f, 2.0f);
            v[t][e] = big ? (e & 1 ? 3.0f : -3.0f) : frand(&s, -0.5f, 0.5f);
        }
    }
    for (int i = 0; i < VS_QUERIES; i++)
        for (int e = 0; e < VS_NQ * VS_D; e++) q[i][e] = frand(&s, -2.5f, 2.5f);
}

/* Pool-candidate probabilities under the rule, or under a variant of it:
 * first = first query used, heads = query heads averaged (1 or 2), pool =
 * width, pool_only = pool over the sampling pool alone (ignore reserved). */
static void vs_expected(float k[VS_CAP + 1][VS_D], float q[VS_QUERIES][VS_NQ * VS_D], int first, int heads,
                        uint32_t pool, int pool_only, double *p) {
    double w[VS_NCAND] = {0}, pooled[VS_NCAND];
    double scale = 1.0f / sqrtf((float)VS_D);
    int rows = 0;
    for (int qi = first; qi < VS_QUERIES; qi++)
        for (int h = 0; h < heads; h++) {
            double l[VS_NCAND], mx = -INFINITY, sum = 0;
            for (int j = 0; j < VS_NCAND; j++) {
                double dot = 0;
                for (int e = 0; e < VS_D; e++) dot += (double)q[qi][h * VS_D + e] * k[j][e];
                l[j] = dot * scale;
                mx = l[j] > mx ? l[j] : mx;
            }
            for (int j = 0; j < VS_NCAND; j++) sum += exp(l[j] - mx);
            for (int j = 0; j < VS_NCAND; j++) w[j] += exp(l[j] - mx) / sum;
            rows++;
        }
    for (int j = 0; j < VS_NCAND; j++) w[j] /= rows;
    if (pool_only) {
        double wp[6], pp[6];
        for (int i = 0; i < 6; i++) wp[i] = w[vs_pool[i]];
        ref_pool(wp, 6, pool, pp);
        for (int i = 0; i < 6; i++) pooled[vs_pool[i]] = pp[i];
    } else {
        ref_pool(w, VS_NCAND, pool, pooled);
    }
    double z = 0;
    for (int i = 0; i < 6; i++) z += pooled[vs_pool[i]];
    for (int i = 0; i < 6; i++) p[i] = pooled[vs_pool[i]] / z;
}

TEST(vase_store_window_sampling) {
    const int N = trials(8000);
    float k[VS_CAP + 1][VS_D], v[VS_CAP + 1][VS_D], q[VS_QUERIES][VS_NQ * VS_D], out[VS_NQ * VS_D];
    vs_data(k, v, q);
    uint64_t counts[6] = {0}, first_seed[6] = {0};
    int ok = 1;
    for (int trial = 0; trial < N && ok; trial++) {
        char spec[160];
        snprintf(spec, sizeof spec, "vase sink=0 recent=3 chunk=5 reserve=0.25 pool=%d query_window=%d seed=%d",
                 VS_POOL, VS_WIN, trial);
        kvc_cache *c;
        ok = kvc_cache_create_spec(&c, 1, VS_NQ, VS_D, VS_CAP, KVC_DTYPE_F32, KVC_MODE_STORE, spec, NULL) == KVC_OK;
        if (!ok) break;
        for (int t = 0; t < VS_CAP && ok; t++) ok = kvc_cache_append(c, t, k[t], v[t]) == KVC_OK;
        for (int i = 0; i < VS_QUERIES && ok; i++) ok = kvc_cache_attend(c, q[i], out) == KVC_OK;
        ok = ok && kvc_cache_append(c, VS_CAP, k[VS_CAP], v[VS_CAP]) == KVC_OK;
        int64_t res[VS_CAP];
        uint32_t n = ok ? residents(c, 0, res) : 0;
        /* kept: the 3 reserved, the 3 recent, the new token, and one of the pool */
        ok = ok && n == 8;
        for (int i = 0; i < 3 && ok; i++) ok = contains(res, n, vs_reserved[i]) && contains(res, n, 9 + i);
        int kept = -1, kept_n = 0;
        for (int i = 0; i < 6 && ok; i++)
            if (contains(res, n, vs_pool[i])) kept = i, kept_n++;
        ok = ok && kept_n == 1;
        if (ok) {
            counts[kept]++;
            if (!first_seed[kept]) first_seed[kept] = (uint64_t)trial + 1;
        }
        kvc_cache_destroy(c);
    }
    REQUIRE(ok);
    double p[6], alt[6];
    vs_expected(k, q, VS_QUERIES - VS_WIN, VS_NQ, VS_POOL, 0, p);
    check_fit("vase STORE, kept pool candidate", counts, p, 6);
    vs_expected(k, q, VS_QUERIES - VS_WIN, VS_NQ, 1, 0, alt);
    check_rejects("unpooled weights", counts, alt, 6);
    vs_expected(k, q, VS_QUERIES - VS_WIN, VS_NQ, VS_POOL, 1, alt);
    check_rejects("pooling over the sampling pool only", counts, alt, 6);
    vs_expected(k, q, 0, VS_NQ, VS_POOL, 0, alt);
    check_rejects("a window of 4 queries instead of 3", counts, alt, 6);
    vs_expected(k, q, VS_QUERIES - VS_WIN, 1, VS_POOL, 0, alt);
    check_rejects("only the first query head of the group", counts, alt, 6);

    /* the same seed keeps the same candidate */
    for (int i = 0; i < 6; i++) {
        if (!first_seed[i]) continue;
        char spec[160];
        snprintf(spec, sizeof spec, "vase sink=0 recent=3 chunk=5 reserve=0.25 pool=%d query_window=%d seed=%d",
                 VS_POOL, VS_WIN, (int)first_seed[i] - 1);
        kvc_cache *c;
        REQUIRE(kvc_cache_create_spec(&c, 1, VS_NQ, VS_D, VS_CAP, KVC_DTYPE_F32, KVC_MODE_STORE, spec, NULL) ==
                KVC_OK);
        for (int t = 0; t < VS_CAP; t++) kvc_cache_append(c, t, k[t], v[t]);
        for (int j = 0; j < VS_QUERIES; j++) kvc_cache_attend(c, q[j], out);
        kvc_cache_append(c, VS_CAP, k[VS_CAP], v[VS_CAP]);
        int64_t res[VS_CAP];
        uint32_t n = residents(c, 0, res);
        CHECKF(contains(res, n, vs_pool[i]), "seed %d kept another candidate on replay", (int)first_seed[i] - 1);
        kvc_cache_destroy(c);
    }
}

/* INDEX mode: the weights are the masses observed since the group's last
 * eviction (here: one step of two observe calls, averaged). Two kv heads in
 * head scope, each group sampling on its own; sink 1 (counted in the
 * reservation), recent 2, reserve 0.25 = 3 tokens = 2 beyond the sink, chunk 6:
 * one of 7 pool candidates kept. Pool 4 (even width). */
enum { VI_CAP = 12, VI_D = 3, VI_NCAND = 9, VI_POOL = 4 };
static const int vi_reserved[2][2] = {{3, 7}, {2, 9}};                      /* token positions */
static const float vi_mass[2][2][VI_NCAND] = {                               /* [group][call][candidate] */
    {{0.9f, 0.1f, 0.0f, 0.2f, 0.05f, 0.6f, 0.0f, 0.3f, 0.1f}, {0.5f, 0.3f, 0.4f, 0.0f, 0.0f, 0.2f, 0.1f, 0.9f, 0.2f}},
    {{0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.0f, 0.0f, 0.0f, 0.8f}, {0.0f, 0.6f, 0.0f, 0.1f, 0.1f, 0.9f, 0.1f, 0.0f, 0.4f}}};

static void vi_expected(int g, int calls_mask, uint32_t pool, int shift, double *p, int *pool_pos) {
    double w[VI_NCAND], pooled[VI_NCAND + 2];
    for (int j = 0; j < VI_NCAND; j++) {
        double s = 0;
        int n = 0;
        for (int call = 0; call < 2; call++)
            if (calls_mask & (1 << call)) s += vi_mass[g][call][j], n++;
        w[j] = s / n;
    }
    if (shift) {
        /* the other even-width convention: in[i - pool/2 + 1 .. i + pool/2] */
        for (int i = 0; i < VI_NCAND; i++) {
            double s = 0;
            for (int j = i - (int)pool / 2 + 1; j <= i + (int)pool / 2; j++)
                if (j >= 0 && j < VI_NCAND) s += w[j];
            pooled[i] = s / pool;
        }
    } else {
        ref_pool(w, VI_NCAND, pool, pooled);
    }
    int m = 0;
    double z = 0;
    for (int j = 0; j < VI_NCAND; j++) {
        int pos = j + 1; /* candidate j is position j+1 (position 0 is the sink) */
        if (pos == vi_reserved[g][0] || pos == vi_reserved[g][1]) continue;
        pool_pos[m] = pos;
        p[m++] = pooled[j];
        z += pooled[j];
    }
    for (int i = 0; i < m; i++) p[i] /= z;
}

TEST(vase_index_observed_sampling) {
    enum { M = 7 };
    const int N = trials(8000);
    float k[2 * VI_D], v[VI_CAP + 1][2 * VI_D], mass[VI_CAP];
    uint64_t s = 5;
    for (int t = 0; t <= VI_CAP; t++)
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < VI_D; e++) {
                int big = t == vi_reserved[h][0] || t == vi_reserved[h][1];
                v[t][h * VI_D + e] = big ? (e ? 2.0f : -2.0f) : frand(&s, -0.3f, 0.3f);
            }
    for (int e = 0; e < 2 * VI_D; e++) k[e] = 0.5f;
    double p[2][M];
    int pool_pos[2][M];
    for (int g = 0; g < 2; g++) vi_expected(g, 3, VI_POOL, 0, p[g], pool_pos[g]);
    uint64_t counts[2][M] = {{0}};
    int ok = 1;
    for (int trial = 0; trial < N && ok; trial++) {
        char spec[160];
        snprintf(spec, sizeof spec, "vase sink=1 recent=2 chunk=6 reserve=0.25 pool=%d seed=%d", VI_POOL,
                 trial + 100000);
        kvc_cache *c;
        uint32_t slots[2], slot_of[2][VI_CAP];
        ok = kvc_cache_create_spec(&c, 2, 4, VI_D, VI_CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, spec, NULL) == KVC_OK;
        if (!ok) break;
        for (int t = 0; t < VI_CAP && ok; t++) {
            ok = kvc_cache_reserve(c, t, k, v[t], slots, NULL) == KVC_OK;
            slot_of[0][t] = slots[0];
            slot_of[1][t] = slots[1];
        }
        for (int g = 0; g < 2 && ok; g++)
            for (int call = 0; call < 2 && ok; call++) {
                for (int t = 0; t < VI_CAP; t++)
                    mass[slot_of[g][t]] = t >= 1 && t <= VI_NCAND ? vi_mass[g][call][t - 1] : 0.7f;
                ok = kvc_cache_observe(c, (uint32_t)g, mass, VI_CAP) == KVC_OK;
            }
        ok = ok && kvc_cache_reserve(c, VI_CAP, k, v[VI_CAP], slots, NULL) == KVC_OK;
        for (int g = 0; g < 2 && ok; g++) {
            int64_t res[VI_CAP];
            uint32_t n = residents(c, (uint32_t)g, res);
            ok = n == 7 && contains(res, n, 0) && contains(res, n, 10) && contains(res, n, 11) &&
                 contains(res, n, vi_reserved[g][0]) && contains(res, n, vi_reserved[g][1]);
            int kept = -1, kept_n = 0;
            for (int i = 0; i < M && ok; i++)
                if (contains(res, n, pool_pos[g][i])) kept = i, kept_n++;
            ok = ok && kept_n == 1;
            if (ok) counts[g][kept]++;
        }
        kvc_cache_destroy(c);
    }
    REQUIRE(ok);
    double alt[M];
    int dummy[M];
    for (int g = 0; g < 2; g++) {
        check_fit(g ? "vase INDEX group 1" : "vase INDEX group 0", counts[g], p[g], M);
        vi_expected(g, 3, 1, 0, alt, dummy);
        check_rejects("unpooled masses", counts[g], alt, M);
        vi_expected(g, 3, VI_POOL + 1, 0, alt, dummy);
        check_rejects("a pool one wider", counts[g], alt, M);
        vi_expected(g, 3, VI_POOL, 1, alt, dummy);
        check_rejects("the window shifted right", counts[g], alt, M);
        vi_expected(g, 2, VI_POOL, 0, alt, dummy);
        check_rejects("only the last observe call", counts[g], alt, M);
    }
}

/* Pooling width, exactly: one candidate has mass, the rest none. Weightless
 * pool members go first, so with chunk = candidates - pool the survivors are
 * exactly the candidates whose pooling window reaches the heavy one:
 * i - pool/2 <= heavy <= i - pool/2 + pool - 1. */
TEST(vase_pool_width_exact) {
    enum { CAP = 16, HEAVY = 7 };
    for (uint32_t pool = 1; pool <= 6; pool++) {
        char spec[128];
        snprintf(spec, sizeof spec, "vase sink=0 recent=0 reserve=0 chunk=%u pool=%u seed=3", CAP - pool, pool);
        kvc_cache *c;
        REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, spec, NULL) == KVC_OK);
        float kv[2] = {1, 2}, mass[CAP] = {0};
        uint32_t slot;
        for (int t = 0; t < CAP; t++) {
            REQUIRE(kvc_cache_reserve(c, t, kv, kv, &slot, NULL) == KVC_OK);
            if (t == HEAVY) mass[slot] = 1.0f;
        }
        REQUIRE(kvc_cache_observe(c, 0, mass, CAP) == KVC_OK);
        REQUIRE(kvc_cache_reserve(c, CAP, kv, kv, &slot, NULL) == KVC_OK);
        int64_t res[CAP];
        uint32_t n = residents(c, 0, res);
        CHECK_EQ(n, pool + 1);
        int lo = HEAVY - (int)pool + 1 + (int)pool / 2, hi = HEAVY + (int)pool / 2;
        for (int i = lo; i <= hi; i++) CHECKF(contains(res, n, i), "pool %u: candidate %d evicted", pool, i);
        kvc_cache_destroy(c);
    }
}

/* ------------------------------------------------------------ keyformer */

/* Gumbel(0, 1) from the test's own generator (independent of the library's). */
static double gumbel(uint64_t *s) { return -log(-log(1.0 - kvt_unif(s))); }

/* Probabilities, by Monte Carlo with the test's own generator, that candidate
 * i (of the first n_c) holds the largest accumulated score after `steps`
 * steps; step t adds softmax((f(m[t][i]) + sign * g) / tau[t]) over its n[t]
 * residents, f = log (the rule) or the identity (noise on the weights). */
static int mc_size(void);
static void kf_model(int steps, const double m[][5], const int *n, const double *tau, int n_c, int use_log,
                     double sign, int noise, double *p) {
    const int M = mc_size();
    uint64_t s = 4242, counts[5] = {0};
    for (int it = 0; it < M; it++) {
        double acc[5] = {0};
        for (int t = 0; t < steps; t++) {
            double z[5], mx = -INFINITY, sum = 0;
            for (int i = 0; i < n[t]; i++) {
                z[i] = ((use_log ? log(m[t][i]) : m[t][i]) + (noise ? sign * gumbel(&s) : 0.0)) / tau[t];
                mx = z[i] > mx ? z[i] : mx;
            }
            for (int i = 0; i < n[t]; i++) sum += (z[i] = exp(z[i] - mx));
            for (int i = 0; i < n[t]; i++) acc[i] += z[i] / sum;
        }
        int best = 0;
        for (int i = 1; i < n_c; i++) best = acc[i] > acc[best] ? i : best;
        counts[best]++;
    }
    for (int i = 0; i < n_c; i++) p[i] = (double)counts[i] / M;
}

/* Run keyformer in INDEX mode: capacity 5, recent 1, chunk 3, so 3 of the 4
 * oldest tokens go at the 6th reserve and one survives. `steps` observe
 * steps precede it (the first before token 4 arrives when steps == 2).
 * Returns the survivor's index among tokens 0..3, or -1. */
static int kf_survivor(const char *params, int seed, int steps, const double m[][5]) {
    char spec[200];
    snprintf(spec, sizeof spec, "keyformer sink=0 recent=1 chunk=3 %s seed=%d", params, seed);
    kvc_cache *c;
    if (kvc_cache_create_spec(&c, 1, 1, 2, 5, KVC_DTYPE_F32, KVC_MODE_INDEX, spec, NULL) != KVC_OK) return -1;
    uint32_t slot_of[6];
    float mass[5];
    int ok = 1;
    for (int t = 0; t < 6 && ok; t++) {
        int step = steps == 2 ? t - 4 : t - 5; /* which observe step precedes reserve t, if any */
        if (step >= 0 && step < steps) {
            for (int s = 0; s < 5; s++) mass[s] = 0.0f;
            for (int i = 0; i < t; i++) mass[slot_of[i]] = (float)m[step][i];
            ok = kvc_cache_observe(c, 0, mass, 5) == KVC_OK;
        }
        ok = ok && kvc_cache_reserve(c, t, NULL, NULL, &slot_of[t], NULL) == KVC_OK;
    }
    int64_t res[5];
    uint32_t n = ok ? residents(c, 0, res) : 0;
    int kept = -1, kept_n = 0;
    for (int i = 0; i < 4; i++)
        if (contains(res, n, i)) kept = i, kept_n++;
    kvc_cache_destroy(c);
    return ok && n == 3 && contains(res, n, 4) && contains(res, n, 5) && kept_n == 1 ? kept : -1;
}

/* One step: argmax of log m + Gumbel is m-proportional (the Gumbel-max
 * trick), whatever the temperature, so the survivor of 3 evictions among 4
 * candidates follows m exactly. */
TEST(keyformer_gumbel_max_survivor) {
    const int N = trials(8000);
    static const double m[1][5] = {{0.08, 0.16, 0.24, 0.32, 0.2}};
    uint64_t counts[4] = {0};
    int ok = 1;
    for (int trial = 0; trial < N && ok; trial++) {
        int k = kf_survivor("", trial, 1, m);
        ok = k >= 0;
        if (ok) counts[k]++;
    }
    REQUIRE(ok);
    double p[4], alt[4];
    for (int i = 0; i < 4; i++) p[i] = m[0][i] / 0.8;
    check_fit("keyformer, one step", counts, p, 4);
    static const int n1[1] = {5};
    static const double tau1[1] = {1.0};
    kf_model(1, m, n1, tau1, 4, 0, 1.0, 1, alt);
    check_rejects("Gumbel noise added to the weights, not their logarithms", counts, alt, 4);
    kf_model(1, m, n1, tau1, 4, 1, -1.0, 1, alt);
    check_rejects("the noise subtracted (a Gumbel-min)", counts, alt, 4);
    for (int i = 0; i < 4; i++) alt[i] = i == 3 ? 0.97 : 0.01; /* no noise: H2O keeps the heaviest */
    check_rejects("no noise", counts, alt, 4);
}

/* Two steps with the temperature rising from 0.5 to 4 over one step
 * (horizon 1): the survivor follows the accumulated Gumbel-softmax scores
 * at those two temperatures, not at one fixed temperature, and not the last
 * step alone. */
TEST(keyformer_temperature_schedule) {
    const int N = trials(8000);
    static const double m[2][5] = {{0.5, 0.3, 0.15, 0.05, 0}, {0.05, 0.1, 0.25, 0.4, 0.2}};
    static const int n[2] = {4, 5};
    uint64_t counts[4] = {0};
    int ok = 1;
    for (int trial = 0; trial < N && ok; trial++) {
        int k = kf_survivor("tau_init=0.5 tau_end=4 horizon=1", trial + 50000, 2, m);
        ok = k >= 0;
        if (ok) counts[k]++;
    }
    REQUIRE(ok);
    double p[4], alt[4];
    static const double rule[2] = {0.5, 4.0}, low[2] = {0.5, 0.5}, high[2] = {4.0, 4.0};
    kf_model(2, m, n, rule, 4, 1, 1.0, 1, p);
    check_fit("keyformer, tau 0.5 then 4", counts, p, 4);
    kf_model(2, m, n, low, 4, 1, 1.0, 1, alt);
    check_rejects("a fixed temperature 0.5", counts, alt, 4);
    kf_model(2, m, n, high, 4, 1, 1.0, 1, alt);
    check_rejects("a fixed temperature 4", counts, alt, 4);
    kf_model(1, m + 1, n + 1, rule + 1, 4, 1, 1.0, 1, alt);
    check_rejects("the last step alone", counts, alt, 4);
}

/* ------------------------------------------------------------ vase_dkv */

/* STORE mode, rank 2: candidates k = v = a_i e_i on orthogonal axes, so
 * ||k G||^2 = a_i^2 E_i with E_i independent Exp(1) (a chi-square with 2
 * degrees of freedom over 2), and the score (a_i^2 E_i)^2 is lowest for
 * candidate i with probability (1/a_i^2) / sum_j (1/a_j^2). */
static int dkv_victim(const char *params, int seed, const float a2[4]) {
    char spec[160];
    snprintf(spec, sizeof spec, "vase_dkv sink=0 recent=1 chunk=1 %s seed=%d", params, seed);
    kvc_cache *c;
    if (kvc_cache_create_spec(&c, 1, 1, 4, 5, KVC_DTYPE_F32, KVC_MODE_STORE, spec, NULL) != KVC_OK) return -1;
    int ok = 1;
    for (int t = 0; t < 6 && ok; t++) {
        float kv[4] = {0.5f, 0.5f, 0.5f, 0.5f};
        if (t < 4) {
            kv[0] = kv[1] = kv[2] = kv[3] = 0.0f;
            kv[t] = sqrtf(a2[t]);
        }
        ok = kvc_cache_append(c, t, kv, kv) == KVC_OK;
    }
    int64_t res[5];
    uint32_t n = ok ? residents(c, 0, res) : 0;
    int gone = -1, gone_n = 0;
    for (int i = 0; i < 4; i++)
        if (!contains(res, n, i)) gone = i, gone_n++;
    kvc_cache_destroy(c);
    return ok && n == 5 && gone_n == 1 ? gone : -1;
}

/* Monte Carlo size of the reference distributions: large against the
 * library's samples (N), so the chi-square measures the library's noise
 * (inflated by about N/M: 2% here, 7% under KVC_TEST_SHORT). */
static int mc_size(void) { return trials(2) == 1 ? 60000 : 400000; }

/* Monte Carlo of the victim under variants of the rule: rank r (even), one
 * projection for keys and values or separate ones. A unit vector's squared
 * projection onto r directions of N(0, 1/r) is chi-square(r) / r, and a
 * chi-square with 2m degrees of freedom is a sum of m Exp(mean 2). */
static double chi2_even(uint64_t *s, int r) {
    double x = 0;
    for (int j = 0; j < r / 2; j++) x += -2.0 * log(1.0 - kvt_unif(s));
    return x;
}
static void dkv_model(const float a2[4], int rank, int separate, double *p) {
    const int M = mc_size();
    uint64_t s = 99, counts[4] = {0};
    for (int it = 0; it < M; it++) {
        double best = INFINITY;
        int arg = 0;
        for (int i = 0; i < 4; i++) {
            double kk = chi2_even(&s, rank), vv = separate ? chi2_even(&s, rank) : kk;
            double score = a2[i] * kk * a2[i] * vv;
            if (score < best) best = score, arg = i;
        }
        counts[arg]++;
    }
    for (int i = 0; i < 4; i++) p[i] = (double)counts[i] / M;
}

TEST(vase_dkv_projection_distribution) {
    const int N = trials(8000);
    static const float a2[4] = {1, 2, 3, 4};
    uint64_t counts[4] = {0};
    int ok = 1;
    for (int trial = 0; trial < N && ok; trial++) {
        int k = dkv_victim("rank=2", trial, a2);
        ok = k >= 0;
        if (ok) counts[k]++;
    }
    REQUIRE(ok);
    double p[4], alt[4], z = 0;
    for (int i = 0; i < 4; i++) z += 1.0 / a2[i];
    for (int i = 0; i < 4; i++) p[i] = 1.0 / a2[i] / z;
    check_fit("vase_dkv rank 2, victim", counts, p, 4);
    dkv_model(a2, 2, 1, alt);
    check_rejects("separate projections for keys and values", counts, alt, 4);
    dkv_model(a2, 20, 0, alt);
    check_rejects("rank 20 instead of 2", counts, alt, 4);
    for (int i = 0; i < 4; i++) alt[i] = i == 0 ? 0.97 : 0.01; /* exact leverage: the smallest always goes */
    check_rejects("no projection (exact norms)", counts, alt, 4);
    /* and the default rank is 20: the same cache without rank= follows the rank-20 law */
    double p20[4];
    dkv_model(a2, 20, 0, p20);
    uint64_t c20[4] = {0};
    for (int trial = 0; trial < N && ok; trial++) {
        int k = dkv_victim("", trial + 777, a2);
        ok = k >= 0;
        if (ok) c20[k]++;
    }
    REQUIRE(ok);
    check_fit("vase_dkv default rank (20)", c20, p20, 4);
    check_rejects("rank 2 as the default", c20, p, 4);
}

/* The projection is drawn again at every eviction: one INDEX cache of
 * capacity 3 (recent 1) fed tokens on two orthogonal axes at random; whenever
 * the two candidates lie on different axes (same norm), each is the victim
 * with probability 1/2, independently of earlier evictions. A projection
 * drawn once would always evict the same axis. */
TEST(vase_dkv_redrawn_each_eviction) {
    const int N = trials(6000);
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, 3, KVC_DTYPE_F32, KVC_MODE_INDEX,
                                  "vase_dkv sink=0 recent=1 chunk=1 seed=5", NULL) == KVC_OK);
    uint64_t s = 31, counts[2] = {0}, pairs[4] = {0};
    int axis[8192], prev = -1, ok = 1;
    for (int t = 0; t < N && t < 8192 && ok; t++) {
        int64_t before[3];
        uint32_t nb = residents(c, 0, before), slot;
        axis[t] = kvt_unif(&s) < 0.5 ? 0 : 1;
        float kv[2] = {axis[t] == 0 ? 1.0f : 0.0f, axis[t] == 1 ? 1.0f : 0.0f};
        int64_t ev[1];
        ok = kvc_cache_reserve(c, t, kv, kv, &slot, ev) == KVC_OK;
        if (!ok || nb < 3) continue;
        /* candidates: the two older residents */
        int a = axis[before[0]], b = axis[before[1]];
        if (a == b) {
            prev = -1;
            continue;
        }
        int gone_axis = axis[ev[0]];
        ok = ev[0] == before[0] || ev[0] == before[1];
        counts[gone_axis]++;
        if (prev >= 0) pairs[prev * 2 + gone_axis]++;
        prev = gone_axis;
    }
    kvc_cache_destroy(c);
    REQUIRE(ok);
    double half[2] = {0.5, 0.5}, fixed[2] = {0.9, 0.1}, quarter[4] = {0.25, 0.25, 0.25, 0.25};
    double sticky[4] = {0.35, 0.15, 0.15, 0.35};
    check_fit("vase_dkv, axis of the victim", counts, half, 2);
    check_rejects("one axis favoured 9:1", counts, fixed, 2);
    check_fit("vase_dkv, consecutive victims' axes", pairs, quarter, 4);
    check_rejects("victims repeating their axis 70% of the time", pairs, sticky, 4);
}
