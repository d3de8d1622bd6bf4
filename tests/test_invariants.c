/* Invariants every cache keeps whatever its policy: protected tokens stay,
 * full refuses, window keeps exactly the last N, maps and counters agree,
 * reset forgets everything but the options, stored rows read back as
 * written (per dtype rounding), defaults follow the policies' papers, and
 * nothing allocates after the cache freezes. */
#include <stdlib.h>

#include "kvc.h"
#include "snapshot.h"
#include "test.h"


static int resident(const int64_t *pos, uint32_t cap, int64_t p) {
    for (uint32_t s = 0; s < cap; s++)
        if (pos[s] == p) return 1;
    return 0;
}

/* One decode step on any cache: append or reserve, then attend or observe. */
static int step(kvc_cache *c, kvc_mode mode, int64_t pos, uint32_t n_kv, uint32_t n_q, uint32_t d, uint64_t *rs) {
    float k[64], v[64], q[128], out[128], mass[256];
    uint32_t slots[8];
    for (uint32_t i = 0; i < n_kv * d; i++) k[i] = kvt_frand(rs), v[i] = kvt_frand(rs);
    for (uint32_t i = 0; i < n_q * d; i++) q[i] = 2 * kvt_frand(rs);
    if (mode == KVC_MODE_STORE) {
        int rc = kvc_cache_append(c, pos, k, v);
        return rc ? rc : kvc_cache_attend(c, q, out);
    }
    for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
        for (uint32_t s = 0; s < kvc_cache_capacity(c); s++) mass[s] = (kvt_frand(rs) + 1.0f) / 2;
        kvc_cache_observe(c, g, mass, kvc_cache_capacity(c));
    }
    return kvc_cache_reserve(c, pos, k, v, slots, NULL);
}

/* Every evicting policy, both modes, both scopes, with and without blocks:
 * the first `sink` tokens and the last `recent` stay resident, maps agree
 * with len, and the counters add up. */
TEST(invariant_protected_tokens_stay) {
    static const char *const policies[] = {"window", "sink", "random", "h2o", "tova", "knorm", "vatp", "vase"};
    static const struct {
        uint32_t cap, sink, recent, chunk, block;
    } shapes[] = {{12, 3, 4, 1, 1}, {24, 5, 6, 3, 2}, {16, 0, 7, 2, 1}, {20, 4, 0, 4, 1}};
    char why[256];
    for (size_t p = 0; p < sizeof policies / sizeof *policies; p++)
        for (int mode = 0; mode < 2; mode++)
            for (int shared = 0; shared < 2; shared++)
                for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
                    kvc_cache *c;
                    uint32_t cap = shapes[sh].cap, sink = shapes[sh].sink, recent = shapes[sh].recent;
                    REQUIRE(kvc_cache_create(&c, 2, 4, 4, cap, KVC_DTYPE_F32, (kvc_mode)mode,
                                             kvc_policy_by_name(policies[p]), NULL) == KVC_OK);
                    REQUIRE(kvc_cache_set(c, KVC_OPT_SCOPE, shared) == KVC_OK);
                    REQUIRE(kvc_cache_set(c, KVC_OPT_SINK, sink) == KVC_OK);
                    REQUIRE(kvc_cache_set(c, KVC_OPT_RECENT, recent) == KVC_OK);
                    REQUIRE(kvc_cache_set(c, KVC_OPT_CHUNK, shapes[sh].chunk) == KVC_OK);
                    REQUIRE(kvc_cache_set(c, KVC_OPT_BLOCK, shapes[sh].block) == KVC_OK);
                    uint64_t rs = 17 + sh;
                    int64_t pos[32], appended[200];
                    for (int t = 0; t < 90; t++) {
                        appended[t] = 5 + 2 * t;
                        int rc = step(c, (kvc_mode)mode, appended[t], 2, 4, 4, &rs);
                        CHECKF(rc == KVC_OK, "%s: step %d: %s", policies[p], t, kvc_strerror(rc));
                        if (rc) break;
                        int ok = kvt_consistent(c, (kvc_mode)mode, why, sizeof why);
                        CHECKF(ok, "%s mode %d shape %zu step %d: %s", policies[p], mode, sh, t, why);
                        for (uint32_t g = 0; g < kvc_cache_groups(c) && ok; g++) {
                            kvc_cache_positions(c, g, pos);
                            for (int i = 0; i < t + 1 && ok; i++) {
                                int prot = i < (int)sink || i >= t - (int)recent;
                                if (prot && !resident(pos, cap, appended[i])) {
                                    CHECKF(0, "%s mode %d scope %d shape %zu: step %d evicted protected token %d",
                                           policies[p], mode, shared, sh, t, i);
                                    ok = 0;
                                }
                            }
                        }
                        kvc_stats st;
                        kvc_cache_stats(c, &st);
                        CHECK_EQ(st.appends, t + 1);
                        CHECK_EQ(st.evictions, (uint64_t)kvc_cache_groups(c) * (t + 1 - kvc_cache_len(c)));
                        if (mode == KVC_MODE_STORE) CHECK_EQ(st.attends, t + 1);
                        if (!ok) break;
                    }
                    kvc_cache_destroy(c);
                }
}

/* full: fills to capacity, then refuses with KVC_EFULL and changes nothing. */
TEST(invariant_full_refuses) {
    for (int mode = 0; mode < 2; mode++) {
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 2, 2, 3, 6, KVC_DTYPE_F32, (kvc_mode)mode, kvc_policy_full(), NULL) == KVC_OK);
        uint64_t rs = 3;
        for (int t = 0; t < 6; t++) REQUIRE(step(c, (kvc_mode)mode, t, 2, 2, 3, &rs) == KVC_OK);
        CHECK_EQ(kvc_cache_len(c), 6);
        float kv[6] = {1, 2, 3, 4, 5, 6};
        uint32_t slots[2];
        int64_t ev[2];
        kvt_snap before, after;
        char why[200];
        kvt_snap_take(c, NULL, 2, 3, &before);
        for (int again = 0; again < 2; again++) {
            int rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, 6, kv, kv) : kvc_cache_reserve(c, 6, kv, kv, slots, ev);
            CHECK_EQ(rc, KVC_EFULL);
            CHECK(kvc_cache_last_error(c)[0] != 0);
            kvt_snap_take(c, NULL, 2, 3, &after);
            CHECKF(kvt_snap_equal(&before, &after, why, sizeof why), "mode %d: %s", mode, why);
            kvt_snap_free(&after);
        }
        kvt_snap_free(&before);
        CHECK_EQ(kvc_cache_reset(c), KVC_OK);
        CHECK_EQ(step(c, (kvc_mode)mode, 0, 2, 2, 3, &rs), KVC_OK);
        kvc_cache_destroy(c);
    }
}

/* window with chunk 1 keeps exactly the last N positions; with chunk c the
 * residents are always the newest len positions. */
TEST(invariant_window_keeps_last_n) {
    for (int mode = 0; mode < 2; mode++)
        for (int shared = 0; shared < 2; shared++)
            for (uint32_t chunk = 1; chunk <= 3; chunk += 2) {
                kvc_cache *c;
                const uint32_t N = 7;
                REQUIRE(kvc_cache_create(&c, 3, 3, 2, N, KVC_DTYPE_F32, (kvc_mode)mode, kvc_policy_window(), NULL) ==
                        KVC_OK);
                REQUIRE(kvc_cache_set(c, KVC_OPT_SCOPE, shared) == KVC_OK);
                REQUIRE(kvc_cache_set(c, KVC_OPT_CHUNK, chunk) == KVC_OK);
                uint64_t rs = 9;
                int64_t pos[8];
                for (int t = 0; t < 60; t++) {
                    REQUIRE(step(c, (kvc_mode)mode, 10 * t, 3, 3, 2, &rs) == KVC_OK);
                    uint32_t len = kvc_cache_len(c);
                    if (chunk == 1) CHECK_EQ(len, (uint32_t)(t + 1) < N ? (uint32_t)(t + 1) : N);
                    for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
                        kvc_cache_positions(c, g, pos);
                        for (uint32_t i = 0; i < len; i++)
                            CHECKF(resident(pos, N, 10 * (t - (int)i)), "mode %d chunk %u step %d: %d missing", mode,
                                   chunk, t, t - (int)i);
                    }
                }
                kvc_cache_destroy(c);
            }
}

/* reset forgets tokens, counters, policy state and the query window, keeps
 * options and parameters, re-seeds the generator: replaying the same trace
 * gives the same evictions as the first time. */
static uint64_t replay(kvc_cache *c, kvc_mode mode) {
    uint64_t rs = 5, h = 0;
    int64_t pos[16];
    for (int t = 0; t < 80; t++) {
        if (step(c, mode, t, 2, 4, 4, &rs)) return 0;
        for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
            kvc_cache_positions(c, g, pos);
            for (int s = 0; s < 16; s++) h = h * 1000003u + (uint64_t)(pos[s] + 1);
        }
    }
    return h;
}

TEST(invariant_reset) {
    static const char *const specs[] = {"vase sink=2 recent=3 chunk=4 query_window=5 pool=3 seed=8",
                                        "random recent=2 chunk=2 seed=1", "h2o norm=lifetime recent=4",
                                        "tova scope=head"};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        for (int mode = 0; mode < 2; mode++) {
            kvc_cache *c, *fresh;
            REQUIRE(kvc_cache_create_spec(&c, 2, 4, 4, 16, KVC_DTYPE_F32, (kvc_mode)mode, specs[i], NULL) == KVC_OK);
            REQUIRE(kvc_cache_create_spec(&fresh, 2, 4, 4, 16, KVC_DTYPE_F32, (kvc_mode)mode, specs[i], NULL) ==
                    KVC_OK);
            CHECK_EQ(kvc_cache_reset(c), KVC_OK); /* before freezing: nothing to forget */
            uint64_t h1 = replay(c, (kvc_mode)mode);
            REQUIRE(h1 != 0);
            kvt_snap opts_before, after;
            const kvc_policy *pol = kvc_policy_by_name(kvc_cache_policy_name(c));
            kvt_snap_take(c, pol, 2, 4, &opts_before);
            CHECK_EQ(kvc_cache_reset(c), KVC_OK);
            kvt_snap_take(c, pol, 2, 4, &after);
            CHECK_EQ(after.len, 0);
            CHECK(after.stats.appends == 0 && after.stats.evictions == 0 && after.stats.attends == 0);
            for (size_t s = 0; s < (size_t)after.groups * after.cap; s++) CHECK_EQ(after.pos[s], -1);
            CHECK(memcmp(opts_before.opt, after.opt, sizeof after.opt) == 0);
            CHECK(memcmp(opts_before.params, after.params, sizeof after.params) == 0);
            kvt_snap_free(&opts_before);
            kvt_snap_free(&after);
            /* options stay frozen after reset */
            CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 1), KVC_ESTATE);
            uint64_t h2 = replay(c, (kvc_mode)mode), h3 = replay(fresh, (kvc_mode)mode);
            CHECKF(h1 == h2 && h2 == h3, "%s mode %d: replay after reset differs", specs[i], mode);
            kvc_cache_destroy(c);
            kvc_cache_destroy(fresh);
        }
}

/* Independent round-to-nearest-even into f16 / bf16, via exact double arithmetic. */
static double round_to(double x, int mant_bits, int min_exp, double max_finite) {
    double a = fabs(x);
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    if (e - 1 < min_exp) e = min_exp + 1; /* subnormal: fixed quantum */
    double quantum = ldexp(1.0, e - 1 - mant_bits);
    double r = nearbyint(a / quantum) * quantum;
    if (r > max_finite) r = INFINITY;
    return copysign(r, x);
}
static float expect_stored(float x, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F16) return (float)round_to(x, 10, -14, 65504.0);
    if (dt == KVC_DTYPE_BF16) return (float)round_to(x, 7, -126, 0x1.fep127);
    return x;
}

TEST(invariant_read_returns_appended) {
    /* special values: halfway cases, subnormals, near the f16 maximum, signed zero */
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f,
                                    1.0f + 3 * 0x1p-8f, 65504.0f, 65519.0f, -65519.0f, 0x1p-24f, 0x1p-25f,
                                    0x1.8p-25f, 3 * 0x1p-26f, 0x1p-14f, 0x1.ff8p-15f, 0x1p-130f, 1e-40f, 3.14159265f,
                                    -2.71828183f, 1234.567f, 65519.99f};
    const size_t ns = sizeof special / sizeof *special;
    for (int dt = 0; dt < 3; dt++)
        for (int shared = 0; shared < 2; shared++) {
            enum { KV = 2, D = 12, CAP = 8 };
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, KV, 4, D, CAP, (kvc_dtype)dt, KVC_MODE_STORE, kvc_policy_random(), NULL) ==
                    KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_SCOPE, shared) == KVC_OK);
            REQUIRE(kvc_cache_set(c, KVC_OPT_CHUNK, 2) == KVC_OK);
            static float ks[40][KV * D], vs[40][KV * D];
            uint64_t rs = 11;
            size_t si = 0;
            for (int t = 0; t < 40; t++) {
                for (int i = 0; i < KV * D; i++) {
                    ks[t][i] = (i & 1) ? special[si++ % ns] : 100.0f * kvt_frand(&rs);
                    vs[t][i] = (i & 2) ? special[si++ % ns] : kvt_frand(&rs) * 1e-3f;
                }
                REQUIRE(kvc_cache_append(c, t, ks[t], vs[t]) == KVC_OK);
                int64_t pos[CAP];
                for (uint32_t h = 0; h < KV; h++) {
                    kvc_cache_positions(c, shared ? 0 : h, pos);
                    for (uint32_t s = 0; s < kvc_cache_len(c); s++) {
                        float k[D], v[D];
                        REQUIRE(kvc_cache_read(c, h, s, k, v) == KVC_OK);
                        for (int e = 0; e < D; e++) {
                            float wk = expect_stored(ks[pos[s]][h * D + e], (kvc_dtype)dt);
                            float wv = expect_stored(vs[pos[s]][h * D + e], (kvc_dtype)dt);
                            CHECKF(memcmp(&k[e], &wk, 4) == 0 && memcmp(&v[e], &wv, 4) == 0,
                                   "dtype %d pos %lld head %u elem %d: read %a/%a, expected %a/%a (from %a/%a)", dt,
                                   (long long)pos[s], h, e, k[e], v[e], wk, wv, ks[pos[s]][h * D + e],
                                   vs[pos[s]][h * D + e]);
                        }
                    }
                    CHECK_EQ(kvc_cache_read(c, h, kvc_cache_len(c), NULL, NULL), KVC_ERANGE);
                }
                if (kvt_failed()) break;
            }
            kvc_cache_destroy(c);
        }
}

/* Defaults from the policies' papers (DESIGN table), read back with get. */
TEST(invariant_policy_defaults) {
    static const struct {
        const char *name;
        int64_t scope, sink, recent, chunk, window;
    } want[] = {
        {"full", 0, 0, 0, 1, 64},    {"window", 0, 0, 0, 1, 64},   {"sink", 0, 4, 0, 1, 64},
        {"random", 0, 0, 0, 1, 64},  {"h2o", 0, 0, 1024, 1, 64},   {"tova", 1, 0, 0, 1, 64},
        {"knorm", 0, 4, 1024, 1, 64}, {"vatp", 0, 4, 1024, 1, 64},     {"vase", 0, 4, 64, 64, 64},
        {"vase_dkv", 0, 4, 64, 64, 64}, {"rkv", 0, 0, 8, 128, 8},  {"keydiff", 0, 0, 512, 1, 64},
        {"scissorhands", 0, 0, 10, 1, 64}, {"keyformer", 0, 0, 614, 1, 64}, /* 30% of 2048 */
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        kvc_cache *c;
        int64_t v[7];
        /* at 2048 slots the reference defaults fit unscaled (rkv's chunk 128 = capacity/16) */
        REQUIRE(kvc_cache_create(&c, 2, 2, 8, 2048, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_by_name(want[i].name),
                                 NULL) == KVC_OK);
        for (int k = 0; k < 7; k++) REQUIRE(kvc_cache_get(c, (kvc_option)k, &v[k]) == KVC_OK);
        CHECKF(v[KVC_OPT_SCOPE] == want[i].scope && v[KVC_OPT_SINK] == want[i].sink &&
                   v[KVC_OPT_RECENT] == want[i].recent && v[KVC_OPT_CHUNK] == want[i].chunk &&
                   v[KVC_OPT_BLOCK] == 1 && v[KVC_OPT_SEED] == 0 && v[KVC_OPT_QUERY_WINDOW] == want[i].window,
               "%s defaults: scope %lld sink %lld recent %lld chunk %lld block %lld seed %lld window %lld",
               want[i].name, (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[3], (long long)v[4],
               (long long)v[5], (long long)v[6]);
        CHECK_EQ(kvc_cache_groups(c), want[i].scope ? 1 : 2);
        CHECK(strcmp(kvc_cache_policy_name(c), want[i].name) == 0);
        kvc_cache_destroy(c);
    }
    double d;
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 8, 512, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_vase(), NULL) == KVC_OK);
    CHECK(kvc_cache_get_param(c, "reserve", &d) == KVC_OK && d == 0.25);
    CHECK(kvc_cache_get_param(c, "pool", &d) == KVC_OK && d == 5);
    kvc_cache_destroy(c);
    REQUIRE(kvc_cache_create(&c, 1, 1, 8, 512, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_h2o(), NULL) == KVC_OK);
    CHECK(kvc_cache_get_param(c, "norm", &d) == KVC_OK && d == 0);
    kvc_cache_destroy(c);
    /* the new policies' parameters (docs/policies.md cites where each value comes from) */
    static const struct {
        const char *policy, *param;
        double value;
    } params[] = {{"vase_dkv", "rank", 20},      {"rkv", "lambda", 0.1},         {"rkv", "threshold", 0.5},
                  {"rkv", "pool", 7},            {"scissorhands", "history", 400}, {"keyformer", "tau_init", 1},
                  {"keyformer", "tau_end", 2},   {"keyformer", "horizon", 128}};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        REQUIRE(kvc_cache_create(&c, 1, 1, 8, 512, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_by_name(params[i].policy),
                                 NULL) == KVC_OK);
        CHECKF(kvc_cache_get_param(c, params[i].param, &d) == KVC_OK && d == params[i].value, "%s %s = %g",
               params[i].policy, params[i].param, d);
        kvc_cache_destroy(c);
    }
    /* small budgets: chunk capped at capacity/16; sink and recent at capacity/4
     * only when the defaults leave no room to evict */
    int64_t chunk, recent, sink;
    static const struct {
        uint32_t cap;
        int64_t chunk, recent, sink;
    } scaled[] = {{1024, 64, 64, 4}, {128, 8, 64, 4}, {100, 6, 64, 4}, {64, 4, 16, 4}, {8, 1, 2, 2}, {2, 1, 0, 0}};
    for (size_t i = 0; i < sizeof scaled / sizeof scaled[0]; i++) {
        REQUIRE(kvc_cache_create(&c, 1, 1, 8, scaled[i].cap, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_vase(),
                                 NULL) == KVC_OK);
        kvc_cache_get(c, KVC_OPT_CHUNK, &chunk);
        kvc_cache_get(c, KVC_OPT_RECENT, &recent);
        kvc_cache_get(c, KVC_OPT_SINK, &sink);
        CHECKF(chunk == scaled[i].chunk && recent == scaled[i].recent && sink == scaled[i].sink,
               "capacity %u: chunk %lld recent %lld sink %lld", scaled[i].cap, (long long)chunk, (long long)recent,
               (long long)sink);
        CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
        kvc_cache_destroy(c);
    }
    REQUIRE(kvc_cache_create(&c, 1, 1, 8, 4, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_sink(), NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK); /* sink 4 scaled to 1: room to evict */
    kvc_cache_destroy(c);
    REQUIRE(kvc_cache_create(&c, 1, 1, 8, 9, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_h2o(), NULL) == KVC_OK);
    kvc_cache_get(c, KVC_OPT_RECENT, &recent);
    CHECK_EQ(recent, 4); /* capacity/2 fits: not capped */
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
    kvc_cache_destroy(c);
}

/* ------------------------------------------------------------ allocation */

typedef struct {
    long calls, live, after_freeze;
    int frozen;
} counting;

static void *count_alloc(void *opaque, size_t size, size_t align) {
    counting *a = opaque;
    a->calls++;
    a->live++;
    a->after_freeze += a->frozen;
    size_t rounded = (size + align - 1) / align * align;
    return aligned_alloc(align, rounded ? rounded : align);
}
static void count_free(void *opaque, void *p) {
    counting *a = opaque;
    if (p) a->live--;
    free(p);
}

/* After the cache freezes, appends, attends, reserves, observes and resets
 * allocate nothing; destroy frees everything. Every policy, both modes. */
TEST(invariant_no_allocation_after_freeze) {
    for (size_t p = 0; kvc_policy_at(p); p++)
        for (int mode = 0; mode < 2; mode++) {
            counting a = {0, 0, 0, 0};
            kvc_allocator al = {count_alloc, count_free, &a};
            kvc_cache *c;
            REQUIRE(kvc_cache_create(&c, 2, 4, 8, 48, KVC_DTYPE_F16, (kvc_mode)mode, kvc_policy_at(p), &al) ==
                    KVC_OK);
            kvc_cache_set(c, KVC_OPT_CHUNK, 2);
            kvc_cache_set(c, KVC_OPT_RECENT, 4);
            REQUIRE(kvc_cache_prepare(c) == KVC_OK);
            a.frozen = 1;
            uint64_t rs = 1;
            int limit = kvc_policy_at(p) == kvc_policy_full() ? 48 : 150;
            for (int t = 0; t < limit; t++) {
                CHECK_EQ(step(c, (kvc_mode)mode, t, 2, 4, 8, &rs), KVC_OK);
                if (t == 100) kvc_cache_reset(c);
            }
            CHECKF(a.after_freeze == 0, "%s mode %d: %ld allocations after freezing", kvc_policy_at(p)->name, mode,
                   a.after_freeze);
            kvc_cache_destroy(c);
            CHECKF(a.live == 0, "%s: %ld blocks leaked", kvc_policy_at(p)->name, a.live);
            CHECK(a.calls >= 2);
        }
}
