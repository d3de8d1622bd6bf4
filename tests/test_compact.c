/* Compaction plans (INDEX mode): every plan moves residents from past len
 * into holes below it, the engine's copy of the slot map (moves applied the
 * way an engine would) equals the library's, the freed-page count matches a
 * recount, and a compacting cache makes exactly the decisions of a twin that
 * never compacts (the policy state follows its tokens through on_move).
 * Also: no allocation after prepare in prefill, decode or compaction. */
#include <stdlib.h>

#include "kvc.h"
#include "snapshot.h"
#include "test.h"

enum { CK = 2, CQ = 4, CD = 4, CCAP = 24, CSTEPS = 300 };

static void ct_fill(float *x, size_t n, uint64_t *rs) {
    for (size_t i = 0; i < n; i++) x[i] = kvt_frand(rs);
}

/* mass by position -> by slot of this cache */
static void masses(const kvc_cache *c, uint32_t g, const float *by_pos, float *by_slot) {
    int64_t pos[CCAP];
    kvc_cache_positions(c, g, pos);
    for (uint32_t s = 0; s < CCAP; s++) by_slot[s] = pos[s] >= 0 ? by_pos[pos[s]] : 0.0f;
}

static int ct_trace(const char *spec, uint32_t page, int prefill, uint64_t seed) {
    kvc_cache *a = NULL, *b = NULL;
    char full[160];
    snprintf(full, sizeof full, "%s prefill_max=64 seed=7", spec);
    if (kvc_cache_create_spec(&a, CK, CQ, CD, CCAP, KVC_DTYPE_F32, KVC_MODE_INDEX, full, NULL) ||
        kvc_cache_create_spec(&b, CK, CQ, CD, CCAP, KVC_DTYPE_F32, KVC_MODE_INDEX, full, NULL)) {
        kvt_fail(__FILE__, __LINE__, "create '%s'", full);
        kvc_cache_destroy(a);
        return 1;
    }
    uint32_t G = kvc_cache_groups(a), maxev = kvc_cache_max_evictions(a);
    static float by_pos[2 * CSTEPS + 64], k[64 * CK * CD], v[64 * CK * CD], mass[CCAP];
    int64_t ev_a[8 * 64], ev_b[8 * 64], engine[4][CCAP], lib[CCAP];
    uint32_t sa[4], sb[4], keep[4 * CCAP], n_moves, freed;
    kvc_move moves[CCAP];
    uint64_t rs = seed;
    int bad = 0, observed = 0;
    uint8_t mapped[4][CCAP] = {{0}};
    uint64_t total_moves = 0, total_freed = 0;
    int64_t pos = -1;
    for (uint32_t g = 0; g < G; g++)
        for (uint32_t s = 0; s < CCAP; s++) engine[g][s] = -1;
    if (prefill) {
        ct_fill(k, 40 * CK * CD, &rs);
        ct_fill(v, 40 * CK * CD, &rs);
        static float sc[4 * 40];
        for (uint32_t i = 0; i < G * 40; i++) sc[i] = (float)(kvt_mix64(&rs) % 9) / 8;
        if (kvc_cache_prefill_index(a, 0, 40, k, v, sc, 4, keep) || kvc_cache_prefill_index(b, 0, 40, k, v, sc, 4, keep)) {
            kvt_fail(__FILE__, __LINE__, "%s: prefill_index: %s", spec, kvc_cache_last_error(a));
            bad = 1;
        }
        for (uint32_t g = 0; g < G; g++)
            for (uint32_t s = 0; s < kvc_cache_len(a); s++) {
                engine[g][s] = keep[g * CCAP + s];
                mapped[g][s / page] = 1;
            }
        pos = 39;
        /* a prefill leaves residents dense: nothing to move */
        for (uint32_t g = 0; g < G && !bad; g++) {
            CHECK_EQ(kvc_cache_compact(a, g, page, moves, &n_moves, &freed), KVC_OK);
            CHECK_EQ(n_moves, 0);
        }
    }
    for (int t = 0; t < CSTEPS && !bad; t++) {
        pos += 1 + (int64_t)(kvt_mix64(&rs) % 2);
        ct_fill(k, CK * CD, &rs);
        ct_fill(v, CK * CD, &rs);
        if (!observed)
            for (uint32_t g = 0; g < G && t > 0; g++) {
                masses(a, g, by_pos, mass);
                kvc_cache_observe(a, g, mass, CCAP);
                masses(b, g, by_pos, mass);
                kvc_cache_observe(b, g, mass, CCAP);
            }
        observed = 0;
        for (uint32_t i = 0; i < 2 * CSTEPS + 64; i++) by_pos[i] = (float)(kvt_mix64(&rs) % 5) / 4;
        int ra = kvc_cache_reserve(a, pos, k, v, sa, ev_a), rb = kvc_cache_reserve(b, pos, k, v, sb, ev_b);
        if (ra || rb) {
            kvt_fail(__FILE__, __LINE__, "%s: reserve: %s", spec, kvc_cache_last_error(ra ? a : b));
            bad = 1;
            break;
        }
        for (uint32_t g = 0; g < G; g++) {
            /* the same decisions with and without compaction */
            for (uint32_t e = 0; e < maxev; e++) {
                int found = ev_a[g * maxev + e] < 0;
                for (uint32_t f = 0; f < maxev && !found; f++) found = ev_b[g * maxev + f] == ev_a[g * maxev + e];
                if (!found) {
                    kvt_fail(__FILE__, __LINE__, "%s step %d: the compacting cache evicted %lld, its twin did not",
                             spec, t, (long long)ev_a[g * maxev + e]);
                    bad = 1;
                }
            }
            /* engine: forget the evicted, write the new token, then apply the plan */
            for (uint32_t s = 0; s < CCAP; s++)
                for (uint32_t e = 0; e < maxev; e++)
                    if (engine[g][s] >= 0 && engine[g][s] == ev_a[g * maxev + e]) engine[g][s] = -1;
            engine[g][sa[g]] = pos;
            mapped[g][sa[g] / page] = 1; /* the engine maps a page on its first write */
            /* half the time the engine observes the next step before compacting: pending
             * observations must follow their tokens */
            if (g == 0 && kvt_mix64(&rs) % 2) {
                observed = 1;
                for (uint32_t h = 0; h < G; h++) {
                    masses(a, h, by_pos, mass);
                    kvc_cache_observe(a, h, mass, CCAP);
                    masses(b, h, by_pos, mass);
                    kvc_cache_observe(b, h, mass, CCAP);
                }
            }
            uint32_t len = kvc_cache_len(a), want_freed = 0;
            /* the pages the engine holds past the residents */
            for (uint32_t pg = (len + page - 1) / page; pg * page < CCAP; pg++) {
                want_freed += mapped[g][pg];
                mapped[g][pg] = 0;
            }
            int rc = kvc_cache_compact(a, g, page, moves, &n_moves, &freed);
            CHECK_EQ(rc, KVC_OK);
            CHECK_EQ(freed, want_freed);
            for (uint32_t i = 0; i < n_moves; i++) {
                uint32_t f = moves[i].from, to = moves[i].to;
                if (f < len || to >= len || engine[g][f] < 0 || engine[g][to] >= 0 || f == sa[g]) {
                    kvt_fail(__FILE__, __LINE__, "%s step %d: move %u -> %u with len %u is not tail-to-hole", spec,
                             t, f, to, len);
                    bad = 1;
                    break;
                }
                engine[g][to] = engine[g][f];
                engine[g][f] = -1;
            }
            kvc_cache_positions(a, g, lib);
            for (uint32_t s = 0; s < CCAP; s++)
                if (lib[s] != engine[g][s] || (s < len) != (lib[s] >= 0)) {
                    kvt_fail(__FILE__, __LINE__, "%s step %d group %u slot %u: engine %lld, library %lld (len %u)",
                             spec, t, g, s, (long long)engine[g][s], (long long)lib[s], len);
                    bad = 1;
                    break;
                }
            total_moves += n_moves;
            total_freed += freed;
            if (bad) break;
        }
    }
    if (!bad) {
        /* with chunk c, an eviction round leaves len = capacity - c + 1: c - 1 holes to fill, and the
         * pages past ceil(len / page) to free */
        int64_t chunk = 1;
        kvc_cache_get(a, KVC_OPT_CHUNK, &chunk);
        uint32_t len = CCAP - (uint32_t)chunk + 1;
        CHECKF(total_moves > 0 || chunk == 1, "%s: no compaction ever moved a row", spec);
        CHECKF(total_freed > 0 || (len + page - 1) / page * page >= CCAP, "%s page %u: no page was ever freed", spec,
               page);
    }
    kvc_cache_destroy(a);
    kvc_cache_destroy(b);
    return bad;
}

TEST(compact_plan_equals_engine_and_twin) {
    static const char *const specs[] = {
        "h2o scope=shared recent=4 sink=2 chunk=5", "h2o recent=3 chunk=1", "random scope=shared chunk=3",
        "vase recent=4 chunk=4 sink=1",              "snapkv recent=4 chunk=6", "knorm chunk=2",
        "tova chunk=7 protect=3",                   "window chunk=4",
    };
    static const uint32_t pages[] = {1, 4, 5, 8, 24, 30};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        for (size_t p = 0; p < sizeof pages / sizeof *pages; p++)
            if (ct_trace(specs[i], pages[p], (int)(p & 1), 100 * i + p)) return;
}

TEST(compact_bad_input) {
    kvc_cache *c;
    kvc_move moves[CCAP];
    uint32_t n = 99, freed = 99;
    REQUIRE(kvc_cache_create_spec(&c, CK, CQ, CD, CCAP, KVC_DTYPE_F32, KVC_MODE_INDEX, "h2o", NULL) == KVC_OK);
    /* before anything: nothing to do */
    CHECK_EQ(kvc_cache_compact(c, 0, 4, moves, &n, &freed), KVC_OK);
    CHECK(n == 0 && freed == 0);
    float k[CK * CD] = {0}, v[CK * CD] = {0};
    uint32_t slots[CK];
    for (int64_t p = 0; p < 40; p++) REQUIRE(kvc_cache_reserve(c, p, k, v, slots, NULL) == KVC_OK);
    kvt_snap before, after;
    char why[160];
    kvt_snap_take(c, kvc_policy_h2o(), CK, CD, &before);
    CHECK_EQ(kvc_cache_compact(c, 0, 4, NULL, &n, &freed), KVC_EINVAL);
    CHECK_EQ(kvc_cache_compact(c, 0, 4, moves, NULL, &freed), KVC_EINVAL);
    CHECK_EQ(kvc_cache_compact(c, 0, 0, moves, &n, &freed), KVC_EINVAL);
    CHECK_EQ(kvc_cache_compact(c, CK, 4, moves, &n, &freed), KVC_ERANGE);
    CHECK(*kvc_cache_last_error(c));
    kvt_snap_take(c, kvc_policy_h2o(), CK, CD, &after);
    CHECKF(kvt_snap_equal(&before, &after, why, sizeof why), "a refused compact changed the cache: %s", why);
    kvt_snap_free(&before);
    kvt_snap_free(&after);
    CHECK_EQ(kvc_cache_compact(NULL, 0, 4, moves, &n, &freed), KVC_EINVAL);
    kvc_cache_destroy(c);
    REQUIRE(kvc_cache_create_spec(&c, CK, CQ, CD, CCAP, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o", NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_compact(c, 0, 4, moves, &n, &freed), KVC_EMODE);
    kvc_cache_destroy(c);
}

/* ---------------------------------------------- no allocation in the hot path */

typedef struct {
    unsigned long calls;
    long live;
} ct_alloc;
static void *ct_alloc_fn(void *o, size_t size, size_t align) {
    ct_alloc *a = o;
    a->calls++;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    a->live += p != NULL;
    return p;
}
static void ct_free_fn(void *o, void *p) {
    ((ct_alloc *)o)->live--;
    free(p);
}

/* After prepare, a 4x-capacity prefill, decoding with attention or
 * observations, compaction and a reset with a second prefill allocate nothing. */
TEST(prefill_compact_no_allocation) {
    static const char *const specs[] = {"snapkv", "h2o",  "vase",     "knorm", "random",       "window",   "tova",
                                        "vatp",   "sink", "vase_dkv", "rkv",   "scissorhands", "keyformer", "keydiff"};
    enum { N = 4 * CCAP, W = 8 };
    static float k[N * CK * CD], v[N * CK * CD], q[W * CQ * CD], sc[CK * N], out[CQ * CD], mass[CCAP];
    uint64_t rs = 3;
    ct_fill(k, sizeof k / sizeof *k, &rs);
    ct_fill(v, sizeof v / sizeof *v, &rs);
    ct_fill(q, sizeof q / sizeof *q, &rs);
    for (size_t i = 0; i < sizeof sc / sizeof *sc; i++) sc[i] = 0.25f * (float)(i % 5);
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        for (int mode = 0; mode < 2; mode++) {
            ct_alloc a = {0, 0};
            kvc_allocator al = {ct_alloc_fn, ct_free_fn, &a};
            kvc_cache *c;
            char spec[96];
            snprintf(spec, sizeof spec, "%s prefill_max=%d chunk=2 recent=%d sink=1", specs[i], N, W);
            REQUIRE(kvc_cache_create_spec(&c, CK, CQ, CD, CCAP, KVC_DTYPE_F16, (kvc_mode)mode, spec, &al) == KVC_OK);
            REQUIRE(kvc_cache_prepare(c) == KVC_OK);
            unsigned long frozen = a.calls;
            uint32_t keep[CK * CCAP], slots[CK], n_moves;
            kvc_move moves[CCAP];
            for (int round = 0; round < 2; round++) {
                int rc = mode == KVC_MODE_STORE ? kvc_cache_prefill(c, 0, N, k, v, q, W)
                                                : kvc_cache_prefill_index(c, 0, N, k, v, sc, W, keep);
                CHECKF(rc == KVC_OK, "%s: prefill: %s", spec, kvc_cache_last_error(c));
                for (int64_t p = N; p < N + 60; p++) {
                    if (mode == KVC_MODE_STORE) {
                        CHECK_EQ(kvc_cache_append(c, p, k, v), KVC_OK);
                        CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
                    } else {
                        for (uint32_t s = 0; s < CCAP; s++) mass[s] = (float)((p + s) % 7) / 8;
                        for (uint32_t g = 0; g < kvc_cache_groups(c); g++) kvc_cache_observe(c, g, mass, CCAP);
                        CHECK_EQ(kvc_cache_reserve(c, p, k, v, slots, NULL), KVC_OK);
                        for (uint32_t g = 0; g < kvc_cache_groups(c); g++)
                            CHECK_EQ(kvc_cache_compact(c, g, 4, moves, &n_moves, NULL), KVC_OK);
                    }
                }
                CHECK_EQ(kvc_cache_reset(c), KVC_OK);
            }
            CHECKF(a.calls == frozen, "%s (%s): %lu allocations after prepare", spec, mode ? "INDEX" : "STORE",
                   a.calls - frozen);
            kvc_cache_destroy(c);
            CHECK_EQ(a.live, 0);
        }
}
