/* Determinism: the same seed and inputs give the same evictions, run after
 * run (fresh caches, and after kvc_cache_reset); a different seed changes the
 * stochastic policies' choices; and policies that read no attention weights
 * (window, sink, random, knorm) evict identically whichever ISA computes the
 * attention in between. */
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

enum { DT_KV = 2, DT_Q = 4, DT_D = 12, DT_CAP = 32, DT_STEPS = 200 };

/* FNV-1a over the eviction sequence: every step's evicted positions, plus
 * the final slot maps. Equal hashes for equal sequences; a single changed
 * victim changes the hash. */
typedef struct {
    uint64_t h;
    uint64_t n_ev;
} trace_hash;

static void th_add(trace_hash *t, int64_t x) {
    for (int i = 0; i < 8; i++) {
        t->h ^= (uint64_t)(x >> (8 * i)) & 0xff;
        t->h *= 0x100000001b3ull;
    }
}

static void dfill(float *x, size_t n, unsigned t, unsigned salt) {
    uint64_t s = (uint64_t)t * 0x9e3779b97f4a7c15ull + salt;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 33;
        s *= 0xff51afd7ed558ccdull;
        s ^= s >> 29;
        x[i] = (float)(s % 4001) / 2000.0f - 1.0f;
    }
}

/* Run a fixed trace (twice with a reset in between when `second` is not
 * NULL, hashed separately); record the positions that left each group at
 * every step, and in INDEX mode the slots handed out. */
static trace_hash run_trace2(const char *spec, kvc_mode mode, int64_t seed, trace_hash *second) {
    trace_hash th = {0xcbf29ce484222325ull, 0}, first = {0, 0};
    kvc_cache *c;
    if (kvc_cache_create_spec(&c, DT_KV, DT_Q, DT_D, DT_CAP, KVC_DTYPE_F16, mode, spec, NULL) != KVC_OK) {
        th.h = 0;
        return th;
    }
    kvc_cache_set(c, KVC_OPT_SEED, seed);
    float k[DT_KV * DT_D], v[DT_KV * DT_D], q[DT_Q * DT_D], out[DT_Q * DT_D], mass[DT_CAP];
    uint32_t slots[DT_KV];
    int64_t ev[DT_KV * DT_CAP], before[DT_KV][DT_CAP], after[DT_KV][DT_CAP];
    for (int pass = 0; pass < (second ? 2 : 1); pass++) {
        if (pass) {
            first = th;
            th.h = 0xcbf29ce484222325ull;
            th.n_ev = 0;
            CHECK_EQ(kvc_cache_reset(c), KVC_OK);
        }
        unsigned steps = kvt_short() ? DT_STEPS / 2 : DT_STEPS;
        for (unsigned t = 0; t < steps; t++) {
            dfill(k, DT_KV * DT_D, t, 1);
            dfill(v, DT_KV * DT_D, t, 2);
            dfill(q, DT_Q * DT_D, t, 3);
            uint32_t G = kvc_cache_groups(c);
            for (uint32_t g = 0; g < G; g++) kvc_cache_positions(c, g, before[g]);
            int rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, t, k, v) : kvc_cache_reserve(c, t, k, v, slots, ev);
            CHECKF(rc == KVC_OK, "%s step %u: %s", spec, t, kvc_cache_last_error(c));
            if (rc) break;
            for (uint32_t g = 0; g < G; g++) {
                kvc_cache_positions(c, g, after[g]);
                for (int s = 0; s < DT_CAP; s++) {
                    if (before[g][s] < 0) continue;
                    int kept = 0;
                    for (int u = 0; u < DT_CAP && !kept; u++) kept = after[g][u] == before[g][s];
                    if (!kept) {
                        th_add(&th, ((int64_t)g << 40) | before[g][s]);
                        th.n_ev++;
                    }
                }
                if (mode == KVC_MODE_INDEX) th_add(&th, slots[g]);
            }
            if (mode == KVC_MODE_STORE) {
                CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
            } else {
                for (uint32_t g = 0; g < G; g++) {
                    dfill(mass, DT_CAP, t, 10 + g);
                    for (int i = 0; i < DT_CAP; i++) mass[i] = mass[i] * mass[i];
                    CHECK_EQ(kvc_cache_observe(c, g, mass, DT_CAP), KVC_OK);
                }
            }
        }
    }
    kvc_cache_destroy(c);
    if (second) {
        *second = th;
        return first;
    }
    return th;
}

static trace_hash run_trace(const char *spec, kvc_mode mode, int64_t seed) {
    return run_trace2(spec, mode, seed, NULL);
}

static const char *const DT_SPECS[] = {"window",
                                       "sink",
                                       "random",
                                       "random chunk=3 block=2",
                                       "h2o",
                                       "h2o norm=lifetime scope=shared",
                                       "tova",
                                       "knorm",
                                       "vatp block=4",
                                       "vase chunk=4 recent=8",
                                       "vase chunk=2 recent=4 block=2 reserve=0.5"};
#define DT_N_SPECS (sizeof DT_SPECS / sizeof DT_SPECS[0])

TEST(determinism_same_seed_same_evictions) {
    for (size_t p = 0; p < DT_N_SPECS; p++)
        for (int mode = 0; mode < 2; mode++) {
            trace_hash a = run_trace(DT_SPECS[p], (kvc_mode)mode, 1234);
            trace_hash b = run_trace(DT_SPECS[p], (kvc_mode)mode, 1234);
            CHECKF(a.h && a.h == b.h && a.n_ev == b.n_ev, "%s mode %d: two runs differ", DT_SPECS[p], mode);
            CHECKF(a.n_ev > 0, "%s mode %d: nothing evicted", DT_SPECS[p], mode);
            /* reset forgets everything and re-seeds: the run after it repeats the first */
            trace_hash r1, r2;
            r1 = run_trace2(DT_SPECS[p], (kvc_mode)mode, 1234, &r2);
            CHECKF(r1.h == a.h && r2.h == a.h && r2.n_ev == a.n_ev, "%s mode %d: the run after reset differs",
                   DT_SPECS[p], mode);
        }
}

TEST(determinism_seed_matters_for_stochastic_policies) {
    static const char *const stochastic[] = {"random", "vase chunk=4 recent=8"};
    for (int p = 0; p < 2; p++)
        for (int mode = 0; mode < 2; mode++) {
            trace_hash a = run_trace(stochastic[p], (kvc_mode)mode, 1);
            trace_hash b = run_trace(stochastic[p], (kvc_mode)mode, 2);
            CHECKF(a.h != b.h, "%s mode %d: seeds 1 and 2 evict the same", stochastic[p], mode);
        }
    /* and a deterministic policy ignores the seed */
    CHECK(run_trace("h2o", KVC_MODE_STORE, 1).h == run_trace("h2o", KVC_MODE_STORE, 2).h);
}

TEST(determinism_across_isas_for_attention_free_policies) {
    static const char *const isas[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};
    static const char *const free_policies[] = {"window", "sink", "random", "random chunk=3 block=2", "knorm",
                                                "knorm scope=shared block=2"};
    int n_isas = 0;
    for (int p = 0; p < 6; p++) {
        trace_hash ref = {0, 0};
        const char *ref_isa = NULL;
        for (int i = 0; i < 6; i++) {
            if (kvc_set_isa(isas[i]) != KVC_OK) continue;
            if (p == 0) n_isas++;
            trace_hash t = run_trace(free_policies[p], KVC_MODE_STORE, 77);
            if (!ref_isa) {
                ref = t;
                ref_isa = isas[i];
                continue;
            }
            CHECKF(t.h == ref.h && t.n_ev == ref.n_ev, "%s: %s and %s evict differently", free_policies[p], ref_isa,
                   isas[i]);
        }
    }
    kvc_set_isa(NULL);
    CHECK(n_isas >= 1);
}
