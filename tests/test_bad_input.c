/* Bad input: every misuse gets its specific status, leaves the cache exactly
 * as it was (options, parameters, counters, slot maps, stored rows, random
 * generator) and, when the call may record one, a non-empty message. */
#include <limits.h>
#include <stdlib.h>

#include "kvc.h"
#include "snapshot.h"
#include "test.h"

enum { KV = 2, NQ = 4, D = 4, CAP = 8 };

/* A fresh cache (message "") holding `fill` tokens, after one attend or observe. */
static kvc_cache *fixture(const kvc_policy *pol, kvc_mode mode, int fill) {
    kvc_cache *c;
    if (kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F16, mode, pol, NULL)) return NULL;
    kvc_cache_set(c, KVC_OPT_SINK, 1);
    kvc_cache_set(c, KVC_OPT_RECENT, 2);
    float k[KV * D], q[NQ * D], out[NQ * D], mass[CAP];
    uint32_t slots[KV];
    for (int t = 0; t < fill; t++) {
        for (int i = 0; i < KV * D; i++) k[i] = (float)((t * 7 + i * 3) % 11) / 5 - 1;
        int rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, 10 + 2 * t, k, k)
                                        : kvc_cache_reserve(c, 10 + 2 * t, k, k, slots, NULL);
        if (rc) {
            kvc_cache_destroy(c);
            return NULL;
        }
    }
    if (fill) {
        for (int i = 0; i < NQ * D; i++) q[i] = (float)(i % 5) / 4;
        for (int i = 0; i < CAP; i++) mass[i] = 0.125f * (float)i;
        if (mode == KVC_MODE_STORE) kvc_cache_attend(c, q, out);
        else kvc_cache_observe(c, 0, mass, CAP);
    }
    return c;
}

/* Run `call` on cache c: it must return `want`, change nothing observable,
 * and (msg) leave a message. */
#define BAD(c, pol, call, want, msg)                                                                           \
    do {                                                                                                       \
        kvt_snap b_, a_;                                                                                       \
        char w_[256];                                                                                          \
        kvt_snap_take((c), (pol), KV, D, &b_);                                                                 \
        int r_ = (call);                                                                                       \
        kvt_snap_take((c), (pol), KV, D, &a_);                                                                 \
        CHECKF(r_ == (want), "%s: %d (%s), expected %d (%s)", #call, r_, kvc_strerror(r_), (int)(want),       \
               kvc_strerror(want));                                                                            \
        CHECKF(kvt_snap_equal(&b_, &a_, w_, sizeof w_), "%s changed the cache: %s", #call, w_);              \
        if (msg) CHECKF(kvc_cache_last_error(c)[0] != 0, "%s: no message", #call);                            \
        kvt_snap_free(&b_);                                                                                    \
        kvt_snap_free(&a_);                                                                                    \
    } while (0)

/* Same, on a fresh fixture each time. */
#define BADF(pol, mode, fill, call, want, msg)                                                                 \
    do {                                                                                                       \
        kvc_cache *c = fixture((pol), (mode), (fill));                                                         \
        REQUIRE(c != NULL);                                                                                    \
        BAD(c, (pol), call, want, msg);                                                                        \
        kvc_cache_destroy(c);                                                                                  \
    } while (0)

TEST(bad_strerror_never_null) {
    int known = 0;
    for (long i = -100000; i <= 100000; i++) {
        const char *m = kvc_strerror((int)i);
        if (!m || !*m) {
            CHECKF(0, "kvc_strerror(%ld) is %s", i, m ? "empty" : "NULL");
            break;
        }
        known += strcmp(m, kvc_strerror(-1000)) != 0;
    }
    CHECK_EQ(known, 16); /* KVC_OK .. KVC_ESYNTAX, and nothing else */
    const int extremes[] = {INT_MIN, INT_MIN + 1, INT_MAX, -16, 1, KVC__STATUS_END};
    for (size_t i = 0; i < sizeof extremes / sizeof *extremes; i++) CHECK(kvc_strerror(extremes[i]) != NULL);
    for (int s = KVC_OK; s >= KVC_ESYNTAX; s--)
        for (int t = s - 1; t >= KVC_ESYNTAX; t--) CHECK(strcmp(kvc_strerror(s), kvc_strerror(t)) != 0);
    CHECK(kvc_cache_last_error(NULL) != NULL);
    CHECK(kvc_version_number() == KVC_VERSION_NUMBER && strcmp(kvc_version_string(), KVC_VERSION_STRING) == 0);
}

TEST(bad_null_handles) {
    float x[64] = {0};
    int64_t p[64], v64;
    double d;
    uint32_t slots[4];
    kvc_stats st;
    CHECK_EQ(kvc_cache_set(NULL, KVC_OPT_SINK, 1), KVC_EINVAL);
    CHECK_EQ(kvc_cache_get(NULL, KVC_OPT_SINK, &v64), KVC_EINVAL);
    CHECK_EQ(kvc_cache_set_scale(NULL, 1.0f), KVC_EINVAL);
    CHECK_EQ(kvc_cache_set_param(NULL, "norm", 1), KVC_EINVAL);
    CHECK_EQ(kvc_cache_get_param(NULL, "norm", &d), KVC_EINVAL);
    CHECK_EQ(kvc_cache_apply_spec(NULL, "sink=1"), KVC_EINVAL);
    CHECK_EQ(kvc_cache_prepare(NULL), KVC_EINVAL);
    CHECK_EQ(kvc_cache_reset(NULL), KVC_EINVAL);
    CHECK_EQ(kvc_cache_append(NULL, 0, x, x), KVC_EINVAL);
    CHECK_EQ(kvc_cache_attend(NULL, x, x + 32), KVC_EINVAL);
    CHECK_EQ(kvc_cache_attend_heads(NULL, x, x + 32, 0, 1), KVC_EINVAL);
    CHECK_EQ(kvc_cache_attend_finish(NULL, x), KVC_EINVAL);
    CHECK_EQ(kvc_cache_read(NULL, 0, 0, x, x), KVC_EINVAL);
    CHECK_EQ(kvc_cache_reserve(NULL, 0, x, x, slots, p), KVC_EINVAL);
    CHECK_EQ(kvc_cache_observe(NULL, 0, x, 1), KVC_EINVAL);
    CHECK_EQ(kvc_cache_positions(NULL, 0, p), KVC_EINVAL);
    CHECK_EQ(kvc_cache_stats(NULL, &st), KVC_EINVAL);
    CHECK(kvc_cache_groups(NULL) == 0 && kvc_cache_capacity(NULL) == 0 && kvc_cache_len(NULL) == 0);
    CHECK(kvc_cache_max_evictions(NULL) == 0);
    CHECK(kvc_cache_policy_name(NULL) != NULL && strcmp(kvc_cache_policy_name(NULL), "") == 0);
    kvc_cache_destroy(NULL);
}

TEST(bad_null_buffers) {
    const kvc_policy *h2o = kvc_policy_h2o(), *knorm = kvc_policy_knorm();
    float x[64] = {0};
    int64_t v64;
    double d;
    uint32_t slots[KV];
    for (int fill = 0; fill <= 3; fill += 3) {
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_append(c, 100, NULL, x), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_append(c, 100, x, NULL), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_attend(c, NULL, x), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_attend(c, x, NULL), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_attend_heads(c, NULL, x, 0, 1), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_attend_finish(c, NULL), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_reserve(c, 100, x, x, NULL, NULL), KVC_EINVAL, 1);
        BADF(knorm, KVC_MODE_INDEX, fill, kvc_cache_reserve(c, 100, NULL, x, slots, NULL), KVC_EINVAL, 1);
        BADF(knorm, KVC_MODE_INDEX, fill, kvc_cache_reserve(c, 100, x, NULL, slots, NULL), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_observe(c, 0, NULL, 1), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_positions(c, 0, NULL), KVC_EINVAL, 0);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_stats(c, NULL), KVC_EINVAL, 0);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_get(c, KVC_OPT_SINK, NULL), KVC_EINVAL, 0);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_get_param(c, NULL, &d), KVC_EINVAL, 0);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_get_param(c, "norm", NULL), KVC_EINVAL, 0);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_set_param(c, NULL, 1), KVC_EINVAL, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_apply_spec(c, NULL), KVC_EINVAL, 1);
    }
    (void)v64;
    /* a policy without key/value statistics accepts NULL k and v in INDEX mode */
    kvc_cache *c = fixture(h2o, KVC_MODE_INDEX, 1);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_reserve(c, 100, NULL, NULL, slots, NULL), KVC_OK);
    kvc_cache_destroy(c);
    CHECK_EQ(kvc_cache_create(NULL, 1, 1, 1, 1, KVC_DTYPE_F32, KVC_MODE_STORE, NULL, NULL), KVC_EINVAL);
}

/* Shapes: zero, inconsistent, overflowing. `out` is NULL after any failure. */
TEST(bad_shapes) {
    static const struct {
        uint32_t n_kv, n_q, d, cap;
        int dtype, mode, want;
    } bad[] = {
        {0, 1, 4, 8, 0, 0, KVC_EINVAL},
        {1, 0, 4, 8, 0, 0, KVC_EINVAL},
        {1, 1, 0, 8, 0, 0, KVC_EINVAL},
        {1, 1, 4, 0, 0, 0, KVC_EINVAL},
        {2, 3, 4, 8, 0, 0, KVC_EINVAL},  /* n_q not a multiple of n_kv */
        {4, 2, 4, 8, 0, 0, KVC_EINVAL},  /* fewer query heads than kv heads */
        {3, 8, 4, 8, 0, 1, KVC_EINVAL},
        {1, 1, 4, 8, 4, 0, KVC_EINVAL},  /* dtype */
        {1, 1, 4, 8, -1, 0, KVC_EINVAL},
        {1, 1, 4, 8, 0, 2, KVC_EINVAL},  /* mode */
        {1, 1, 4, 1u << 31, 0, 0, KVC_EOVERFLOW},
        {1, 1, 4, UINT32_MAX, 0, 1, KVC_EOVERFLOW},
        {1, 1, 65537, 8, 0, 0, KVC_EOVERFLOW},
        {UINT32_MAX, UINT32_MAX, 65536, (1u << 31) - 1, 0, 0, KVC_EOVERFLOW}, /* n_kv*capacity*head_dim */
        {1, UINT32_MAX, 65536, (1u << 31) - 1, 2, 1, KVC_EOVERFLOW},
        {65536, 65536, 65536, 1u << 30, 1, 0, KVC_EOVERFLOW},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kvc_cache *c = (kvc_cache *)&c;
        int rc = kvc_cache_create(&c, bad[i].n_kv, bad[i].n_q, bad[i].d, bad[i].cap, (kvc_dtype)bad[i].dtype,
                                  (kvc_mode)bad[i].mode, kvc_policy_h2o(), NULL);
        CHECKF(rc == bad[i].want, "shape %zu: %d (%s), expected %d", i, rc, kvc_strerror(rc), bad[i].want);
        CHECKF(c == NULL, "shape %zu: out not reset to NULL", i);
    }
    /* the limits themselves are fine (nothing is allocated before the cache freezes) */
    kvc_cache *c;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 65536, 8, KVC_DTYPE_F32, KVC_MODE_INDEX, NULL, NULL), KVC_OK);
    kvc_cache_destroy(c);
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 1, (1u << 31) - 1, KVC_DTYPE_F32, KVC_MODE_INDEX, NULL, NULL), KVC_OK);
    kvc_cache_destroy(c);
    kvc_allocator half = {NULL, NULL, NULL};
    c = (kvc_cache *)&c;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, NULL, &half), KVC_EINVAL);
    CHECK(c == NULL);
}

TEST(bad_positions) {
    const kvc_policy *pol = kvc_policy_random();
    float x[KV * D] = {0};
    uint32_t slots[KV];
    for (int mode = 0; mode < 2; mode++) {
        kvc_mode m = (kvc_mode)mode;
        /* the fixture's last position is 10 + 2*(fill-1) */
        for (int fill = 1; fill <= CAP + 2; fill += CAP + 1) {
            int64_t last = 10 + 2 * (fill - 1);
            if (m == KVC_MODE_STORE) {
                BADF(pol, m, fill, kvc_cache_append(c, last, x, x), KVC_EORDER, 1);     /* repeated */
                BADF(pol, m, fill, kvc_cache_append(c, last - 1, x, x), KVC_EORDER, 1); /* backwards */
                BADF(pol, m, fill, kvc_cache_append(c, INT64_MIN, x, x), KVC_EINVAL, 1);
                BADF(pol, m, fill, kvc_cache_append(c, -1, x, x), KVC_EINVAL, 1);
            } else {
                BADF(pol, m, fill, kvc_cache_reserve(c, last, x, x, slots, NULL), KVC_EORDER, 1);
                BADF(pol, m, fill, kvc_cache_reserve(c, 0, NULL, NULL, slots, NULL), KVC_EORDER, 1);
                BADF(pol, m, fill, kvc_cache_reserve(c, -5, x, x, slots, NULL), KVC_EINVAL, 1);
            }
        }
        /* after INT64_MAX nothing can follow; a failed position can be retried */
        kvc_cache *c = fixture(pol, m, 2);
        REQUIRE(c != NULL);
        int rc = m == KVC_MODE_STORE ? kvc_cache_append(c, INT64_MAX, x, x) : kvc_cache_reserve(c, INT64_MAX, x, x, slots, NULL);
        CHECK_EQ(rc, KVC_OK);
        BAD(c, pol, m == KVC_MODE_STORE ? kvc_cache_append(c, INT64_MAX, x, x) : kvc_cache_reserve(c, INT64_MAX, x, x, slots, NULL),
            KVC_EORDER, 1);
        kvc_cache_destroy(c);
        c = fixture(pol, m, 2);
        REQUIRE(c != NULL);
        rc = m == KVC_MODE_STORE ? kvc_cache_append(c, 12, x, x) : kvc_cache_reserve(c, 12, x, x, slots, NULL);
        CHECK_EQ(rc, KVC_EORDER);
        rc = m == KVC_MODE_STORE ? kvc_cache_append(c, 15, x, x) : kvc_cache_reserve(c, 15, x, x, slots, NULL);
        CHECK_EQ(rc, KVC_OK);
        kvc_cache_destroy(c);
    }
}

/* NaN and Inf are rejected with KVC_ENONFINITE: nothing stored, nothing written. */
TEST(bad_nonfinite) {
    const kvc_policy *vase = kvc_policy_vase(), *h2o = kvc_policy_h2o();
    const float bads[] = {NAN, -NAN, INFINITY, -INFINITY};
    float good[NQ * D], bad[NQ * D], out[NQ * D], mass[CAP];
    uint32_t slots[KV];
    for (int i = 0; i < NQ * D; i++) good[i] = 0.25f * (float)(i % 4);
    for (size_t b = 0; b < 4; b++)
        for (int at = 0; at < KV * D; at += 3) {
            memcpy(bad, good, sizeof bad);
            bad[at] = bads[b];
            BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_append(c, 100, bad, good), KVC_ENONFINITE, 1);
            BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_append(c, 100, good, bad), KVC_ENONFINITE, 1);
            BADF(vase, KVC_MODE_INDEX, 3, kvc_cache_reserve(c, 100, bad, good, slots, NULL), KVC_ENONFINITE, 1);
            BADF(vase, KVC_MODE_INDEX, CAP + 1, kvc_cache_reserve(c, 100, good, bad, slots, NULL), KVC_ENONFINITE, 1);
            for (int nq = at; nq < NQ * D; nq += KV * D) {
                memcpy(bad, good, sizeof bad);
                bad[nq] = bads[b];
                for (int i = 0; i < NQ * D; i++) out[i] = 1234.5f;
                BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_attend(c, bad, out), KVC_ENONFINITE, 1);
                BADF(vase, KVC_MODE_STORE, 3, kvc_cache_attend(c, bad, out), KVC_ENONFINITE, 1);
                BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_attend_heads(c, bad, out, 0, KV), KVC_ENONFINITE, 0);
                BADF(vase, KVC_MODE_STORE, 3, kvc_cache_attend_finish(c, bad), KVC_ENONFINITE, 1);
                for (int i = 0; i < NQ * D; i++) CHECK(out[i] == 1234.5f);
            }
            for (int i = 0; i < CAP; i++) mass[i] = 0.5f;
            mass[at % CAP] = bads[b];
            BADF(h2o, KVC_MODE_INDEX, 3, kvc_cache_observe(c, 0, mass, CAP), KVC_ENONFINITE, 1);
        }
    /* negative mass is rejected; -0 is zero */
    for (int i = 0; i < CAP; i++) mass[i] = 0.5f;
    mass[3] = -1e-30f;
    BADF(h2o, KVC_MODE_INDEX, 3, kvc_cache_observe(c, 1, mass, CAP), KVC_ENONFINITE, 1);
    mass[3] = -0.0f;
    kvc_cache *c = fixture(h2o, KVC_MODE_INDEX, 3);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_observe(c, 1, mass, CAP), KVC_OK);
    /* k and v are ignored (may hold anything) when the policy needs no statistics */
    memcpy(bad, good, sizeof bad);
    bad[0] = NAN;
    CHECK_EQ(kvc_cache_reserve(c, 100, bad, bad, slots, NULL), KVC_OK);
    kvc_cache_destroy(c);
}

/* A rejected observation is not recorded: the next step's average is the
 * good calls' alone. Checked through a policy that records what it gets. */
static float seen[CAP];
static void seen_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    (void)state;
    if (g == 0) memcpy(seen, mass, n * sizeof *mass);
}
TEST(bad_observation_not_recorded) {
    const kvc_policy rec = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = "rec",
                            .needs = KVC_NEED_ATTN, .on_attend = seen_attend};
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 2, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, &rec, NULL) == KVC_OK);
    uint32_t slot, first;
    REQUIRE(kvc_cache_reserve(c, 0, NULL, NULL, &first, NULL) == KVC_OK);
    float good[CAP] = {0}, bad[CAP] = {0};
    good[first] = 0.75f;
    bad[first] = NAN;
    CHECK_EQ(kvc_cache_observe(c, 0, good, CAP), KVC_OK);
    CHECK_EQ(kvc_cache_observe(c, 0, bad, CAP), KVC_ENONFINITE);
    bad[first] = -1.0f;
    CHECK_EQ(kvc_cache_observe(c, 0, bad, CAP), KVC_ENONFINITE);
    CHECK_EQ(kvc_cache_observe(c, 1, good, CAP), KVC_ERANGE);
    CHECK_EQ(kvc_cache_observe(c, 0, good, CAP + 1), KVC_ERANGE);
    REQUIRE(kvc_cache_reserve(c, 1, NULL, NULL, &slot, NULL) == KVC_OK);
    CHECK(seen[first] == 0.75f); /* not (0.75 + NaN) / 2, nor 0.75 / 3 */
    kvc_stats st;
    kvc_cache_stats(c, &st);
    CHECK_EQ(st.attends, 1);
    kvc_cache_destroy(c);
}

TEST(bad_options) {
    const kvc_policy *h2o = kvc_policy_h2o();
    static const struct {
        int key;
        int64_t value;
        int want;
    } bad[] = {
        {KVC_OPT_SCOPE, 2, KVC_ERANGE},         {KVC_OPT_SCOPE, -1, KVC_ERANGE},
        {KVC_OPT_SINK, CAP + 1, KVC_ERANGE},    {KVC_OPT_SINK, -1, KVC_ERANGE},
        {KVC_OPT_RECENT, CAP + 1, KVC_ERANGE},  {KVC_OPT_RECENT, INT64_MIN, KVC_ERANGE},
        {KVC_OPT_CHUNK, 0, KVC_ERANGE},         {KVC_OPT_CHUNK, CAP + 1, KVC_ERANGE},
        {KVC_OPT_BLOCK, 0, KVC_ERANGE},         {KVC_OPT_BLOCK, 3, KVC_ERANGE},
        {KVC_OPT_BLOCK, CAP * 2, KVC_ERANGE},   {KVC_OPT_QUERY_WINDOW, 0, KVC_ERANGE},
        {KVC_OPT_QUERY_WINDOW, 4097, KVC_ERANGE}, {KVC_OPT_PROTECT, -1, KVC_ERANGE},
        {KVC_OPT_PREFILL_MAX, -1, KVC_ERANGE},  {KVC_OPT_PREFILL_MAX, (int64_t)1 << 31, KVC_ERANGE},
        {9, 0, KVC_EUNKNOWN},
        {-1, 0, KVC_EUNKNOWN},                  {1000, 0, KVC_EUNKNOWN},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        BADF(h2o, KVC_MODE_INDEX, 0, kvc_cache_set(c, (kvc_option)bad[i].key, bad[i].value), bad[i].want, 1);
    int64_t v;
    BADF(h2o, KVC_MODE_INDEX, 0, kvc_cache_get(c, (kvc_option)9, &v), KVC_EUNKNOWN, 0);
    BADF(h2o, KVC_MODE_INDEX, 0, kvc_cache_get(c, (kvc_option)-1, &v), KVC_EUNKNOWN, 0);
    const float scales[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof scales / sizeof *scales; i++)
        BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_scale(c, scales[i]), KVC_ERANGE, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_param(c, "norm", 2), KVC_ERANGE, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_param(c, "norm", -0.5), KVC_ERANGE, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_param(c, "norm", NAN), KVC_ERANGE, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_param(c, "pool", 3), KVC_EUNKNOWN, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_set_param(c, "", 3), KVC_EUNKNOWN, 1);
    double d;
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_get_param(c, "pool", &d), KVC_EUNKNOWN, 0);
    /* jointly inconsistent options: refused when the cache freezes, which it then does not */
    kvc_cache *c = fixture(h2o, KVC_MODE_STORE, 0);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_RECENT, 6), KVC_OK); /* sink 1 + recent 6 + chunk 2 > 8 */
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, 2), KVC_OK);
    float x[KV * D] = {0};
    BAD(c, h2o, kvc_cache_prepare(c), KVC_EINVAL, 1);
    BAD(c, h2o, kvc_cache_append(c, 0, x, x), KVC_EINVAL, 1);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, 1), KVC_OK); /* still configurable */
    CHECK_EQ(kvc_cache_append(c, 0, x, x), KVC_OK);
    kvc_cache_destroy(c);
    c = fixture(h2o, KVC_MODE_INDEX, 0);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, 4), KVC_OK); /* sink 1 and recent 2 take a block each, +1: no room */
    BAD(c, h2o, kvc_cache_prepare(c), KVC_EINVAL, 1);
    kvc_cache_destroy(c);
}

TEST(bad_options_after_freeze) {
    const kvc_policy *h2o = kvc_policy_h2o();
    for (int mode = 0; mode < 2; mode++)
        for (int fill = 1; fill <= CAP + 1; fill += CAP) {
            kvc_mode m = (kvc_mode)mode;
            BADF(h2o, m, fill, kvc_cache_set(c, KVC_OPT_SINK, 0), KVC_ESTATE, 1);
            BADF(h2o, m, fill, kvc_cache_set(c, KVC_OPT_SEED, 5), KVC_ESTATE, 1);
            BADF(h2o, m, fill, kvc_cache_set_scale(c, 0.5f), KVC_ESTATE, 1);
            BADF(h2o, m, fill, kvc_cache_set_param(c, "norm", 1), KVC_ESTATE, 1);
            BADF(h2o, m, fill, kvc_cache_apply_spec(c, "recent=1"), KVC_ESTATE, 1);
        }
    kvc_cache *c = fixture(h2o, KVC_MODE_STORE, 0);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK); /* idempotent */
    BAD(c, h2o, kvc_cache_set(c, KVC_OPT_CHUNK, 1), KVC_ESTATE, 1);
    CHECK_EQ(kvc_cache_reset(c), KVC_OK);
    BAD(c, h2o, kvc_cache_set(c, KVC_OPT_CHUNK, 1), KVC_ESTATE, 1); /* reset keeps options frozen */
    kvc_cache_destroy(c);
}

TEST(bad_mode_and_ranges) {
    const kvc_policy *h2o = kvc_policy_h2o();
    float x[NQ * D] = {0}, out[NQ * D], mass[CAP] = {0}, k[D];
    uint32_t slots[KV];
    int64_t pos[CAP];
    for (int fill = 0; fill <= 3; fill += 3) {
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_append(c, 100, x, x), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_attend(c, x, out), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_attend_heads(c, x, out, 0, 1), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_attend_finish(c, x), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_read(c, 0, 0, k, k), KVC_EMODE, 0);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_reserve(c, 100, x, x, slots, NULL), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_observe(c, 0, mass, CAP), KVC_EMODE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_observe(c, KV, mass, CAP), KVC_ERANGE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_observe(c, 0, mass, CAP + 1), KVC_ERANGE, 1);
        BADF(h2o, KVC_MODE_INDEX, fill, kvc_cache_positions(c, KV, pos), KVC_ERANGE, 0);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_read(c, KV, 0, k, k), KVC_ERANGE, 0);
        BADF(h2o, KVC_MODE_STORE, fill, kvc_cache_read(c, 0, (uint32_t)fill, k, k), KVC_ERANGE, 0);
    }
    /* attention over nothing */
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_attend(c, x, out), KVC_EEMPTY, 1);
    BADF(h2o, KVC_MODE_STORE, 0, kvc_cache_attend_heads(c, x, out, 0, KV), KVC_EEMPTY, 1);
    kvc_cache *c = fixture(h2o, KVC_MODE_STORE, 3);
    REQUIRE(c != NULL);
    CHECK_EQ(kvc_cache_reset(c), KVC_OK);
    BAD(c, h2o, kvc_cache_attend(c, x, out), KVC_EEMPTY, 1);
    kvc_cache_destroy(c);
    /* head ranges */
    BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_attend_heads(c, x, out, 1, 1), KVC_ERANGE, 0);
    BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_attend_heads(c, x, out, 1, 0), KVC_ERANGE, 0);
    BADF(h2o, KVC_MODE_STORE, 3, kvc_cache_attend_heads(c, x, out, 0, KV + 1), KVC_ERANGE, 0);
}

/* ------------------------------------------------------------ misbehaving select */

typedef enum { A_GOOD, A_RANGE, A_HUGE, A_DUP, A_SINK, A_RECENT, A_INSIDE, A_ERR_POS, A_ERR_NOMEM } answer;
static answer g_answer;
static uint64_t g_draw;

static int answer_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    g_draw = kvc_rng_next(req->rng); /* consumes the generator before answering */
    uint32_t n = req->n_victims, first = req->candidates[0];
    for (uint32_t i = 0; i < n; i++) victims[i] = req->candidates[(g_draw + i) % req->n_candidates];
    if (n > 1 && (g_draw % req->n_candidates) + n > req->n_candidates)
        for (uint32_t i = 0; i < n; i++) victims[i] = req->candidates[i]; /* keep them distinct */
    switch (g_answer) {
    case A_GOOD: return 0;
    case A_RANGE: victims[n - 1] = 8 * CAP; return 0;
    case A_HUGE: victims[0] = UINT32_MAX; return 0;
    case A_DUP: victims[n - 1] = victims[0]; return n > 1 ? 0 : KVC_EPOLICY;
    case A_SINK: victims[0] = 0; return 0; /* the sink lives in slot 0 */
    case A_RECENT: {
        /* the newest resident's slot (largest position) */
        uint32_t best = 0;
        for (uint32_t s = 0; s < CAP; s++)
            if (req->positions[s] > req->positions[best]) best = s;
        victims[0] = best;
        return 0;
    }
    case A_INSIDE: victims[0] = first + 1; return 0; /* not the first slot of its unit */
    case A_ERR_POS: return 7;
    case A_ERR_NOMEM: return KVC_ENOMEM;
    }
    return 0;
}

static const kvc_policy answer_policy = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy),
                                         .name = "answer", .needs = KVC_NEED_RNG, .select = answer_select};

TEST(bad_select_answers) {
    static const struct {
        answer a;
        int want;
    } cases[] = {{A_RANGE, KVC_EPOLICY}, {A_HUGE, KVC_EPOLICY},  {A_DUP, KVC_EPOLICY},
                 {A_SINK, KVC_EPOLICY},  {A_RECENT, KVC_EPOLICY}, {A_INSIDE, KVC_EPOLICY},
                 {A_ERR_POS, KVC_EPOLICY}, {A_ERR_NOMEM, KVC_ENOMEM}};
    float x[KV * D] = {0};
    uint32_t slots[KV];
    int64_t ev[KV * 4];
    for (int mode = 0; mode < 2; mode++)
        for (int block = 1; block <= 2; block++)
            for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                if (cases[i].a == A_INSIDE && block == 1) continue;
                kvc_mode m = (kvc_mode)mode;
                kvc_cache *c, *twin;
                REQUIRE(kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F32, m, &answer_policy, NULL) == KVC_OK);
                REQUIRE(kvc_cache_create(&twin, KV, NQ, D, CAP, KVC_DTYPE_F32, m, &answer_policy, NULL) == KVC_OK);
                for (int w = 0; w < 2; w++) {
                    kvc_cache *cc = w ? twin : c;
                    REQUIRE(kvc_cache_apply_spec(cc, block == 1 ? "sink=1 recent=1 chunk=2 seed=3"
                                                                : "sink=1 recent=1 chunk=1 block=2 seed=3") == KVC_OK);
                    g_answer = A_GOOD;
                    for (int t = 0; t < CAP + 5; t++)
                        REQUIRE((m == KVC_MODE_STORE ? kvc_cache_append(cc, t, x, x)
                                                     : kvc_cache_reserve(cc, t, NULL, NULL, slots, ev)) == KVC_OK);
                }
                /* fill until the next append must evict */
                while (kvc_cache_len(c) < CAP) {
                    int64_t t = 1000 + kvc_cache_len(c);
                    REQUIRE((m == KVC_MODE_STORE ? kvc_cache_append(c, t, x, x)
                                                 : kvc_cache_reserve(c, t, NULL, NULL, slots, ev)) == KVC_OK);
                    REQUIRE((m == KVC_MODE_STORE ? kvc_cache_append(twin, t, x, x)
                                                 : kvc_cache_reserve(twin, t, NULL, NULL, slots, ev)) == KVC_OK);
                }
                g_answer = cases[i].a;
                int64_t p = 5000;
                BAD(c, NULL,
                    m == KVC_MODE_STORE ? kvc_cache_append(c, p, x, x) : kvc_cache_reserve(c, p, NULL, NULL, slots, ev),
                    cases[i].want, 1);
                /* the generator was restored: the retry draws what the twin draws */
                g_answer = A_GOOD;
                REQUIRE((m == KVC_MODE_STORE ? kvc_cache_append(c, p, x, x)
                                             : kvc_cache_reserve(c, p, NULL, NULL, slots, ev)) == KVC_OK);
                uint64_t d1 = g_draw;
                REQUIRE((m == KVC_MODE_STORE ? kvc_cache_append(twin, p, x, x)
                                             : kvc_cache_reserve(twin, p, NULL, NULL, slots, ev)) == KVC_OK);
                CHECKF(d1 == g_draw, "mode %d block %d answer %d: generator not restored", mode, block, cases[i].a);
                kvt_snap a, b;
                char why[200];
                kvt_snap_take(c, NULL, KV, D, &a);
                kvt_snap_take(twin, NULL, KV, D, &b);
                CHECKF(kvt_snap_equal(&a, &b, why, sizeof why), "after the retry: %s", why);
                kvt_snap_free(&a);
                kvt_snap_free(&b);
                kvc_cache_destroy(c);
                kvc_cache_destroy(twin);
            }
}

/* ------------------------------------------------------------ bad policies */

static int g_init_rc, g_inits, g_finis;
static size_t g_state;
static size_t st_size(const kvc_policy_ctx *ctx) {
    (void)ctx;
    return g_state;
}
static int st_init(void *s, const kvc_policy_ctx *ctx) {
    (void)s, (void)ctx;
    g_inits++;
    return g_init_rc;
}
static void st_fini(void *s) {
    (void)s;
    g_finis++;
}

TEST(bad_policy_vtables) {
    static const kvc_param ok_param[] = {{"p", 1, 0, 2, NULL, "fine"}};
    static const kvc_param bad_def[] = {{"p", 3, 0, 2, NULL, "default out of range"}};
    static const kvc_param no_name[] = {{NULL, 1, 0, 2, NULL, "no name"}};
    static const kvc_param nan_def[] = {{"p", NAN, 0, 2, NULL, "NaN default"}};
    const size_t full = sizeof(kvc_policy);
    struct {
        kvc_policy p;
        int want;
    } bad[] = {
        {{.abi_version = 0, .struct_size = full, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI + 1, .struct_size = full, .name = "x"}, KVC_EABI},
        {{.abi_version = UINT32_MAX, .struct_size = full, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = 0, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = 8, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = (uint32_t)offsetof(kvc_policy, params), .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = (uint32_t)full + 1, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = (uint32_t)full + 64, .name = "x"}, KVC_EABI},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = NULL}, KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = ""}, KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 1}, KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 17, .params = ok_param},
         KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 1, .params = bad_def},
         KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 1, .params = no_name},
         KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 1, .params = nan_def},
         KVC_EINVAL},
        {{.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .default_scope = 2}, KVC_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kvc_cache *c = (kvc_cache *)&c;
        int rc = kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &bad[i].p, NULL);
        CHECKF(rc == bad[i].want, "vtable %zu: %d (%s), expected %d", i, rc, kvc_strerror(rc), bad[i].want);
        CHECK(c == NULL);
    }
    kvc_policy good = {.abi_version = KVC_POLICY_ABI, .struct_size = full, .name = "x", .n_params = 1,
                       .params = ok_param};
    kvc_cache *c;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &good, NULL), KVC_OK);
    kvc_cache_destroy(c);
}

/* init failing: its own status (or KVC_EINVAL for a positive one), the cache
 * not frozen and unchanged, fini called; a later append can succeed. A state
 * size beyond reason: KVC_ENOMEM. */
TEST(bad_policy_init_and_state) {
    kvc_policy p = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = "st",
                    .state_size = st_size, .init = st_init, .fini = st_fini};
    static const struct {
        int rc, want;
    } cases[] = {{KVC_ERANGE, KVC_ERANGE}, {KVC_ENOMEM, KVC_ENOMEM}, {5, KVC_EINVAL}};
    float x[KV * D] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        g_state = 100;
        g_init_rc = cases[i].rc;
        g_inits = g_finis = 0;
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
        BAD(c, NULL, kvc_cache_append(c, 0, x, x), cases[i].want, 1);
        CHECK(g_inits == 1 && g_finis == 1);
        CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 1), KVC_OK); /* not frozen */
        g_init_rc = 0;
        CHECK_EQ(kvc_cache_append(c, 0, x, x), KVC_OK);
        kvc_cache_destroy(c);
        CHECK(g_inits == 2 && g_finis == 2);
    }
    g_init_rc = 0;
    g_state = (size_t)1 << 50;
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, &p, NULL) == KVC_OK);
    BAD(c, NULL, kvc_cache_prepare(c), KVC_ENOMEM, 1);
    g_state = 0;
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------ allocator */

static long g_allow; /* allocations still allowed; -1: unlimited */
static void *lim_alloc(void *opaque, size_t size, size_t align) {
    (void)opaque;
    if (g_allow == 0) return NULL;
    if (g_allow > 0) g_allow--;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void lim_free(void *opaque, void *p) {
    (void)opaque;
    free(p);
}

TEST(bad_out_of_memory) {
    kvc_allocator al = {lim_alloc, lim_free, NULL};
    float x[KV * D] = {0};
    uint32_t slots[KV];
    kvc_cache *c = (kvc_cache *)&c;
    g_allow = 0;
    CHECK_EQ(kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F32, KVC_MODE_STORE, NULL, &al), KVC_ENOMEM);
    CHECK(c == NULL);
    for (int mode = 0; mode < 2; mode++)
        for (long allow = 0; allow < 2; allow++) {
            g_allow = -1;
            REQUIRE(kvc_cache_create(&c, KV, NQ, D, CAP, KVC_DTYPE_F32, (kvc_mode)mode, kvc_policy_h2o(), &al) ==
                    KVC_OK);
            g_allow = allow; /* the slots block fails, or the policy state */
            BAD(c, kvc_policy_h2o(),
                mode == KVC_MODE_STORE ? kvc_cache_append(c, 0, x, x) : kvc_cache_reserve(c, 0, x, x, slots, NULL),
                KVC_ENOMEM, 1);
            CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 2), KVC_OK); /* still configurable */
            g_allow = -1;
            CHECK_EQ(mode == KVC_MODE_STORE ? kvc_cache_append(c, 0, x, x) : kvc_cache_reserve(c, 0, x, x, slots, NULL),
                     KVC_OK);
            kvc_cache_destroy(c);
        }
}
