/* kvc_cache_attend on the scalar kernel against an f64 reference, at the
 * cache level: GQA 1..4, head and shared scope, every storage dtype, custom
 * scales, and residents permuted by evictions (swap-remove). The softmax
 * mass the policy receives is checked too. The kernels themselves, per ISA,
 * are tested in test_attn.c. */
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

#define REL_TOL 1e-5


/* A policy that records the mass of each attention step and evicts the
 * oldest (all keep-scores equal), so residents get permuted by swap-remove. */
#define PROBE_MAX 4096
static float probe_mass[8][PROBE_MAX];
static uint32_t probe_n[8], probe_calls;

static void probe_on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    (void)state;
    memcpy(probe_mass[g], mass, n * sizeof *mass);
    probe_n[g] = n;
    probe_calls++;
}
static void probe_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)g, (void)slots;
    for (uint32_t i = 0; i < n; i++) keep[i] = 0.0f;
}
static const kvc_policy probe = {.abi_version = KVC_POLICY_ABI,
                                 .struct_size = sizeof(kvc_policy),
                                 .name = "probe",
                                 .needs = KVC_NEED_ATTN,
                                 .on_attend = probe_on_attend,
                                 .score = probe_score};

typedef struct {
    uint32_t n_kv, n_q, d, cap, appends;
    kvc_dtype dtype;
    int shared;
    float scale; /* 0: default */
} shape;

static double worst_out, worst_mass;

/* Compare one attend with the reference; returns 0 on a failure (reported). */
static int check_attend(kvc_cache *c, const shape *sh, const float *q, const float *out) {
    uint32_t ratio = sh->n_q / sh->n_kv, d = sh->d, len = kvc_cache_len(c);
    double scale = sh->scale > 0 ? sh->scale : (double)(1.0f / sqrtf((float)d));
    float *k = malloc(sizeof(float) * len * d), *v = malloc(sizeof(float) * len * d);
    double *w = malloc(sizeof(double) * len), *gm = calloc((size_t)sh->n_kv * len, sizeof(double));
    int ok = 1;
    for (uint32_t h = 0; h < sh->n_q && ok; h++) {
        uint32_t kv = h / ratio;
        for (uint32_t j = 0; j < len; j++) kvc_cache_read(c, kv, j, k + (size_t)j * d, v + (size_t)j * d);
        double mx = -INFINITY, sum = 0;
        for (uint32_t j = 0; j < len; j++) {
            double dot = 0;
            for (uint32_t e = 0; e < d; e++) dot += (double)q[h * d + e] * k[(size_t)j * d + e];
            w[j] = dot * scale;
            mx = w[j] > mx ? w[j] : mx;
        }
        for (uint32_t j = 0; j < len; j++) sum += (w[j] = exp(w[j] - mx));
        for (uint32_t j = 0; j < len; j++) w[j] /= sum;
        /* relative to the row's magnitude: max over e of sum_j w_j |v_je| */
        double mag = 0;
        for (uint32_t e = 0; e < d; e++) {
            double m = 0;
            for (uint32_t j = 0; j < len; j++) m += w[j] * fabs((double)v[(size_t)j * d + e]);
            mag = m > mag ? m : mag;
        }
        for (uint32_t e = 0; e < d && ok; e++) {
            double ref = 0;
            for (uint32_t j = 0; j < len; j++) ref += w[j] * v[(size_t)j * d + e];
            double err = fabs(out[h * d + e] - ref) / (mag > 0 ? mag : 1);
            if (err > worst_out) worst_out = err;
            if (!(err <= REL_TOL)) {
                kvt_fail(__FILE__, __LINE__,
                         "dtype %d kv %u q %u d %u len %u shared %d: out[%u][%u] = %.9g, reference %.9g (rel %.3g)",
                         sh->dtype, sh->n_kv, sh->n_q, d, len, sh->shared, h, e, out[h * d + e], ref, err);
                ok = 0;
            }
        }
        uint32_t g = sh->shared ? 0 : kv;
        for (uint32_t j = 0; j < len; j++) gm[(size_t)g * len + j] += w[j] / (sh->shared ? sh->n_q : ratio);
    }
    /* the policy got, per group, the mean of its query heads' weights */
    for (uint32_t g = 0; g < (sh->shared ? 1 : sh->n_kv) && ok; g++) {
        if (probe_n[g] != len) {
            kvt_fail(__FILE__, __LINE__, "group %u: on_attend got %u entries, len %u", g, probe_n[g], len);
            ok = 0;
        }
        for (uint32_t j = 0; j < len && ok; j++) {
            double err = fabs(probe_mass[g][j] - gm[(size_t)g * len + j]);
            if (err > worst_mass) worst_mass = err;
            if (!(err <= REL_TOL * 0.1)) {
                kvt_fail(__FILE__, __LINE__, "group %u slot %u: mass %.9g, reference %.9g", g, j, probe_mass[g][j],
                         gm[(size_t)g * len + j]);
                ok = 0;
            }
        }
    }
    free(k);
    free(v);
    free(w);
    free(gm);
    return ok;
}

static void run_shape(const shape *sh, uint64_t seed) {
    kvc_cache *c;
    if (kvc_cache_create(&c, sh->n_kv, sh->n_q, sh->d, sh->cap, sh->dtype, KVC_MODE_STORE, &probe, NULL)) {
        kvt_fail(__FILE__, __LINE__, "create failed");
        return;
    }
    kvc_cache_set(c, KVC_OPT_SCOPE, sh->shared);
    if (sh->scale > 0) kvc_cache_set_scale(c, sh->scale);
    size_t nk = (size_t)sh->n_kv * sh->d, nq = (size_t)sh->n_q * sh->d;
    float *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk), *q = malloc(sizeof(float) * nq);
    float *out = malloc(sizeof(float) * nq), *out2 = malloc(sizeof(float) * nq);
    uint64_t rs = seed;
    for (uint32_t t = 0; t < sh->appends; t++) {
        /* keys of mixed magnitude so that some weights are tiny and some dominate */
        float kscale = (t % 7 == 0) ? 3.0f : 1.0f;
        for (size_t i = 0; i < nk; i++) k[i] = kscale * kvt_frand(&rs), v[i] = kvt_frand(&rs) + ((i & 3) == 0 ? 0.5f : 0.0f);
        if (kvc_cache_append(c, t, k, v)) {
            kvt_fail(__FILE__, __LINE__, "append failed");
            break;
        }
        if (t + 1 != sh->appends && t % 5 != 0) continue;
        for (size_t i = 0; i < nq; i++) q[i] = 2.0f * kvt_frand(&rs);
        probe_calls = 0;
        if (kvc_cache_attend(c, q, out) != KVC_OK || probe_calls != (sh->shared ? 1 : sh->n_kv)) {
            kvt_fail(__FILE__, __LINE__, "attend failed or policy not told (%u calls)", probe_calls);
            break;
        }
        if (!check_attend(c, sh, q, out)) break;
        /* the same through per-head ranges plus finish, in two halves */
        uint32_t mid = sh->n_kv / 2;
        int rc = KVC_OK;
        if (mid) rc |= kvc_cache_attend_heads(c, q, out2, 0, mid);
        rc |= kvc_cache_attend_heads(c, q, out2, mid, sh->n_kv);
        rc |= kvc_cache_attend_finish(c, q);
        CHECK_EQ(rc, KVC_OK);
        CHECK(memcmp(out, out2, sizeof(float) * nq) == 0);
    }
    free(k);
    free(v);
    free(q);
    free(out);
    free(out2);
    kvc_cache_destroy(c);
}

TEST(cache_attend_scalar_vs_f64) {
    REQUIRE(kvc_set_isa("scalar") == KVC_OK);
    REQUIRE(strcmp(kvc_active_isa(), "scalar") == 0);
    static const shape shapes[] = {
        {1, 1, 1, 1, 3, KVC_DTYPE_F32, 0, 0},       {1, 1, 7, 63, 70, KVC_DTYPE_F32, 0, 0},
        {2, 4, 16, 64, 90, KVC_DTYPE_F32, 0, 0},    {2, 4, 16, 65, 90, KVC_DTYPE_F32, 1, 0},
        {1, 4, 64, 130, 200, KVC_DTYPE_F32, 0, 0},  {3, 3, 5, 20, 45, KVC_DTYPE_F32, 1, 0.7f},
        {2, 8, 32, 40, 60, KVC_DTYPE_F32, 1, 0.05f}, {2, 4, 16, 33, 50, KVC_DTYPE_F16, 0, 0},
        {1, 2, 64, 70, 80, KVC_DTYPE_BF16, 0, 0},   {4, 8, 3, 17, 30, KVC_DTYPE_F16, 1, 2.0f},
    };
    worst_out = worst_mass = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes && !kvt_failed(); i++) run_shape(&shapes[i], 100 + i);
    if (getenv("KVC_TEST_VERBOSE"))
        printf("  scalar attend: worst relative error %.3g (output), %.3g (mass, absolute)\n", worst_out, worst_mass);
    CHECK_EQ(kvc_set_isa("auto"), KVC_OK);
}
