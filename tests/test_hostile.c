/* Hostile user policies: select answers that are out of range, duplicated,
 * protected, short or errors; odd state sizes; every optional slot NULL; bad
 * vtables. The cache must answer with a clear code and stay exactly as it
 * was (slot maps, len, counters, random generator), in both modes. */
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

enum { H_KV = 2, H_Q = 4, H_D = 4, H_CAP = 16 };

typedef enum {
    ANS_VALID,       /* the first n_victims candidates */
    ANS_RANDOM,      /* n_victims distinct candidates drawn with the cache's rng */
    ANS_OUT_OF_RANGE,
    ANS_HUGE,        /* UINT32_MAX */
    ANS_DUPLICATE,
    ANS_PROTECTED,   /* a sink slot */
    ANS_UNALIGNED,   /* inside a block, not its first slot */
    ANS_SHORT,       /* writes only the first victim */
    ANS_NONE,        /* writes nothing */
    ANS_ERR_NOMEM,   /* returns KVC_ENOMEM */
    ANS_ERR_POSITIVE,
    ANS_ERR_STRAY    /* a negative value that is no kvc_status */
} answer;

static struct {
    answer ans;
    size_t ssize;
    int init_rc, init_calls;
    uint64_t first_draw; /* first rng value drawn by the last ANS_RANDOM select */
    int select_calls;
} hp;

static size_t hp_state_size(const kvc_policy_ctx *ctx) {
    (void)ctx;
    return hp.ssize;
}

static int hp_init(void *state, const kvc_policy_ctx *ctx) {
    (void)state, (void)ctx;
    hp.init_calls++;
    return hp.init_rc;
}

static int hp_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    hp.select_calls++;
    uint32_t n = req->n_victims;
    switch (hp.ans) {
    case ANS_VALID:
        for (uint32_t i = 0; i < n; i++) victims[i] = req->candidates[i];
        return 0;
    case ANS_RANDOM: {
        uint32_t pool[H_CAP];
        for (uint32_t i = 0; i < req->n_candidates; i++) pool[i] = req->candidates[i];
        for (uint32_t i = 0; i < n; i++) {
            uint64_t x = kvc_rng_next(req->rng);
            if (i == 0) hp.first_draw = x;
            uint32_t j = i + (uint32_t)(x % (req->n_candidates - i)), t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
            victims[i] = pool[i];
        }
        return 0;
    }
    case ANS_OUT_OF_RANGE: victims[0] = H_CAP; break;
    case ANS_HUGE: victims[0] = UINT32_MAX; break;
    case ANS_DUPLICATE:
        victims[0] = victims[1] = req->candidates[0];
        for (uint32_t i = 2; i < n; i++) victims[i] = req->candidates[i];
        return 0;
    case ANS_PROTECTED: victims[0] = 0; break; /* slot 0 holds the first sink */
    case ANS_UNALIGNED: victims[0] = req->candidates[0] + 1; break;
    case ANS_SHORT: victims[0] = req->candidates[0]; return 0;
    case ANS_NONE: return 0;
    case ANS_ERR_NOMEM: return KVC_ENOMEM;
    case ANS_ERR_POSITIVE: return 3;
    case ANS_ERR_STRAY: return -1000;
    }
    for (uint32_t i = 1; i < n; i++) victims[i] = req->candidates[i];
    return 0;
}

static kvc_policy hp_policy(void) {
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = "hostile";
    p.needs = KVC_NEED_RNG;
    p.default_sink = 1;
    p.state_size = hp_state_size;
    p.init = hp_init;
    p.select = hp_select;
    return p;
}

/* Everything observable about a cache's decisions. */
typedef struct {
    uint32_t len;
    kvc_stats st;
    int64_t pos[H_KV][H_CAP];
} hsnap;

static void hs_take(const kvc_cache *c, hsnap *s) {
    memset(s, 0, sizeof *s);
    s->len = kvc_cache_len(c);
    kvc_cache_stats(c, &s->st);
    for (uint32_t g = 0; g < kvc_cache_groups(c); g++) kvc_cache_positions(c, g, s->pos[g]);
}

static int hs_same(const hsnap *a, const hsnap *b) { return memcmp(a, b, sizeof *a) == 0; }

static void fill(float *x, size_t n, int t) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((t * 7 + (int)i * 3) % 11) / 8.0f - 0.6f;
}

/* Append or reserve token t. */
static int put(kvc_cache *c, kvc_mode mode, int t) {
    float k[H_KV * H_D], v[H_KV * H_D];
    fill(k, H_KV * H_D, t);
    fill(v, H_KV * H_D, t + 1);
    uint32_t slots[H_KV];
    int64_t ev[H_KV * H_CAP];
    return mode == KVC_MODE_STORE ? kvc_cache_append(c, t, k, v) : kvc_cache_reserve(c, t, k, v, slots, ev);
}

static kvc_cache *hp_cache(kvc_policy *p, kvc_mode mode, uint32_t chunk, uint32_t block) {
    kvc_cache *c = NULL;
    if (kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, mode, p, NULL) != KVC_OK) return NULL;
    kvc_cache_set(c, KVC_OPT_CHUNK, chunk);
    kvc_cache_set(c, KVC_OPT_BLOCK, block);
    kvc_cache_set(c, KVC_OPT_SEED, 42);
    return c;
}

/* Fill to capacity plus a few evictions with valid answers, then one bad
 * answer: it must fail with `expect`, change nothing, and leave the cache
 * usable: the next valid append behaves as if the bad one never happened. */
static void bad_answer_case(answer bad, int expect, kvc_mode mode, uint32_t chunk, uint32_t block) {
    kvc_policy p = hp_policy();
    hp.ans = ANS_RANDOM;
    hp.ssize = 8;
    hp.init_rc = 0;
    kvc_cache *c = hp_cache(&p, mode, chunk, block), *twin = hp_cache(&p, mode, chunk, block);
    REQUIRE(c && twin);
    int t = 0;
    for (; t < H_CAP + 3 * (int)(chunk * block); t++) {
        CHECKF(put(c, mode, t) == KVC_OK, "answer %d: %s", bad, kvc_cache_last_error(c));
        CHECK_EQ(put(twin, mode, t), KVC_OK);
    }
    /* fill up again so the next put must evict */
    while (kvc_cache_len(c) < H_CAP) {
        CHECK_EQ(put(c, mode, t), KVC_OK);
        CHECK_EQ(put(twin, mode, t), KVC_OK);
        t++;
    }
    hsnap before, after;
    hs_take(c, &before);
    hp.ans = bad;
    int calls = hp.select_calls;
    int rc = put(c, mode, t);
    CHECKF(rc == expect, "answer %d, mode %d, chunk %u, block %u: got %d (%s), expected %d", bad, mode, chunk, block,
           rc, kvc_cache_last_error(c), expect);
    CHECK(hp.select_calls > calls);
    CHECK(*kvc_cache_last_error(c) != 0);
    hs_take(c, &after);
    CHECKF(hs_same(&before, &after), "answer %d changed the cache", bad);
    /* same rng state as the twin that never saw the bad answer */
    hp.ans = ANS_RANDOM;
    CHECK_EQ(put(c, mode, t), KVC_OK);
    uint64_t d1 = hp.first_draw;
    CHECK_EQ(put(twin, mode, t), KVC_OK);
    CHECK(hp.first_draw == d1);
    hs_take(c, &before);
    hs_take(twin, &after);
    CHECK(hs_same(&before, &after));
    kvc_cache_destroy(c);
    kvc_cache_destroy(twin);
}

TEST(hostile_select_answers_rejected_state_unchanged) {
    static const struct {
        answer a;
        int expect;
    } cases[] = {
        {ANS_OUT_OF_RANGE, KVC_EPOLICY}, {ANS_HUGE, KVC_EPOLICY},       {ANS_DUPLICATE, KVC_EPOLICY},
        {ANS_PROTECTED, KVC_EPOLICY},    {ANS_SHORT, KVC_EPOLICY},      {ANS_NONE, KVC_EPOLICY},
        {ANS_ERR_NOMEM, KVC_ENOMEM},     {ANS_ERR_POSITIVE, KVC_EPOLICY}, {ANS_ERR_STRAY, KVC_EPOLICY},
    };
    for (int mode = 0; mode < 2; mode++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            uint32_t chunk = cases[i].a == ANS_DUPLICATE || cases[i].a == ANS_SHORT ? 2 : 1;
            bad_answer_case(cases[i].a, cases[i].expect, (kvc_mode)mode, chunk, 1);
            bad_answer_case(cases[i].a, cases[i].expect, (kvc_mode)mode, 2, 1);
        }
    /* inside a block is not a candidate */
    bad_answer_case(ANS_UNALIGNED, KVC_EPOLICY, KVC_MODE_STORE, 1, 2);
    bad_answer_case(ANS_UNALIGNED, KVC_EPOLICY, KVC_MODE_INDEX, 2, 2);
}

/* A select that writes fewer victims than asked must not be completed by
 * whatever the victim buffer held before (the previous eviction's answer). */
TEST(hostile_short_answer_never_completed_by_stale_victims) {
    kvc_policy p = hp_policy();
    hp.ssize = 0;
    hp.init_rc = 0;
    for (int mode = 0; mode < 2; mode++) {
        hp.ans = ANS_VALID;
        kvc_cache *c = hp_cache(&p, (kvc_mode)mode, 2, 1);
        REQUIRE(c);
        int t = 0;
        for (; t < 40; t++) CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
        hp.ans = ANS_SHORT;
        hsnap before, after;
        hs_take(c, &before);
        CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_EPOLICY);
        hs_take(c, &after);
        CHECK(hs_same(&before, &after));
        kvc_cache_destroy(c);
    }
}

/* Pending observations reach the policy when reserve then fails in select
 * (documented); everything else is unchanged. */
TEST(hostile_index_failed_reserve_after_observe) {
    kvc_policy p = hp_policy();
    hp.ssize = 0;
    hp.init_rc = 0;
    hp.ans = ANS_VALID;
    kvc_cache *c = hp_cache(&p, KVC_MODE_INDEX, 1, 1);
    REQUIRE(c);
    int t = 0;
    for (; t < H_CAP; t++) CHECK_EQ(put(c, KVC_MODE_INDEX, t), KVC_OK);
    float mass[H_CAP];
    for (int i = 0; i < H_CAP; i++) mass[i] = 1.0f / H_CAP;
    CHECK_EQ(kvc_cache_observe(c, 0, mass, H_CAP), KVC_OK);
    hsnap before, after;
    hs_take(c, &before);
    hp.ans = ANS_OUT_OF_RANGE;
    CHECK_EQ(put(c, KVC_MODE_INDEX, t), KVC_EPOLICY);
    hs_take(c, &after);
    CHECK_EQ(after.st.attends, before.st.attends + 1);
    after.st.attends = before.st.attends;
    CHECK(hs_same(&before, &after));
    kvc_cache_destroy(c);
}

/* The built-in `full` never evicts: a full INDEX cache refuses before it
 * consumes the pending observations, so nothing at all changes. */
TEST(hostile_full_index_refusal_keeps_observations) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_full(), NULL) ==
            KVC_OK);
    int t = 0;
    for (; t < H_CAP; t++) CHECK_EQ(put(c, KVC_MODE_INDEX, t), KVC_OK);
    float mass[H_CAP] = {0};
    CHECK_EQ(kvc_cache_observe(c, 1, mass, H_CAP), KVC_OK);
    hsnap before, after;
    hs_take(c, &before);
    CHECK_EQ(put(c, KVC_MODE_INDEX, t), KVC_EFULL);
    hs_take(c, &after);
    CHECK(hs_same(&before, &after));
    kvc_cache_destroy(c);
}

/* A counting allocator that refuses anything above 1 GiB (as a real one would). */
static long h_live;
static void *h_alloc(void *o, size_t size, size_t align) {
    (void)o;
    if (size > ((size_t)1 << 30)) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) h_live++;
    return p;
}
static void h_free(void *o, void *p) {
    (void)o;
    h_live--;
    free(p);
}

TEST(hostile_state_sizes) {
    static const size_t sizes[] = {0, 1, 63, 65, (size_t)1 << 31, (size_t)1 << 40, ((size_t)1 << 40) + 1,
                                   SIZE_MAX / 2, SIZE_MAX - 63, SIZE_MAX};
    kvc_allocator al = {h_alloc, h_free, NULL};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int mode = 0; mode < 2; mode++) {
            kvc_policy p = hp_policy();
            hp.ans = ANS_RANDOM;
            hp.ssize = sizes[i];
            hp.init_rc = 0;
            h_live = 0;
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, (kvc_mode)mode, &p, &al) == KVC_OK);
            int rc = kvc_cache_prepare(c);
            if (sizes[i] <= 65) {
                CHECK_EQ(rc, KVC_OK);
                for (int t = 0; t < 40; t++) CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
            } else {
                CHECKF(rc == KVC_ENOMEM, "state_size %zu: %d", sizes[i], rc);
                CHECK(*kvc_cache_last_error(c) != 0);
                CHECK_EQ(kvc_cache_len(c), 0);
                CHECK_EQ(put(c, (kvc_mode)mode, 0), KVC_ENOMEM);
                CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 0), KVC_OK); /* still not frozen */
            }
            kvc_cache_destroy(c);
            CHECK_EQ(h_live, 0);
        }
}

TEST(hostile_init_error_then_recovery) {
    static const int codes[] = {KVC_ENOMEM, KVC_EINVAL, 5, -999};
    static const int expect[] = {KVC_ENOMEM, KVC_EINVAL, KVC_EINVAL, KVC_EINVAL};
    for (int mode = 0; mode < 2; mode++)
        for (int i = 0; i < 4; i++) {
            kvc_policy p = hp_policy();
            hp.ans = ANS_VALID;
            hp.ssize = 16;
            hp.init_rc = codes[i];
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, (kvc_mode)mode, &p, NULL) == KVC_OK);
            CHECK_EQ(put(c, (kvc_mode)mode, 0), expect[i]);
            CHECK_EQ(kvc_cache_len(c), 0);
            hp.init_rc = 0;
            for (int t = 0; t < 30; t++) CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
            /* failing on reset: the cache starts over and freezes again later */
            hp.init_rc = codes[i];
            CHECK_EQ(kvc_cache_reset(c), expect[i]);
            CHECK_EQ(kvc_cache_len(c), 0);
            hp.init_rc = 0;
            for (int t = 0; t < 30; t++) CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
            CHECK_EQ(kvc_cache_len(c), H_CAP);
            kvc_cache_destroy(c);
        }
}

TEST(hostile_all_optional_slots_null) {
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = "bare";
    p.needs = 0xffffffffu; /* asks for everything, provides nothing */
    for (int mode = 0; mode < 2; mode++) {
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, (kvc_mode)mode, &p, NULL) == KVC_OK);
        float q[H_Q * H_D], out[H_Q * H_D], mass[H_CAP] = {0};
        fill(q, H_Q * H_D, 3);
        int t = 0;
        for (; t < H_CAP; t++) {
            CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
            if (mode == KVC_MODE_STORE)
                CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
            else
                CHECK_EQ(kvc_cache_observe(c, 0, mass, H_CAP), KVC_OK);
        }
        hsnap before, after;
        hs_take(c, &before);
        CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_EFULL); /* neither select nor score: never evicts */
        hs_take(c, &after);
        CHECK(hs_same(&before, &after));
        CHECK_EQ(kvc_cache_reset(c), KVC_OK);
        CHECK_EQ(put(c, (kvc_mode)mode, 0), KVC_OK);
        kvc_cache_destroy(c);
        /* chunk x block beyond the capacity is refused even though nothing is ever evicted:
         * reserve writes groups x chunk x block entries of `evicted` */
        REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, (kvc_mode)mode, &p, NULL) == KVC_OK);
        CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, H_CAP), KVC_OK);
        CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, 2), KVC_OK);
        CHECK_EQ(kvc_cache_prepare(c), KVC_EINVAL);
        CHECK(*kvc_cache_last_error(c) != 0);
        CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, H_CAP / 2), KVC_OK);
        CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
        CHECK(kvc_cache_max_evictions(c) <= H_CAP);
        kvc_cache_destroy(c);
    }
}

/* score callbacks that answer NaN, Inf or garbage still give valid evictions. */
static unsigned h_noise = 1;
static void nan_score(void *state, uint32_t group, const uint32_t *slots, uint32_t n, float *keep) {
    static const float odd[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e38f, -1e38f, 1e-45f};
    (void)state, (void)group, (void)slots;
    for (uint32_t i = 0; i < n; i++) {
        h_noise = h_noise * 1103515245u + 12345u;
        keep[i] = odd[(h_noise >> 16) % 8];
    }
}

TEST(hostile_score_nan_inf) {
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = "nanscore";
    p.default_sink = 2;
    p.default_recent = 3;
    p.score = nan_score;
    for (int mode = 0; mode < 2; mode++)
        for (uint32_t block = 1; block <= 2; block++) {
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, H_KV, H_Q, H_D, H_CAP, KVC_DTYPE_F32, (kvc_mode)mode, &p, NULL) == KVC_OK);
            CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, block), KVC_OK);
            for (int t = 0; t < 200; t++) {
                CHECK_EQ(put(c, (kvc_mode)mode, t), KVC_OK);
                /* sinks (positions 0, 1) and the last 3 positions always resident */
                int64_t pos[H_CAP];
                for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
                    kvc_cache_positions(c, g, pos);
                    int have = 0;
                    for (int s = 0; s < H_CAP; s++)
                        have += pos[s] >= 0 && (pos[s] <= 1 || pos[s] >= t - 2);
                    CHECKF(have == (t < 2 ? t + 1 : t < 5 ? t + 1 : 5), "step %d group %u: %d protected found", t, g,
                           have);
                }
            }
            kvc_cache_destroy(c);
        }
}

TEST(hostile_bad_vtables) {
    kvc_cache *c = (kvc_cache *)&hp;
    kvc_policy p = hp_policy();
    p.abi_version = KVC_POLICY_ABI + 1;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EABI);
    CHECK(c == NULL);
    p = hp_policy();
    p.struct_size = 8;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EABI);
    p.struct_size = sizeof p + 8;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EABI);
    p = hp_policy();
    p.name = NULL;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    p.name = "";
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    p = hp_policy();
    p.n_params = 2;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    kvc_param bad = {"x", 5.0, 0.0, 1.0, NULL, "default outside its range"};
    p.n_params = 1;
    p.params = &bad;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    p.n_params = 1000;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    p = hp_policy();
    p.default_scope = 7;
    CHECK_EQ(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL), KVC_EINVAL);
    CHECK(c == NULL);
    /* absurd defaults are capped, not trusted */
    p = hp_policy();
    p.default_sink = UINT32_MAX;
    p.default_recent = UINT32_MAX - 1;
    p.default_chunk = UINT32_MAX;
    hp.ans = ANS_RANDOM;
    hp.ssize = 0;
    hp.init_rc = 0;
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
    int rc = put(c, KVC_MODE_STORE, 0);
    CHECKF(rc == KVC_OK || rc == KVC_EINVAL, "%d", rc);
    if (rc == KVC_EINVAL) CHECK(*kvc_cache_last_error(c) != 0);
    kvc_cache_destroy(c);
}

/* A policy compiled against the first ABI layout (struct ending at `params`)
 * lives in a buffer exactly that long: the core must not read past it. */
TEST(hostile_short_struct_size_not_overread) {
    kvc_policy full = hp_policy();
    size_t min = offsetof(kvc_policy, params) + sizeof(const kvc_param *);
    full.struct_size = (uint32_t)min;
    unsigned char *p = malloc(min);
    REQUIRE(p);
    memcpy(p, &full, min);
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, (const kvc_policy *)(void *)p, NULL) ==
            KVC_OK);
    free(p); /* the cache keeps its own copy */
    for (int t = 0; t < 8; t++) CHECK_EQ(put(c, KVC_MODE_STORE, t), KVC_OK);
    CHECK_EQ(put(c, KVC_MODE_STORE, 8), KVC_EFULL); /* no select or score in the prefix */
    kvc_cache_destroy(c);
}
