/* Prefill benchmark (`make bench`): one 4096-token prompt into 512 slots,
 * per cache (one layer), on a Llama-3-8B-sized layer (d=128, 32 query heads,
 * 8 kv heads, f16 storage). Prints figures, never fails on speed.
 *
 *  - kvc_cache_prefill (STORE) with snapkv, h2o (the core's default rule) and
 *    window (no window queries: no scoring), window of 32 queries;
 *  - kvc_cache_prefill_index (INDEX) with the engine's scores: the selection
 *    alone, without the window attention an engine computes itself;
 *  - for comparison, the same prompt appended token by token (window policy,
 *    evicting from the 513th token on): what an engine did without prefill.
 *
 * Each case is the median of BENCH_RUNS (default 9) runs, each on a cache
 * reset with kvc_cache_reset() (the memory stays, nothing allocated). The
 * machine may be shared, so the main figure is the thread's CPU time (time
 * slices lost to other processes do not count; memory contention still
 * does), with the wall time next to it; the ratios compare cases measured in
 * the same run, and the last column puts each case in units of one decode
 * step of the bare attention kernel over the whole 4096-token prompt. The
 * window scoring is w x Hq x n x d multiply-adds: its rate is printed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvc.h"

enum { D = 128, HQ = 32, HKV = 8, N = 4096, CAP = 512, W = 32, MAXRUNS = 64 };

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float unif(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static void *xalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_prefill: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

typedef enum { PREFILL, PREFILL_INDEX, APPENDS, KERNEL } how;

typedef struct {
    double cpu, wall; /* medians, seconds */
} timing;

static float *K, *V, *Q, *S;
static uint32_t keep[HKV * CAP];

/* One decode step of the bare kernel over the prompt (f32, token-major rows). */
static int kernel_step(void) {
    static float out[HQ * D];
    /* the public kernel wants non-overlapping heads: head-major copies, made once */
    static float *hk, *hv;
    if (!hk) {
        hk = xalloc((size_t)N * HKV * D * sizeof *hk), hv = xalloc((size_t)N * HKV * D * sizeof *hv);
        for (size_t t = 0; t < N; t++)
            for (size_t h = 0; h < HKV; h++)
                for (size_t e = 0; e < D; e++) {
                    hk[(h * N + t) * D + e] = K[(t * HKV + h) * D + e];
                    hv[(h * N + t) * D + e] = V[(t * HKV + h) * D + e];
                }
    }
    kvc_attn_layout H = {HQ, HKV, D, N, KVC_DTYPE_F32, D, (size_t)N * D, 0.0f};
    return kvc_attention(&H, Q, hk, hv, out, NULL, 0);
}

/* Medians of `runs` runs of one case. */
static timing run_case(const char *spec, kvc_mode mode, how h, int runs) {
    kvc_cache *c;
    char full[128];
    snprintf(full, sizeof full, "%s prefill_max=%d", spec, N);
    int rc = kvc_cache_create_spec(&c, HKV, HQ, D, CAP, KVC_DTYPE_F16, mode, full, NULL);
    if (!rc) rc = kvc_cache_prepare(c);
    if (rc) {
        fprintf(stderr, "bench_prefill: %s: %s\n", full, kvc_strerror(rc));
        exit(1);
    }
    double cpu[MAXRUNS], wall[MAXRUNS];
    if (h == KERNEL) kernel_step(); /* the one-time copies */
    for (int r = 0; r < runs; r++) {
        kvc_cache_reset(c);
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        if (h == KERNEL)
            rc = kernel_step();
        else if (h == PREFILL)
            rc = kvc_cache_prefill(c, 0, N, K, V, Q, W);
        else if (h == PREFILL_INDEX)
            rc = kvc_cache_prefill_index(c, 0, N, NULL, NULL, S, W, keep);
        else
            for (int64_t p = 0; p < N && !rc; p++)
                rc = kvc_cache_append(c, p, K + (size_t)p * HKV * D, V + (size_t)p * HKV * D);
        cpu[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        wall[r] = clock_s(CLOCK_MONOTONIC) - w0;
        if (rc) {
            fprintf(stderr, "bench_prefill: %s: %s (%s)\n", full, kvc_strerror(rc), kvc_cache_last_error(c));
            exit(1);
        }
    }
    kvc_cache_destroy(c);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
    qsort(wall, (size_t)runs, sizeof *wall, cmp_double);
    return (timing){cpu[runs / 2], wall[runs / 2]};
}

int main(void) {
    int runs = 9;
    const char *e = getenv("BENCH_RUNS");
    if (e && atoi(e) > 0) runs = atoi(e) < MAXRUNS ? atoi(e) : MAXRUNS;
    size_t kv = (size_t)N * HKV * D;
    K = xalloc(kv * sizeof *K), V = xalloc(kv * sizeof *V);
    Q = xalloc((size_t)W * HQ * D * sizeof *Q), S = xalloc((size_t)HKV * N * sizeof *S);
    for (size_t i = 0; i < kv; i++) K[i] = unif(), V[i] = unif();
    for (size_t i = 0; i < (size_t)W * HQ * D; i++) Q[i] = unif();
    for (size_t i = 0; i < (size_t)HKV * N; i++) S[i] = 0.5f * (unif() + 1.0f);

    printf("prefill: %d-token prompt into %d slots, d=%d, Hq=%d, Hkv=%d, f16 storage, window %d, median of %d runs\n",
           N, CAP, D, HQ, HKV, W, runs);
    struct {
        const char *label, *spec;
        kvc_mode mode;
        how h;
    } cases[] = {
        {"prefill snapkv (STORE)", "snapkv", KVC_MODE_STORE, PREFILL},
        {"prefill h2o (STORE)", "h2o", KVC_MODE_STORE, PREFILL},
        {"prefill_index snapkv (engine scores)", "snapkv", KVC_MODE_INDEX, PREFILL_INDEX},
        {"prefill_index h2o (engine scores)", "h2o", KVC_MODE_INDEX, PREFILL_INDEX},
        {"4096 appends, window (no prefill)", "window", KVC_MODE_STORE, APPENDS},
        {"one decode step over 4096 keys (kernel)", "full", KVC_MODE_STORE, KERNEL},
    };
    enum { N_CASES = sizeof cases / sizeof *cases };
    timing t[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) t[i] = run_case(cases[i].spec, cases[i].mode, cases[i].h, runs);
    printf("%-40s %12s %12s %12s %10s %12s\n", "case (per layer)", "CPU ms", "wall ms", "CPU us/token", "x snapkv",
           "x decode step");
    for (size_t i = 0; i < N_CASES; i++)
        printf("%-40s %12.2f %12.2f %12.3f %10.2f %12.1f\n", cases[i].label, t[i].cpu * 1e3, t[i].wall * 1e3,
               t[i].cpu * 1e6 / N, t[i].cpu / t[0].cpu, t[i].cpu / t[N_CASES - 1].cpu);
    double macs = (double)W * HQ * N * D;
    printf("window scoring: %.2f G multiply-adds per layer; snapkv STORE runs them at %.1f GMAC/s (CPU time), "
           "kernel %s\n",
           macs * 1e-9, macs * 1e-9 / t[0].cpu, kvc_active_isa());
    free(K), free(V), free(Q), free(S);
    return 0;
}
