/* Non-finite numbers, on every ISA this machine runs (forced one by one):
 *  - the cache rejects NaN/Inf in k, v, q and observed mass with
 *    KVC_ENONFINITE, and finite values that f16/bf16 storage would turn into
 *    Inf with KVC_ERANGE; nothing is stored, written or fed to the policy, so
 *    a cache that saw the bad inputs stays bit-identical (rows, outputs,
 *    evictions) to a twin that never did;
 *  - the standalone kernel does not check, but keeps the damage inside the
 *    heads that read the bad value (the contract in kvc.h). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

static const char *const NUM_ISAS[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};
enum { N_KV = 2, N_Q = 6, N_D = 19, N_CAP = 40 };

static void nfill(float *x, size_t n, unsigned t) {
    for (size_t i = 0; i < n; i++) {
        unsigned h = (t * 2654435761u) ^ (unsigned)(i * 40503u);
        h ^= h >> 13;
        h *= 0x5bd1e995u;
        x[i] = (float)((h >> 9) % 2001) / 1000.0f - 1.0f;
    }
}

/* Byte equality of everything a STORE cache shows. */
static int same_store(const kvc_cache *a, const kvc_cache *b) {
    if (kvc_cache_len(a) != kvc_cache_len(b)) return 0;
    kvc_stats sa, sb;
    kvc_cache_stats(a, &sa);
    kvc_cache_stats(b, &sb);
    if (memcmp(&sa, &sb, sizeof sa)) return 0;
    for (uint32_t g = 0; g < kvc_cache_groups(a); g++) {
        int64_t pa[N_CAP], pb[N_CAP];
        kvc_cache_positions(a, g, pa);
        kvc_cache_positions(b, g, pb);
        if (memcmp(pa, pb, sizeof pa)) return 0;
    }
    for (uint32_t h = 0; h < N_KV; h++)
        for (uint32_t s = 0; s < kvc_cache_len(a); s++) {
            float ka[N_D], va[N_D], kb[N_D], vb[N_D];
            kvc_cache_read(a, h, s, ka, va);
            kvc_cache_read(b, h, s, kb, vb);
            if (memcmp(ka, kb, sizeof ka) || memcmp(va, vb, sizeof va)) return 0;
        }
    return 1;
}

static void store_case(const char *isa, kvc_dtype dt, const char *policy) {
    kvc_cache *a, *b;
    REQUIRE(kvc_cache_create_spec(&a, N_KV, N_Q, N_D, N_CAP, dt, KVC_MODE_STORE, policy, NULL) == KVC_OK);
    REQUIRE(kvc_cache_create_spec(&b, N_KV, N_Q, N_D, N_CAP, dt, KVC_MODE_STORE, policy, NULL) == KVC_OK);
    float k[N_KV * N_D], v[N_KV * N_D], q[N_Q * N_D], oa[N_Q * N_D], ob[N_Q * N_D];
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    unsigned steps = kvt_short() ? N_CAP + 12 : 3 * N_CAP;
    for (unsigned t = 0; t < steps; t++) {
        nfill(k, N_KV * N_D, 2 * t);
        nfill(v, N_KV * N_D, 2 * t + 1);
        nfill(q, N_Q * N_D, 7 * t + 3);
        if (t % 3 == 1) {
            /* a non-finite value somewhere in k or v, then a finite one too large for 16 bits */
            float save;
            float *x = t % 2 ? k : v;
            size_t i = (t * 13) % (N_KV * N_D);
            save = x[i];
            x[i] = bad[t % 3 == 1 ? (t / 3) % 3 : 0];
            CHECKF(kvc_cache_append(a, t, k, v) == KVC_ENONFINITE, "%s %s dtype %d step %u", isa, policy, dt, t);
            x[i] = dt == KVC_DTYPE_F16 ? 70000.0f : dt == KVC_DTYPE_BF16 ? -FLT_MAX : save;
            if (dt == KVC_DTYPE_F16 || dt == KVC_DTYPE_BF16) CHECK_EQ(kvc_cache_append(a, t, k, v), KVC_ERANGE); /* Q8 holds any finite value */
            x[i] = save;
            CHECKF(same_store(a, b), "%s %s dtype %d: a rejected token changed the cache", isa, policy, dt);
        }
        CHECK_EQ(kvc_cache_append(a, t, k, v), KVC_OK);
        CHECK_EQ(kvc_cache_append(b, t, k, v), KVC_OK);
        if (t % 4 == 2) {
            /* a NaN query: rejected before anything is written or told */
            float saved = q[(t * 5) % (N_Q * N_D)];
            q[(t * 5) % (N_Q * N_D)] = bad[t % 3];
            for (int i = 0; i < N_Q * N_D; i++) oa[i] = 7.0f;
            CHECK_EQ(kvc_cache_attend(a, q, oa), KVC_ENONFINITE);
            for (int i = 0; i < N_Q * N_D; i++) CHECK(oa[i] == 7.0f);
            /* the head range holding the bad query refuses too */
            uint32_t kvh = ((t * 5) % (N_Q * N_D)) / N_D / (N_Q / N_KV);
            CHECK_EQ(kvc_cache_attend_heads(a, q, oa, kvh, kvh + 1), KVC_ENONFINITE);
            q[(t * 5) % (N_Q * N_D)] = saved;
        }
        CHECK_EQ(kvc_cache_attend(a, q, oa), KVC_OK);
        CHECK_EQ(kvc_cache_attend(b, q, ob), KVC_OK);
        CHECKF(memcmp(oa, ob, sizeof oa) == 0, "%s %s dtype %d step %u: outputs differ from the twin", isa, policy,
               dt, t);
        for (int i = 0; i < N_Q * N_D; i++) CHECK(isfinite(oa[i]));
        CHECKF(same_store(a, b), "%s %s dtype %d step %u: differs from the twin", isa, policy, dt, t);
    }
    kvc_cache_destroy(a);
    kvc_cache_destroy(b);
}

TEST(numerics_store_rejects_nonfinite_every_isa) {
    int ran = 0;
    for (int i = 0; i < 6; i++) {
        if (kvc_set_isa(NUM_ISAS[i]) != KVC_OK) continue;
        ran++;
        for (int dt = 0; dt < 4; dt++) {
            store_case(NUM_ISAS[i], (kvc_dtype)dt, "h2o");
            store_case(NUM_ISAS[i], (kvc_dtype)dt, "vase chunk=4 recent=8");
            store_case(NUM_ISAS[i], (kvc_dtype)dt, "knorm");
        }
    }
    kvc_set_isa(NULL);
    CHECK(ran >= 1);
}

/* INDEX mode: bad masses and bad token statistics are refused, and the
 * decisions stay those of a twin that never saw them. */
TEST(numerics_index_rejects_nonfinite) {
    static const char *const policies[] = {"h2o", "knorm", "vatp", "vase chunk=2 recent=4", "window"};
    for (size_t p = 0; p < 5; p++) {
        kvc_cache *a, *b;
        REQUIRE(kvc_cache_create_spec(&a, N_KV, N_Q, N_D, N_CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, policies[p], NULL) ==
                KVC_OK);
        REQUIRE(kvc_cache_create_spec(&b, N_KV, N_Q, N_D, N_CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, policies[p], NULL) ==
                KVC_OK);
        int stats = p >= 1 && p <= 3;
        float k[N_KV * N_D], v[N_KV * N_D], mass[N_CAP];
        uint32_t sa[N_KV], sb[N_KV];
        int64_t ea[N_KV * N_CAP], eb[N_KV * N_CAP];
        unsigned steps = kvt_short() ? N_CAP + 12 : 4 * N_CAP;
        for (unsigned t = 0; t < steps; t++) {
            nfill(k, N_KV * N_D, 3 * t);
            nfill(v, N_KV * N_D, 3 * t + 1);
            if (t % 5 == 3) {
                float save = k[t % (N_KV * N_D)];
                k[t % (N_KV * N_D)] = NAN;
                /* refused when the policy reads k; otherwise k is not looked at */
                if (stats) CHECK_EQ(kvc_cache_reserve(a, t, k, v, sa, ea), KVC_ENONFINITE);
                k[t % (N_KV * N_D)] = save;
            }
            CHECK_EQ(kvc_cache_reserve(a, t, k, v, sa, ea), KVC_OK);
            CHECK_EQ(kvc_cache_reserve(b, t, k, v, sb, eb), KVC_OK);
            CHECK(memcmp(sa, sb, sizeof sa) == 0);
            CHECKF(memcmp(ea, eb, sizeof(int64_t) * kvc_cache_groups(a) * kvc_cache_max_evictions(a)) == 0,
                   "%s step %u: evictions differ from the twin", policies[p], t);
            for (uint32_t g = 0; g < kvc_cache_groups(a); g++) {
                for (int i = 0; i < N_CAP; i++) mass[i] = (float)((t * 31 + (unsigned)i * 17 + g) % 97) / 97.0f;
                if (t % 3 == 0) {
                    float save = mass[(t + g) % N_CAP];
                    static const float bad[] = {NAN, INFINITY, -1.0f, -INFINITY};
                    mass[(t + g) % N_CAP] = bad[(t / 3) % 4];
                    CHECK_EQ(kvc_cache_observe(a, g, mass, N_CAP), KVC_ENONFINITE);
                    mass[(t + g) % N_CAP] = save;
                }
                CHECK_EQ(kvc_cache_observe(a, g, mass, N_CAP), KVC_OK);
                CHECK_EQ(kvc_cache_observe(b, g, mass, N_CAP), KVC_OK);
            }
        }
        kvc_stats st_a, st_b;
        kvc_cache_stats(a, &st_a);
        kvc_cache_stats(b, &st_b);
        CHECK(memcmp(&st_a, &st_b, sizeof st_a) == 0);
        kvc_cache_destroy(a);
        kvc_cache_destroy(b);
    }
}

/* Standalone kernel: a non-finite value only reaches the heads that read it.
 * A bad query head h spoils head h alone; a bad K or V row of kv head g
 * spoils only the query heads of g. Everything else is bit-identical to a
 * clean run. */
static void kernel_confinement(const char *isa, kvc_dtype dt) {
    enum { KV = 3, Q = 6, D = 21, N = 70 };
    float qf[Q * D], kf[KV * N * D], vf[KV * N * D];
    nfill(qf, Q * D, 1);
    nfill(kf, KV * N * D, 2);
    nfill(vf, KV * N * D, 3);
    unsigned char k[KV * N * D * 4], v[KV * N * D * 4];
    /* K/V in the dtype: f32 as is; for 16 bits, values rounded to 8 fractional bits (|x| < 1), which both
     * formats hold exactly, encoded here from the format definitions */
    for (size_t i = 0; i < (size_t)KV * N * D; i++) {
        if (dt == KVC_DTYPE_F32) {
            memcpy(k + 4 * i, &kf[i], 4);
            memcpy(v + 4 * i, &vf[i], 4);
        } else {
            uint32_t bk, bv;
            float xk = (float)((int)(kf[i] * 256)) / 256.0f, xv = (float)((int)(vf[i] * 256)) / 256.0f;
            memcpy(&bk, &xk, 4);
            memcpy(&bv, &xv, 4);
            uint16_t hk, hv;
            if (dt == KVC_DTYPE_BF16) {
                hk = (uint16_t)(bk >> 16);
                hv = (uint16_t)(bv >> 16);
            } else {
                uint32_t bits[2] = {bk, bv};
                uint16_t out16[2];
                for (int j = 0; j < 2; j++) {
                    uint32_t a = bits[j] & 0x7fffffffu, sgn = (bits[j] >> 16) & 0x8000u;
                    out16[j] = a == 0 ? (uint16_t)sgn
                                      : (uint16_t)(sgn | ((((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13)));
                }
                hk = out16[0];
                hv = out16[1];
            }
            memcpy(k + 2 * i, &hk, 2);
            memcpy(v + 2 * i, &hv, 2);
        }
    }
    kvc_attn_layout L = {Q, KV, D, N, dt, D, (size_t)N * D, 0.0f};
    float out0[Q * D], w0[Q * N], out1[Q * D], w1[Q * N];
    REQUIRE(kvc_attention(&L, qf, k, v, out0, w0, N) == KVC_OK);
    for (int i = 0; i < Q * D; i++) REQUIRE(isfinite(out0[i]));

    const uint32_t ratio = Q / KV;
    for (int what = 0; what < 3; what++) {   /* 0: q, 1: K row, 2: V row */
        for (int which = 0; which < 3; which++) { /* NaN, +Inf, -Inf */
            float qb[Q * D];
            unsigned char kb[sizeof k], vb[sizeof v];
            memcpy(qb, qf, sizeof qb);
            memcpy(kb, k, sizeof kb);
            memcpy(vb, v, sizeof vb);
            uint32_t bad_q = 4, bad_kv = 1, row = 37, col = 5;
            if (what == 0) {
                qb[bad_q * D + col] = which == 0 ? NAN : which == 1 ? INFINITY : -INFINITY;
            } else {
                unsigned char *base = what == 1 ? kb : vb;
                size_t idx = ((size_t)bad_kv * N + row) * D + col;
                if (dt == KVC_DTYPE_F32) {
                    float x = which == 0 ? NAN : which == 1 ? INFINITY : -INFINITY;
                    memcpy(base + 4 * idx, &x, 4);
                } else {
                    uint16_t x = dt == KVC_DTYPE_F16 ? (which == 0 ? 0x7e00 : which == 1 ? 0x7c00 : 0xfc00)
                                                     : (which == 0 ? 0x7fc0 : which == 1 ? 0x7f80 : 0xff80);
                    memcpy(base + 2 * idx, &x, 2);
                }
            }
            REQUIRE(kvc_attention(&L, qb, kb, vb, out1, w1, N) == KVC_OK);
            for (uint32_t h = 0; h < Q; h++) {
                int touched = what == 0 ? h == bad_q : h / ratio == bad_kv;
                if (touched) continue; /* may be anything, including finite */
                CHECKF(memcmp(out1 + h * D, out0 + h * D, D * 4) == 0 && memcmp(w1 + h * N, w0 + h * N, N * 4) == 0,
                       "%s dtype %d: a bad %s value changed query head %u", isa, dt,
                       what == 0 ? "q" : what == 1 ? "K" : "V", h);
            }
        }
    }
}

TEST(numerics_kernel_nonfinite_confined_every_isa) {
    int ran = 0;
    for (int i = 0; i < 4; i++) {
        if (kvc_set_isa(NUM_ISAS[i]) != KVC_OK) continue;
        ran++;
        for (int dt = 0; dt < 3; dt++) kernel_confinement(NUM_ISAS[i], (kvc_dtype)dt);
    }
    kvc_set_isa(NULL);
    CHECK(ran >= 1);
}

/* Finite but absurdly large values: the cache stores them (f32) and the
 * kernel's max subtraction keeps the softmax finite as long as the scaled
 * dot products themselves fit in a float. */
TEST(numerics_large_finite_values) {
    for (int i = 0; i < 4; i++) {
        if (kvc_set_isa(NUM_ISAS[i]) != KVC_OK) continue;
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_h2o(), NULL) == KVC_OK);
        float k[4] = {1e17f, -1e17f, 0, 1}, v[4] = {1e30f, 1, -1e30f, 0}, q[4] = {1e17f, 0, 0, 0}, out[4];
        for (int t = 0; t < 20; t++) {
            k[3] = (float)t;
            CHECK_EQ(kvc_cache_append(c, t, k, v), KVC_OK);
            CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK); /* logits ~ 5e33: fit in f32 */
            for (int j = 0; j < 4; j++) CHECKF(isfinite(out[j]), "%s: out[%d] = %g", NUM_ISAS[i], j, out[j]);
        }
        kvc_cache_destroy(c);
    }
    kvc_set_isa(NULL);
}
