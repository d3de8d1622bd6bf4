/* Allocation failure: an allocator that fails its N-th call, for every N a
 * cache's life reaches (create, create_spec, prepare, append, attend,
 * reserve, observe, reset), in both modes, every dtype and a representative
 * set of policies. Each failure must come back as KVC_ENOMEM with nothing
 * leaked and the cache (if one exists) still usable; and nothing may be
 * allocated once the cache is frozen (no allocation in the hot path). */
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

typedef struct {
    unsigned long calls, fail_at; /* fail the fail_at-th call (1-based); 0: never */
    long live, frees;
    int misaligned; /* alignment requests that were not a power of two */
} af_alloc;

static void *af_alloc_fn(void *o, size_t size, size_t align) {
    af_alloc *a = o;
    a->calls++;
    if (!align || (align & (align - 1)) || align > 4096) a->misaligned++;
    if (a->fail_at && a->calls == a->fail_at) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) a->live++;
    return p;
}

static void af_free_fn(void *o, void *p) {
    af_alloc *a = o;
    a->live--;
    a->frees++;
    free(p);
}

/* A user policy that allocates its state like the built-ins do. */
static size_t af_state_size(const kvc_policy_ctx *ctx) { return (size_t)ctx->n_groups * ctx->capacity * 4; }
static void af_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)g;
    for (uint32_t i = 0; i < n; i++) keep[i] = (float)(slots[i] % 3);
}
static const kvc_policy af_user = {
    .abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = "user",
    .state_size = af_state_size,   .score = af_score,
};

enum { AF_KV = 2, AF_Q = 4, AF_D = 8, AF_CAP = 24 };

static void af_fill(float *x, size_t n, int t) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((t * 5 + (int)i * 7) % 13) / 8.0f - 0.7f;
}

typedef struct {
    const char *policy; /* built-in name, or NULL for af_user */
    int use_spec, explicit_prepare;
    kvc_dtype dtype;
    kvc_mode mode;
} af_case;

/* One cache life under allocator `a`. Every failure must be ENOMEM; after
 * one, the allocator is healed and the same call is retried, so the rest of
 * the life proves the cache still works. Returns the number of failures. */
static int af_life(const af_case *k, af_alloc *a) {
    kvc_allocator al = {af_alloc_fn, af_free_fn, a};
    const kvc_policy *pol = k->policy ? kvc_policy_by_name(k->policy) : &af_user;
    kvc_cache *c = NULL;
    int failures = 0, rc;
    char spec[64];
    snprintf(spec, sizeof spec, "%s seed=3 sink=2", pol->name);
    for (;;) {
        rc = k->use_spec && k->policy
                 ? kvc_cache_create_spec(&c, AF_KV, AF_Q, AF_D, AF_CAP, k->dtype, k->mode, spec, &al)
                 : kvc_cache_create(&c, AF_KV, AF_Q, AF_D, AF_CAP, k->dtype, k->mode, pol, &al);
        if (rc == KVC_OK) break;
        CHECKF(rc == KVC_ENOMEM, "%s: create gave %d", pol->name, rc);
        CHECK(c == NULL);
        CHECKF(a->live == 0, "%s: failed create leaked %ld blocks", pol->name, a->live);
        if (rc != KVC_ENOMEM || failures++ > 4) return failures;
        a->fail_at = 0;
    }
    if (k->explicit_prepare) {
        while ((rc = kvc_cache_prepare(c)) != KVC_OK) {
            CHECKF(rc == KVC_ENOMEM, "%s: prepare gave %d", pol->name, rc);
            CHECK(*kvc_cache_last_error(c) != 0);
            CHECK_EQ(kvc_cache_len(c), 0);
            CHECK_EQ(kvc_cache_set(c, KVC_OPT_SEED, 3), KVC_OK); /* still open for options */
            if (rc != KVC_ENOMEM || failures++ > 4) break;
            a->fail_at = 0;
        }
    }
    float k1[AF_KV * AF_D], v1[AF_KV * AF_D], q[AF_Q * AF_D], out[AF_Q * AF_D], mass[AF_CAP];
    uint32_t slots[AF_KV];
    int64_t ev[AF_KV * AF_CAP];
    unsigned long frozen_calls = 0;
    int frozen = 0;
    int steps = kvt_short() ? AF_CAP + 8 : 3 * AF_CAP, reset_at = kvt_short() ? AF_CAP + 3 : 2 * AF_CAP;
    for (int t = 0; t < steps; t++) {
        af_fill(k1, AF_KV * AF_D, t);
        af_fill(v1, AF_KV * AF_D, t + 11);
        af_fill(q, AF_Q * AF_D, t + 5);
        for (;;) {
            rc = k->mode == KVC_MODE_STORE ? kvc_cache_append(c, t, k1, v1)
                                           : kvc_cache_reserve(c, t, k1, v1, slots, ev);
            if (rc != KVC_ENOMEM) break;
            CHECKF(!frozen, "%s: ENOMEM after the cache froze", pol->name);
            CHECK_EQ(kvc_cache_len(c), 0);
            if (failures++ > 4) break;
            a->fail_at = 0;
        }
        if (!strcmp(pol->name, "full") && t >= AF_CAP) {
            CHECK_EQ(rc, KVC_EFULL);
            break;
        }
        CHECKF(rc == KVC_OK, "%s step %d: %d (%s)", pol->name, t, rc, kvc_cache_last_error(c));
        if (rc) break;
        if (!frozen) {
            frozen = 1;
            frozen_calls = a->calls;
        }
        if (k->mode == KVC_MODE_STORE) {
            CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
        } else {
            for (int i = 0; i < AF_CAP; i++) mass[i] = (float)((t + i) % 5) * 0.05f;
            for (uint32_t g = 0; g < kvc_cache_groups(c); g++) CHECK_EQ(kvc_cache_observe(c, g, mass, AF_CAP), KVC_OK);
        }
        if (t == reset_at) CHECK_EQ(kvc_cache_reset(c), KVC_OK);
    }
    CHECKF(a->calls == frozen_calls, "%s: %lu allocations after freezing", pol->name, a->calls - frozen_calls);
    kvc_cache_destroy(c);
    CHECKF(a->live == 0, "%s: %ld blocks leaked", pol->name, a->live);
    CHECK_EQ(a->misaligned, 0);
    return failures;
}

static int af_sites; /* failed allocation calls over the whole test */

TEST(alloc_fail_every_call_every_mode) {
    static const char *const policies[] = {"full", "window", "sink", "random", "h2o", "tova", "knorm", "vatp", "vase", NULL};
    int n_cases = 0;
    for (size_t p = 0; p < sizeof policies / sizeof policies[0]; p++)
        for (int mode = 0; mode < 2; mode++)
            for (int dt = 0; dt < 3; dt++)
                for (int variant = 0; variant < 3; variant++) {
                    if (mode == KVC_MODE_INDEX && dt > 0) continue; /* dtype unused in INDEX mode */
                    af_case k = {policies[p], variant == 1, variant == 2, (kvc_dtype)dt, (kvc_mode)mode};
                    af_alloc a = {0};
                    af_life(&k, &a); /* count the calls of a life without failures */
                    unsigned long total = a.calls;
                    CHECKF(total >= 2, "%s: only %lu allocations", policies[p] ? policies[p] : "user", total);
                    for (unsigned long n = 1; n <= total; n++) {
                        af_alloc f = {0};
                        f.fail_at = n;
                        int failed = af_life(&k, &f);
                        CHECKF(failed == 1, "%s mode %d dtype %d variant %d: failing call %lu gave %d failures",
                               policies[p] ? policies[p] : "user", mode, dt, variant, n, failed);
                        af_sites++;
                    }
                    n_cases++;
                }
    if (getenv("KVC_TEST_VERBOSE")) printf("  alloc_fail: %d lives, %d failed allocation calls\n", n_cases, af_sites);
}

/* The largest shapes fail cleanly (overflow or ENOMEM), never crash. */
static void *af_refuse_big(void *o, size_t size, size_t align) {
    (void)o;
    if (size > ((size_t)1 << 30)) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void af_plain_free(void *o, void *p) {
    (void)o;
    free(p);
}

TEST(alloc_fail_huge_shapes) {
    kvc_allocator al = {af_refuse_big, af_plain_free, NULL};
    kvc_cache *c;
    for (int mode = 0; mode < 2; mode++) {
        int rc = kvc_cache_create(&c, 64, 64, 65536, (1u << 31) - 1, KVC_DTYPE_F32, (kvc_mode)mode, NULL, &al);
        CHECKF(rc == KVC_EOVERFLOW || rc == KVC_OK, "%d", rc);
        if (rc == KVC_OK) {
            CHECK_EQ(kvc_cache_prepare(c), KVC_ENOMEM);
            kvc_cache_destroy(c);
        }
        rc = kvc_cache_create(&c, 1, 1, 1, (1u << 31) - 1, KVC_DTYPE_F32, (kvc_mode)mode, kvc_policy_vase(), &al);
        REQUIRE(rc == KVC_OK);
        rc = kvc_cache_prepare(c);
        CHECKF(rc == KVC_ENOMEM || rc == KVC_EOVERFLOW, "%d", rc);
        CHECK(*kvc_cache_last_error(c) != 0);
        kvc_cache_destroy(c);
    }
}
