/* Decode-attention benchmark (`make bench`). Prints figures, never fails on speed.
 *
 * Measured in the same run, so the ratios hold on whatever machine runs it:
 *  - the read limit: DRAM read bandwidth, 1 and 2 threads, over a buffer of
 *    4x the last-level cache (at least 512 MiB, at most 2 GiB), and for
 *    comparison over a flushed 64 MiB buffer (the way the kernel cases make
 *    K/V cold), each with several read patterns (one stream with 8 scalar
 *    accumulators, 2 or 4 vector loads per iteration, two halves read
 *    interleaved like K and V, four streams); every pattern is printed and
 *    the limit is the best one (cores differ in which pattern is fastest);
 *  - the FMA peak of the active ISA's vectors, 1 and 2 threads;
 *  - the kernel on d=128, Hq=32, Hkv=8, n in {512, 4096, 32768}, f32/f16/bf16/q8,
 *    K/V cold, 1 and 2 threads (threads split the kv heads through
 *    kvc_attention_heads), and the same for a plain scalar loop (isa=naive);
 *  - beside each cold kernel case, a loop over the same bytes doing only the
 *    arithmetic no kernel can avoid (widen, 4 FMAs per element): the
 *    ceiling that work per byte leaves below the read limit;
 *  - at n=32768, the same K/V read as token-major rows (all kv heads of a
 *    token together) against slot-major, in alternating runs;
 *  - n=512 with K/V cache-resident against the FMA peak: the whole shape
 *    (1 thread: f32 K/V is 4 MiB, so L3) and one kv head (L2);
 *  - kvc_cache_attend (every attention-time policy: h2o, vase, vase_dkv, rkv,
 *    keydiff, scissorhands, keyformer; capacity 4096) over the bare kernel
 *    on the same storage (and over kvc_attention on a copy, for context);
 *  - whole decode steps (append with its evictions, then attend) of the same
 *    policies at capacity 1024 over the kernel alone: the amortised total.
 *
 * Cold K/V: every line of K and V is flushed (clflushopt) before each timed
 * run. Making K/V cold by size instead would need more than the LLC per
 * case (480 MiB here: 120 copies of the n=512 case) and would add page
 * faults and TLB misses that a decode step does not have; flushing leaves the
 * same buffers, addresses and TLB entries, and only the data comes from DRAM.
 * The dram_flushed line checks that reading flushed lines runs at the same
 * speed as streaming a buffer far larger than the LLC.
 *
 * Every case reports the median wall-clock time of BENCH_RUNS (default 9, at
 * least 7) runs. The machine may be shared: a run counts only if every
 * thread of it was on a CPU for >= 90% of its wall time (thread CPU time vs
 * wall time), so time slices lost to other processes do not pollute the
 * medians. Up to 4x as many runs are tried; if too few qualify, all are
 * used and the case counts as disturbed (see the info line at the end).
 *
 * Other tenants also slow memory down without taking our CPU (a busy vCPU
 * next to ours costs ~40% of its DRAM bandwidth here), so each cold case
 * also reads the same flushed K/V bytes with a plain loop, alternating run
 * by run with the kernel: the `bench ref` line compares the two under the
 * same conditions. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "kvc.h"

#define D 128
#define HQ 32
#define HKV 8
#define MAXRUNS 64

static int runs = 9;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void *xalloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float unif(void) { return (float)(rnd() >> 40) * (2.0f / 16777216.0f) - 1.0f; }

/* ------------------------------------------------------------ CPU helpers */

/* Waiting threads yield rather than spin: on this kind of VM a spinning
 * (even PAUSE-ing) vCPU cuts the other vCPU's DRAM bandwidth by ~40%, which
 * would distort every 1-thread figure and the tail of 2-thread runs. */
static inline void cpu_relax(void) { sched_yield(); }

#if defined(__x86_64__)
static int cpu_has(int leaf7_ebx_bit) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> leaf7_ebx_bit) & 1;
}
__attribute__((target("clflushopt"))) static void flush_opt(const char *p, size_t n) {
    for (size_t i = 0; i < n; i += 64) _mm_clflushopt((void *)(uintptr_t)(p + i));
}
#endif

/* Evict [p, p+bytes) from every cache level. */
static void flush(const void *p, size_t bytes) {
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    size_t n = bytes + (size_t)((const char *)p - c);
#if defined(__x86_64__)
    static int opt = -1;
    if (opt < 0) opt = cpu_has(23);
    if (opt)
        flush_opt(c, n);
    else
        for (size_t i = 0; i < n; i += 64) _mm_clflush(c + i);
    _mm_mfence();
#elif defined(__aarch64__)
    for (size_t i = 0; i < n; i += 64) __asm__ volatile("dc civac, %0" ::"r"(c + i) : "memory");
    __asm__ volatile("dsb ish" ::: "memory");
#else
    (void)c;
    (void)n; /* no portable flush: the case is then warm for small n */
#endif
}

/* ------------------------------------------------------------ two threads */

typedef void (*work_fn)(void *ctx, int tid, int nthreads);
static struct {
    pthread_t th;
    _Atomic unsigned go, done;
    _Atomic int quit;
    work_fn fn;
    void *ctx;
    double cpu[2]; /* CPU seconds each thread spent in the last fn */
} pool;

static unsigned pool_seen;
static void *worker(void *arg) {
    (void)arg;
    unsigned seen = pool_seen; /* the generation at start: earlier phases' work is done */
    for (;;) {
        unsigned g;
        while ((g = atomic_load_explicit(&pool.go, memory_order_acquire)) == seen) cpu_relax();
        seen = g;
        if (atomic_load(&pool.quit)) return NULL;
        double c0 = thread_cpu();
        pool.fn(pool.ctx, 1, 2);
        pool.cpu[1] = thread_cpu() - c0;
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}
/* The helper thread spins only while a 2-thread phase runs. */
static void pool_start(void) {
    atomic_store(&pool.quit, 0);
    pool_seen = atomic_load(&pool.go);
    if (pthread_create(&pool.th, NULL, worker, NULL)) {
        fprintf(stderr, "bench: pthread_create failed\n");
        exit(1);
    }
}
static void pool_stop(void) {
    atomic_store(&pool.quit, 1);
    atomic_fetch_add_explicit(&pool.go, 1, memory_order_release);
    pthread_join(pool.th, NULL);
}
static void run_threads(work_fn fn, void *ctx, int threads) {
    double c0 = thread_cpu();
    if (threads == 1) {
        fn(ctx, 0, 1);
        pool.cpu[0] = thread_cpu() - c0;
        return;
    }
    unsigned d0 = atomic_load_explicit(&pool.done, memory_order_acquire);
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_fetch_add_explicit(&pool.go, 1, memory_order_release);
    fn(ctx, 0, 2);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) == d0) cpu_relax();
    pool.cpu[0] = thread_cpu() - c0;
}

typedef struct {
    const void *p;
    size_t bytes;
} region;

static int disturbed_cases;

/* One timed run: wall seconds, and whether every thread was on a CPU for
 * >= 90% of it. */
static double run_once(work_fn fn, void *ctx, int threads, const region *fl, int nfl, int *undisturbed) {
    for (int i = 0; i < nfl; i++) flush(fl[i].p, fl[i].bytes);
    double t0 = now();
    run_threads(fn, ctx, threads);
    double w = now() - t0, sh = 1.0;
    for (int t = 0; t < threads; t++) sh = pool.cpu[t] / w < sh ? pool.cpu[t] / w : sh;
    *undisturbed = sh >= 0.9;
    return w;
}

/* Median wall seconds of each of `nf` functions over `nruns` undisturbed
 * rounds (see the top comment) into t[]; a round runs each function once,
 * in turn, so all see the same machine; `fl` is flushed before every run
 * (none: warm). One untimed round first (page faults, code, branch
 * predictors) unless nruns is 1. */
#define MAXF 6
static void timed_n(const work_fn *fn, void *const *ctx, int nf, double *t, int threads, const region *fl, int nfl,
                    int nruns) {
    static double good[MAXF][MAXRUNS * 20], all[MAXF][MAXRUNS * 80]; /* nruns <= 20 * MAXRUNS */
    int ng = 0, na = 0;
    if (nruns > 1)
        for (int f = 0; f < nf; f++) run_threads(fn[f], ctx[f], threads);
    for (int a = 0; a < 4 * nruns && ng < nruns; a++) {
        int ok = 1;
        for (int f = 0; f < nf; f++) {
            int u;
            all[f][na] = run_once(fn[f], ctx[f], threads, fl, nfl, &u);
            ok &= u;
        }
        if (ok)
            for (int f = 0; f < nf; f++) good[f][ng] = all[f][na];
        ng += ok;
        na++;
    }
    if (ng < nruns) { /* too busy: use every run */
        disturbed_cases++;
        ng = na;
        for (int f = 0; f < nf; f++) memcpy(good[f], all[f], sizeof(double) * (size_t)na);
    }
    for (int f = 0; f < nf; f++) t[f] = median(good[f], ng);
}

static double timed2(work_fn fn, void *ctx, work_fn fn2, void *ctx2, double *t2, int threads, const region *fl,
                     int nfl, int nruns) {
    work_fn fns[2] = {fn, fn2};
    void *ctxs[2] = {ctx, ctx2};
    double t[2];
    timed_n(fns, ctxs, fn2 ? 2 : 1, t, threads, fl, nfl, nruns);
    if (fn2) *t2 = t[1];
    return t[0];
}

static double timed(work_fn fn, void *ctx, int threads, const region *fl, int nfl, int nruns) {
    return timed2(fn, ctx, NULL, NULL, NULL, threads, fl, nfl, nruns);
}

/* ------------------------------------------------------------ DRAM read bandwidth */

/* Read patterns: a core's read bandwidth depends on how the loads are
 * issued (how many per iteration, how many streams), and on each machine a
 * different one is best, so the limit is the best of several, measured in
 * the same run. Each returns a sum of [p, p+n) (n a multiple of 256, p
 * 64-byte aligned) that the compiler cannot drop. */
enum { RP_PLAIN, RP_LOADS2, RP_LOADS4, RP_KV, RP_STREAMS4, RP_COUNT };
static const char *const rp_name[RP_COUNT] = {"plain8", "loads2", "loads4", "kv", "streams4"};
static const char *const rp_what[RP_COUNT] = {
    "one stream, 8 scalar accumulators", "one stream, 2 vector loads per iteration",
    "one stream, 4 vector loads per iteration", "two halves read interleaved, 2 loads each (like K and V)",
    "four streams, one vector load each per iteration"};

static uint64_t read_plain(const char *p, size_t n) {
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 8 <= n / 8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += w[i + (size_t)k];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

#if defined(__x86_64__)
/* The vector patterns in 32-byte AVX2 loads (every x86 core this bench
 * runs the kernels on has them; 64-byte loads read no faster from DRAM). */
#define VL 32
typedef __m256i vreg;
#define VLOAD(p) _mm256_load_si256((const __m256i *)(const void *)(p))
#define VADD(a, b) _mm256_add_epi64(a, b)
#define VZERO() _mm256_setzero_si256()
#define VSUM(a) ((uint64_t)_mm256_extract_epi64(a, 0) + (uint64_t)_mm256_extract_epi64(a, 3))
#define VTARGET __attribute__((target("avx2")))
#elif defined(__aarch64__)
#define VL 16
typedef uint64x2_t vreg;
#define VLOAD(p) vld1q_u64((const uint64_t *)(const void *)(p))
#define VADD(a, b) vaddq_u64(a, b)
#define VZERO() vdupq_n_u64(0)
#define VSUM(a) (vgetq_lane_u64(a, 0) + vgetq_lane_u64(a, 1))
#define VTARGET
#endif

#ifdef VL
VTARGET static uint64_t read_loads(const char *p, size_t n, int loads) {
    vreg a = VZERO(), b = a, c = a, d = a;
    if (loads == 2)
        for (size_t i = 0; i + 2 * VL <= n; i += 2 * VL) a = VADD(a, VLOAD(p + i)), b = VADD(b, VLOAD(p + i + VL));
    else
        for (size_t i = 0; i + 4 * VL <= n; i += 4 * VL) {
            a = VADD(a, VLOAD(p + i)), b = VADD(b, VLOAD(p + i + VL));
            c = VADD(c, VLOAD(p + i + 2 * VL)), d = VADD(d, VLOAD(p + i + 3 * VL));
        }
    return VSUM(VADD(VADD(a, b), VADD(c, d)));
}
/* Two halves, 2 loads from each in turn: the kernel's K and V streams. */
VTARGET static uint64_t read_kv(const char *p, size_t n) {
    const char *k = p, *v = p + n / 2;
    vreg a = VZERO(), b = a, c = a, d = a;
    for (size_t i = 0; i + 2 * VL <= n / 2; i += 2 * VL) {
        a = VADD(a, VLOAD(k + i)), b = VADD(b, VLOAD(k + i + VL));
        c = VADD(c, VLOAD(v + i)), d = VADD(d, VLOAD(v + i + VL));
    }
    return VSUM(VADD(VADD(a, b), VADD(c, d)));
}
VTARGET static uint64_t read_streams4(const char *p, size_t n) {
    const size_t q = n / 4;
    vreg a = VZERO(), b = a, c = a, d = a;
    for (size_t i = 0; i + VL <= q; i += VL) {
        a = VADD(a, VLOAD(p + i)), b = VADD(b, VLOAD(p + q + i));
        c = VADD(c, VLOAD(p + 2 * q + i)), d = VADD(d, VLOAD(p + 3 * q + i));
    }
    return VSUM(VADD(VADD(a, b), VADD(c, d)));
}
static int have_vec(void) {
#if defined(__x86_64__)
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx2");
    return v;
#else
    return 1;
#endif
}
#endif

/* Sum of [p, p+n) read with pattern `rp` (the plain loop where the vector
 * ones cannot run). */
static uint64_t read_pattern(const char *p, size_t n, int rp) {
#ifdef VL
    if (have_vec()) switch (rp) {
        case RP_LOADS2: return read_loads(p, n, 2);
        case RP_LOADS4: return read_loads(p, n, 4);
        case RP_KV: return read_kv(p, n);
        case RP_STREAMS4: return read_streams4(p, n);
        default: break;
        }
#endif
    return read_plain(p, n);
}

static int best_rp = RP_LOADS4; /* the fastest pattern on 1 thread, set by the dram phase */
static uint64_t read_range(const char *p, size_t n) { return read_pattern(p, n, best_rp); }

typedef struct {
    const char *p;
    size_t bytes;
    int rp;
    volatile uint64_t sink;
} readctx;

static void work_read(void *vctx, int tid, int nt) {
    readctx *c = vctx;
    size_t part = (c->bytes / (size_t)nt) & ~(size_t)255;
    c->sink += read_pattern(c->p + part * (size_t)tid, part, c->rp);
}

static size_t llc_bytes(void) {
    long s = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    s = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (s <= 0) {
        FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
        char unit = 0;
        if (f && fscanf(f, "%ld%c", &s, &unit) >= 1) s *= unit == 'M' ? 1 << 20 : unit == 'K' ? 1 << 10 : 1;
        if (f) fclose(f);
    }
    return s > 0 ? (size_t)s : (size_t)64 << 20;
}

/* ------------------------------------------------------------ FMA peak */

typedef struct {
    long iters;
    double flops_per_iter;
    volatile float sink;
} fmactx;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float fma_zmm(long iters) {
    __m512 a[16], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
    for (int k = 0; k < 16; k++) a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
        a[0] = _mm512_fmadd_ps(a[0], x, y), a[1] = _mm512_fmadd_ps(a[1], x, y);
        a[2] = _mm512_fmadd_ps(a[2], x, y), a[3] = _mm512_fmadd_ps(a[3], x, y);
        a[4] = _mm512_fmadd_ps(a[4], x, y), a[5] = _mm512_fmadd_ps(a[5], x, y);
        a[6] = _mm512_fmadd_ps(a[6], x, y), a[7] = _mm512_fmadd_ps(a[7], x, y);
        a[8] = _mm512_fmadd_ps(a[8], x, y), a[9] = _mm512_fmadd_ps(a[9], x, y);
        a[10] = _mm512_fmadd_ps(a[10], x, y), a[11] = _mm512_fmadd_ps(a[11], x, y);
        a[12] = _mm512_fmadd_ps(a[12], x, y), a[13] = _mm512_fmadd_ps(a[13], x, y);
        a[14] = _mm512_fmadd_ps(a[14], x, y), a[15] = _mm512_fmadd_ps(a[15], x, y);
    }
    __m512 s = a[0];
    for (int k = 1; k < 16; k++) s = _mm512_add_ps(s, a[k]);
    return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) static float fma_ymm(long iters) {
    __m256 a[12], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
    for (int k = 0; k < 12; k++) a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
        a[0] = _mm256_fmadd_ps(a[0], x, y), a[1] = _mm256_fmadd_ps(a[1], x, y);
        a[2] = _mm256_fmadd_ps(a[2], x, y), a[3] = _mm256_fmadd_ps(a[3], x, y);
        a[4] = _mm256_fmadd_ps(a[4], x, y), a[5] = _mm256_fmadd_ps(a[5], x, y);
        a[6] = _mm256_fmadd_ps(a[6], x, y), a[7] = _mm256_fmadd_ps(a[7], x, y);
        a[8] = _mm256_fmadd_ps(a[8], x, y), a[9] = _mm256_fmadd_ps(a[9], x, y);
        a[10] = _mm256_fmadd_ps(a[10], x, y), a[11] = _mm256_fmadd_ps(a[11], x, y);
    }
    __m256 s = a[0];
    for (int k = 1; k < 12; k++) s = _mm256_add_ps(s, a[k]);
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[7];
}
#endif
#if defined(__aarch64__)
static float fma_neon(long iters) {
    float32x4_t a[16], x = vdupq_n_f32(0.999999f), y = vdupq_n_f32(1e-6f);
    for (int k = 0; k < 16; k++) a[k] = vdupq_n_f32((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < 16; k++) a[k] = vfmaq_f32(y, a[k], x);
    float32x4_t s = a[0];
    for (int k = 1; k < 16; k++) s = vaddq_f32(s, a[k]);
    return vaddvq_f32(s);
}
#endif
static float fma_scalar(long iters) {
    float a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) a[k] = a[k] * 0.999999f + 1e-6f;
    return a[0] + a[7];
}

static const char *peak_isa; /* vector width used for the peak */
static void work_fma(void *vctx, int tid, int nt) {
    (void)tid;
    (void)nt;
    fmactx *c = vctx;
#if defined(__x86_64__)
    if (strncmp(peak_isa, "avx512", 6) == 0) { /* avx512, avx512_vnni, avx512_bf16 */
        c->sink += fma_zmm(c->iters);
        c->flops_per_iter = 16 * 16 * 2;
        return;
    }
    if (strcmp(peak_isa, "avx2") == 0) {
        c->sink += fma_ymm(c->iters);
        c->flops_per_iter = 12 * 8 * 2;
        return;
    }
#endif
#if defined(__aarch64__)
    if (strcmp(peak_isa, "neon") == 0) {
        c->sink += fma_neon(c->iters);
        c->flops_per_iter = 16 * 4 * 2;
        return;
    }
#endif
    c->sink += fma_scalar(c->iters);
    c->flops_per_iter = 8 * 2;
}

/* ------------------------------------------------------------ kernel cases */

static const char *dt_name(kvc_dtype dt) {
    return dt == KVC_DTYPE_F32 ? "f32" : dt == KVC_DTYPE_F16 ? "f16" : dt == KVC_DTYPE_BF16 ? "bf16" : "q8";
}
static size_t esize(kvc_dtype dt) { return dt == KVC_DTYPE_F32 ? 4 : dt == KVC_DTYPE_Q8 ? 1 : 2; }
/* Elements (bytes for Q8: values and scale) of one row of D. */
static size_t row_elems(kvc_dtype dt) { return kvc_row_bytes(dt, D) / esize(dt); }

/* Random elements of magnitude < 1 (exponent below the bias: no Inf/NaN). */
static void fill_kv(void *p, size_t n, kvc_dtype dt) {
    if (dt == KVC_DTYPE_Q8) { /* n rows: random rows of |x| < 1, quantised */
        float x[D];
        for (size_t r = 0; r < n; r++) {
            for (int i = 0; i < D; i++) x[i] = unif();
            kvc_quantize_q8(x, D, (char *)p + r * kvc_row_bytes(dt, D));
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        if (dt == KVC_DTYPE_F32)
            ((float *)p)[i] = unif();
        else if (dt == KVC_DTYPE_F16)
            ((uint16_t *)p)[i] = (uint16_t)(((r & 1) << 15) | ((5 + (r >> 1) % 10) << 10) | ((r >> 8) & 0x3ff));
        else
            ((uint16_t *)p)[i] = (uint16_t)(((r & 1) << 15) | ((117 + (r >> 1) % 10) << 7) | ((r >> 8) & 0x7f));
    }
}

typedef struct {
    kvc_attn_layout L;
    const float *q;
    const void *k, *v;
    float *out, *w;
    size_t wstride;
    float *scratch; /* naive: HQ x n logits */
} attnctx;

static void work_kernel(void *vctx, int tid, int nt) {
    attnctx *c = vctx;
    uint32_t b = c->L.n_kv_heads * (uint32_t)tid / (uint32_t)nt, e = c->L.n_kv_heads * (uint32_t)(tid + 1) / (uint32_t)nt;
    if (kvc_attention_heads(&c->L, b, e, c->q, c->k, c->v, c->out, c->w, c->wstride) != KVC_OK) {
        fprintf(stderr, "bench: kvc_attention_heads failed\n");
        exit(1);
    }
}

/* The kernel 16 times in a row: one-head calls last ~10 us, too short to
 * time alone next to the clock reads around them. */
#define REPS 16
static void work_kernel_reps(void *vctx, int tid, int nt) {
    for (int r = 0; r < REPS; r++) work_kernel(vctx, tid, nt);
}

/* The reference for the kernel: a plain read of the K and V bytes of the
 * same kv heads (heads are 128-byte multiples, 64-byte aligned). */
static volatile uint64_t kv_sink;
static void work_kvread(void *vctx, int tid, int nt) {
    attnctx *c = vctx;
    uint32_t b = c->L.n_kv_heads * (uint32_t)tid / (uint32_t)nt, e = c->L.n_kv_heads * (uint32_t)(tid + 1) / (uint32_t)nt;
    size_t hb = c->L.head_stride * esize(c->L.dtype);
    kv_sink += read_range((const char *)c->k + hb * b, hb * (e - b)) + read_range((const char *)c->v + hb * b, hb * (e - b));
}

/* The straightforward implementation: per query head, scores, softmax,
 * weighted sum of V; converts each element as it goes. */
static float elem(const void *base, size_t i, kvc_dtype dt) {
    if (dt == KVC_DTYPE_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    uint32_t u;
    if (dt == KVC_DTYPE_BF16) {
        u = (uint32_t)h << 16;
    } else {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, s = (uint32_t)(h & 0x8000) << 16;
        if (e == 0) { /* subnormal (not produced by fill_kv, kept for honesty) */
            float f = (float)m * (1.0f / 16777216.0f);
            return s ? -f : f;
        }
        u = s | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void work_naive(void *vctx, int tid, int nt) {
    attnctx *c = vctx;
    const kvc_attn_layout *L = &c->L;
    const uint32_t r = L->n_q_heads / L->n_kv_heads, n = L->n_keys, d = L->head_dim;
    const float scale = 1.0f / sqrtf((float)d);
    uint32_t b = L->n_q_heads * (uint32_t)tid / (uint32_t)nt, e = L->n_q_heads * (uint32_t)(tid + 1) / (uint32_t)nt;
    for (uint32_t h = b; h < e; h++) {
        const size_t base = (size_t)(h / r) * L->head_stride;
        const float *q = c->q + (size_t)h * d;
        float *s = c->scratch + (size_t)h * n, *o = c->out + (size_t)h * d;
        float m = -INFINITY, sum = 0.0f;
        for (uint32_t j = 0; j < n; j++) {
            float a = 0.0f;
            for (uint32_t i = 0; i < d; i++) a += q[i] * elem(c->k, base + (size_t)j * L->row_stride + i, L->dtype);
            s[j] = a * scale;
            if (s[j] > m) m = s[j];
        }
        for (uint32_t j = 0; j < n; j++) {
            s[j] = expf(s[j] - m);
            sum += s[j];
        }
        for (uint32_t i = 0; i < d; i++) o[i] = 0.0f;
        for (uint32_t j = 0; j < n; j++)
            for (uint32_t i = 0; i < d; i++) o[i] += s[j] * elem(c->v, base + (size_t)j * L->row_stride + i, L->dtype);
        for (uint32_t i = 0; i < d; i++) o[i] /= sum;
    }
}

/* ------------------------------------------------------------ arithmetic ceiling */

/* What limits a kernel that does not reach the read limit: memory, or the
 * work per byte? This loop streams the same K and V bytes (flushed the same
 * way) and does only the arithmetic no kernel of this shape can avoid: each
 * element widened to f32 and multiplied into HQ/HKV = 4 accumulators per
 * stream (QK: one per query head of the group; PV: the same count with a
 * weight). No dot-product folds, no softmax, no row structure (Q8 scales
 * are read as values): its speed bounds the kernel from above, and the gap
 * between it and the read limit is the cost of the arithmetic alone. Q8 K
 * goes the way the VNNI kernel takes it (int16 pairs into vpdpwssd). */
#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define T256 __attribute__((target("avx2,fma,f16c")))

/* One loop per dtype and vector type VT (FMADD its multiply-add), so that
 * nothing but the widening sits in it. Two banks of 4 accumulators,
 * alternating by vector: 8 FMA chains in flight (4 where a 64-byte line is
 * one vector: f32 in 512 bits). */
#define CEIL_LOOP(VT, FMADD, NX, WIDEN)                                                                              \
    for (size_t o = 0; o + 64 <= n; o += 64) {                                                                       \
        const char *l = p + o;                                                                                       \
        _mm_prefetch(l + ahead, _MM_HINT_T0);                                                                        \
        _Pragma("GCC unroll 8") for (int i = 0; i < (NX); i++) {                                                     \
            VT x = WIDEN;                                                                                            \
            VT *a = acc + 4 * (i & 1);                                                                               \
            a[0] = FMADD(x, c[0], a[0]), a[1] = FMADD(x, c[1], a[1]);                                               \
            a[2] = FMADD(x, c[2], a[2]), a[3] = FMADD(x, c[3], a[3]);                                               \
        }                                                                                                            \
    }
#define CEIL_LOOP512(NX, WIDEN) CEIL_LOOP(__m512, _mm512_fmadd_ps, NX, WIDEN)
#define CEIL_LOOP256(NX, WIDEN) CEIL_LOOP(__m256, _mm256_fmadd_ps, NX, WIDEN)

T512 static float ceil512(const char *p, size_t n, kvc_dtype dt, int vnni_k, size_t ahead) {
    __m512 acc[8], c[4];
    for (int h = 0; h < 8; h++) acc[h] = _mm512_setzero_ps();
    for (int h = 0; h < 4; h++) c[h] = _mm512_set1_ps(0.25f * (float)(h + 1));
    if (vnni_k) { /* Q8 K: 32 int8 -> int16, one vpdpwssd per query head */
        __m512i ia[8], qc[4];
        for (int h = 0; h < 8; h++) ia[h] = _mm512_setzero_si512();
        for (int h = 0; h < 4; h++) qc[h] = _mm512_set1_epi16((short)(h + 1));
        for (size_t o = 0; o + 64 <= n; o += 64) {
            _mm_prefetch(p + o + ahead, _MM_HINT_T0);
            _Pragma("GCC unroll 2") for (int i = 0; i < 2; i++) {
                __m512i x = _mm512_cvtepi8_epi16(_mm256_load_si256((const __m256i *)(const void *)(p + o + 32 * i)));
                __m512i *a = ia + 4 * i;
                a[0] = _mm512_dpwssd_epi32(a[0], x, qc[0]), a[1] = _mm512_dpwssd_epi32(a[1], x, qc[1]);
                a[2] = _mm512_dpwssd_epi32(a[2], x, qc[2]), a[3] = _mm512_dpwssd_epi32(a[3], x, qc[3]);
            }
        }
        __m512i s = ia[0];
        for (int h = 1; h < 8; h++) s = _mm512_add_epi32(s, ia[h]);
        return (float)_mm512_reduce_add_epi32(s);
    }
    switch (dt) {
    case KVC_DTYPE_F32: CEIL_LOOP512(1, _mm512_load_ps((const float *)(const void *)l)) break;
    case KVC_DTYPE_F16: CEIL_LOOP512(2, _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(l + 32 * i)))) break;
    case KVC_DTYPE_BF16:
        CEIL_LOOP512(2, _mm512_castsi512_ps(_mm512_slli_epi32(
                         _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)(const void *)(l + 32 * i))), 16)))
        break;
    default:
        CEIL_LOOP512(4, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(const void *)(l + 16 * i)))))
        break;
    }
    __m512 s = acc[0];
    for (int h = 1; h < 8; h++) s = _mm512_add_ps(s, acc[h]);
    return _mm512_reduce_add_ps(s);
}

T256 static float ceil256(const char *p, size_t n, kvc_dtype dt, size_t ahead) {
    __m256 acc[8], c[4];
    for (int h = 0; h < 8; h++) acc[h] = _mm256_setzero_ps();
    for (int h = 0; h < 4; h++) c[h] = _mm256_set1_ps(0.25f * (float)(h + 1));
    switch (dt) {
    case KVC_DTYPE_F32: CEIL_LOOP256(2, _mm256_load_ps((const float *)(const void *)(l + 32 * i))) break;
    case KVC_DTYPE_F16: CEIL_LOOP256(4, _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(l + 16 * i)))) break;
    case KVC_DTYPE_BF16:
        CEIL_LOOP256(4, _mm256_castsi256_ps(_mm256_slli_epi32(
                            _mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)(const void *)(l + 16 * i))), 16)))
        break;
    default:
        CEIL_LOOP256(8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(l + 8 * i)))))
        break;
    }
    __m256 s = acc[0];
    for (int h = 1; h < 8; h++) s = _mm256_add_ps(s, acc[h]);
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
#endif

/* The ceiling loop exists for the x86 vector kernels (avx2 and avx512*). */
static int ceiling_width(const char *isa) {
#if defined(__x86_64__)
    if (strncmp(isa, "avx512", 6) == 0) return 512;
    if (strcmp(isa, "avx2") == 0) return 256;
#endif
    (void)isa;
    return 0;
}

static int ceiling_bits; /* 512, 256, or 0: no ceiling loop for this ISA */
static int ceiling_vnni; /* the active kernel takes Q8 K by vpdpwssd */
static volatile float ceil_sink;
static float ceiling_stream(const char *p, size_t n, kvc_dtype dt, int is_k, size_t ahead, int bits) {
#if defined(__x86_64__)
    if (bits == 512) return ceil512(p, n, dt, is_k && dt == KVC_DTYPE_Q8 && ceiling_vnni, ahead);
    if (bits == 256) return ceil256(p, n, dt, ahead);
#endif
    (void)p, (void)n, (void)dt, (void)is_k, (void)ahead, (void)bits;
    return 0.0f;
}
/* Without software prefetch a loop with this much arithmetic reads 10-35%
 * slower than with it (the Xeon of docs/performance.md), so the loop
 * prefetches (T0, which never faults) a fixed distance ahead. Which distance
 * and which vector width stream fastest differs by core (on that Xeon the
 * 256-bit loop widens f16 faster than the 512-bit one), so each of 2 KiB
 * and 4 KiB ahead, in 256-bit and (with AVX-512) 512-bit vectors, is timed
 * and the fastest is the ceiling. */
static void work_ceiling_at(void *vctx, int tid, int nt, size_t ahead, int bits) {
    attnctx *c = vctx;
    uint32_t b = c->L.n_kv_heads * (uint32_t)tid / (uint32_t)nt, e = c->L.n_kv_heads * (uint32_t)(tid + 1) / (uint32_t)nt;
    size_t hb = c->L.head_stride * esize(c->L.dtype);
    ceil_sink += ceiling_stream((const char *)c->k + hb * b, hb * (e - b), c->L.dtype, 1, ahead, bits) +
                 ceiling_stream((const char *)c->v + hb * b, hb * (e - b), c->L.dtype, 0, ahead, bits);
}
static void work_ceiling_2k(void *vctx, int tid, int nt) { work_ceiling_at(vctx, tid, nt, 2048, 256); }
static void work_ceiling_4k(void *vctx, int tid, int nt) { work_ceiling_at(vctx, tid, nt, 4096, 256); }
static void work_ceiling_2k_512(void *vctx, int tid, int nt) { work_ceiling_at(vctx, tid, nt, 2048, 512); }
static void work_ceiling_4k_512(void *vctx, int tid, int nt) { work_ceiling_at(vctx, tid, nt, 4096, 512); }

/* ------------------------------------------------------------ cache over kernel */

typedef struct {
    void *p[32];
    size_t size[32];
    int n;
} recorder;

static void *rec_alloc(void *opaque, size_t size, size_t align) {
    recorder *r = opaque;
    void *p = NULL;
    if (r->n == 32 || posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size)) return NULL;
    r->p[r->n] = p;
    r->size[r->n++] = size;
    return p;
}
static void rec_free(void *opaque, void *p) {
    recorder *r = opaque;
    for (int i = 0; i < r->n; i++)
        if (r->p[i] == p) {
            r->p[i] = r->p[--r->n];
            r->size[i] = r->size[r->n];
            break;
        }
    free(p);
}

typedef struct {
    kvc_cache *cache;
    const float *q;
    float *out;
} cachectx;

static void cache_fail(kvc_cache *c, const char *what) {
    fprintf(stderr, "bench: %s failed: %s\n", what, kvc_cache_last_error(c));
    exit(1);
}
/* The whole attend: kernel, then the weights reach the policy. */
static void work_cache(void *vctx, int tid, int nt) {
    (void)tid;
    (void)nt;
    cachectx *c = vctx;
    if (kvc_cache_attend(c->cache, c->q, c->out) != KVC_OK) cache_fail(c->cache, "kvc_cache_attend");
}
/* The bare kernel on the cache's own storage, for all heads (weights too
 * when the policy takes them), without telling the policy. */
static void work_cache_heads(void *vctx, int tid, int nt) {
    (void)tid;
    (void)nt;
    cachectx *c = vctx;
    if (kvc_cache_attend_heads(c->cache, c->q, c->out, 0, HKV) != KVC_OK) cache_fail(c->cache, "kvc_cache_attend_heads");
}

/* f32 -> f16 for values that f16 holds exactly (they came from f16 storage). */
static uint16_t f16_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a == 0) return (uint16_t)sign;
    int e = (int)(a >> 23) - 127;
    if (e >= -14) return (uint16_t)(sign | (uint32_t)(e + 15) << 10 | ((a >> 13) & 0x3ffu));
    return (uint16_t)(sign | (((a & 0x7fffffu) | 0x800000u) >> (-e - 1))); /* subnormal: m * 2^(e+1) */
}

/* kvc_cache_attend over the bare kernel, two ways, runs interleaved and every
 * buffer flushed before each run: kvc_cache_attend_heads on the cache's own
 * storage (same memory, so the difference is the bookkeeping alone: this is
 * `ratio`), and kvc_attention on a copy of the stored values in the same
 * layout, weights iff the policy takes them (a different allocation:
 * physical placement alone moves such timings by a few percent on a VM). */
static double cache_ratio(const char *policy, kvc_dtype dt, const float *q, float *out) {
    const uint32_t cap = 4096;
    recorder rec = {{0}, {0}, 0};
    kvc_allocator al = {rec_alloc, rec_free, &rec};
    kvc_cache *cache = NULL;
    if (kvc_cache_create_spec(&cache, HKV, HQ, D, cap, dt, KVC_MODE_STORE, policy, &al) != KVC_OK) {
        fprintf(stderr, "bench: cannot create a %s cache\n", policy);
        exit(1);
    }
    float *k = xalloc((size_t)HKV * D * 4), *v = xalloc((size_t)HKV * D * 4);
    for (uint32_t t = 0; t < cap; t++) {
        for (size_t i = 0; i < (size_t)HKV * D; i++) k[i] = unif(), v[i] = unif();
        if (kvc_cache_append(cache, t, k, v) != KVC_OK) cache_fail(cache, "kvc_cache_append");
    }
    /* the same values for the bare kernel (rows of d elements are 64-byte multiples here, as in the cache) */
    const size_t kvn = (size_t)HKV * cap * D, es = esize(dt);
    char *K = xalloc(kvn * es), *V = xalloc(kvn * es);
    float *w = xalloc((size_t)HQ * cap * 4);
    for (uint32_t h = 0; h < HKV; h++)
        for (uint32_t j = 0; j < cap; j++) {
            if (kvc_cache_read(cache, h, j, k, v) != KVC_OK) cache_fail(cache, "kvc_cache_read");
            size_t o = ((size_t)h * cap + j) * D;
            for (uint32_t i = 0; i < D; i++) {
                if (dt == KVC_DTYPE_F32) {
                    ((float *)(void *)K)[o + i] = k[i];
                    ((float *)(void *)V)[o + i] = v[i];
                } else {
                    uint32_t uk, uv;
                    memcpy(&uk, &k[i], 4);
                    memcpy(&uv, &v[i], 4);
                    ((uint16_t *)(void *)K)[o + i] = dt == KVC_DTYPE_BF16 ? (uint16_t)(uk >> 16) : f16_exact(k[i]);
                    ((uint16_t *)(void *)V)[o + i] = dt == KVC_DTYPE_BF16 ? (uint16_t)(uv >> 16) : f16_exact(v[i]);
                }
            }
        }
    const int weights = (kvc_policy_by_name(policy)->needs & KVC_NEED_ATTN) != 0;
    attnctx a = {{HQ, HKV, D, cap, dt, D, (size_t)cap * D, 0.0f}, q, K, V, out, weights ? w : NULL, cap, NULL};
    region fl[32 + 3];
    int nfl = 0;
    for (int i = 0; i < rec.n; i++) fl[nfl++] = (region){rec.p[i], rec.size[i]};
    fl[nfl++] = (region){K, kvn * es};
    fl[nfl++] = (region){V, kvn * es};
    fl[nfl++] = (region){w, (size_t)HQ * cap * 4};
    cachectx cc = {cache, q, out};
    const work_fn fns[3] = {work_cache, work_cache_heads, work_kernel};
    void *const ctxs[3] = {&cc, &cc, &a};
    double t[3];
    timed_n(fns, ctxs, 3, t, 1, fl, nfl, 4 * runs + 1); /* a 3% effect needs many rounds */
    const double ta = t[0], th = t[1], tk = t[2];
    printf("bench cache policy=%s dtype=%s n=%u threads=1 us=%.1f kernel_us=%.1f ratio=%.3f standalone_kernel_us=%.1f "
           "ratio_standalone=%.3f (kernel %s weights)\n",
           policy, dt_name(dt), cap, ta * 1e6, th * 1e6, ta / th, tk * 1e6, ta / tk, weights ? "with" : "without");
    fflush(stdout);
    kvc_cache_destroy(cache);
    free(k);
    free(v);
    free(K);
    free(V);
    free(w);
    return ta / th;
}

/* A whole decode step on a full cache (append, which evicts, then attend)
 * over the bare kernel on the same storage: what a policy costs in total,
 * including the work it does at eviction time (select-based policies such
 * as rkv do most of theirs there, at every `chunk`-th append). Each round
 * times STEP_ROUND consecutive steps, then as many kernel calls; a round
 * covers whole eviction cycles (chunk <= 64 at this capacity), so its ratio
 * is the amortised cost. The median over rounds is reported. */
#define STEP_ROUND 128
static void step_ratio(const char *policy, kvc_dtype dt, const float *q, float *out, double *med_ratio,
                       double *step_us, double *kernel_us) {
    const uint32_t cap = 1024;
    kvc_cache *cache = NULL;
    if (kvc_cache_create_spec(&cache, HKV, HQ, D, cap, dt, KVC_MODE_STORE, policy, NULL) != KVC_OK) {
        fprintf(stderr, "bench: cannot create a %s cache\n", policy);
        exit(1);
    }
    float *k = xalloc((size_t)HKV * D * 4), *v = xalloc((size_t)HKV * D * 4);
    int64_t pos = 0;
    for (; pos < cap + STEP_ROUND; pos++) { /* full, and past the first evictions */
        for (size_t i = 0; i < (size_t)HKV * D; i++) k[i] = unif(), v[i] = unif();
        if (kvc_cache_append(cache, pos, k, v) != KVC_OK) cache_fail(cache, "kvc_cache_append");
        if (pos + 64 >= cap && kvc_cache_attend(cache, q, out) != KVC_OK) cache_fail(cache, "kvc_cache_attend");
    }
    const int rounds = runs < 5 ? 5 : runs > 9 ? 9 : runs;
    double ratio[16], ts[16], tk[16];
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < STEP_ROUND; i++, pos++) {
            k[i % (HKV * D)] = unif(); /* a fresh token (one element is enough to differ) */
            if (kvc_cache_append(cache, pos, k, v) != KVC_OK) cache_fail(cache, "kvc_cache_append");
            if (kvc_cache_attend(cache, q, out) != KVC_OK) cache_fail(cache, "kvc_cache_attend");
        }
        double t1 = now();
        for (int i = 0; i < STEP_ROUND; i++)
            if (kvc_cache_attend_heads(cache, q, out, 0, HKV) != KVC_OK) cache_fail(cache, "kvc_cache_attend_heads");
        double t2 = now();
        ts[r] = (t1 - t0) / STEP_ROUND;
        tk[r] = (t2 - t1) / STEP_ROUND;
        ratio[r] = ts[r] / tk[r];
    }
    *med_ratio = median(ratio, rounds);
    *step_us = median(ts, rounds) * 1e6;
    *kernel_us = median(tk, rounds) * 1e6;
    kvc_cache_destroy(cache);
    free(k);
    free(v);
}

/* ------------------------------------------------------------ main */

/* BENCH_PARTS: comma-separated subset of dram,fma,attn,cache,step (default all).
 * attn needs dram and fma for its ratios; without them those read 0. */
static int want(const char *part) {
    const char *e = getenv("BENCH_PARTS");
    if (!e || !*e) return 1;
    size_t n = strlen(part);
    for (const char *p = e; (p = strstr(p, part)); p += n)
        if ((p == e || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

int main(void) {
    const char *e = getenv("BENCH_RUNS");
    if (e && atoi(e) > 0) runs = atoi(e);
    runs = runs < 7 ? 7 : runs > MAXRUNS ? MAXRUNS : runs;
    e = getenv("BENCH_NAIVE");
    const int with_naive = !(e && strcmp(e, "0") == 0);
    const char *isa = kvc_active_isa();
    peak_isa = isa;
    ceiling_bits = ceiling_width(isa);
    ceiling_vnni = strcmp(isa, "avx512_vnni") == 0 || strcmp(isa, "avx512_bf16") == 0;
    const size_t llc = llc_bytes();
    printf("bench info isa=%s llc_mib=%zu runs=%d d=%d hq=%d hkv=%d\n", isa, llc >> 20, runs, D, HQ, HKV);

    /* DRAM bandwidth: every read pattern, each on 1 and 2 threads; the
     * limit is the best one per thread count */
    double dram[3] = {0, 0, 0}, dram_fl[3] = {0, 0, 0};
    if (want("dram")) {
        size_t big = 4 * llc;
        big = big < ((size_t)512 << 20) ? (size_t)512 << 20 : big > ((size_t)2 << 30) ? (size_t)2 << 30 : big;
        char *buf = xalloc(big);
        memset(buf, 1, big);
        const size_t fl = (size_t)64 << 20;
        region reg = {buf, fl};
        double best1 = 0;
        pool_start();
        for (int t = 1; t <= 2; t++)
            for (int rp = 0; rp < RP_COUNT; rp++) {
                readctx rc = {buf, big, rp, 0}, rf = {buf, fl, rp, 0};
                double g = (double)big / timed(work_read, &rc, t, NULL, 0, runs) / 1e9;
                double gf = (double)fl / timed(work_read, &rf, t, &reg, 1, runs) / 1e9;
                printf("bench dram_read pattern=%s threads=%d mib=%zu gbps=%.2f flushed_mib=%zu flushed_gbps=%.2f (%s)\n",
                       rp_name[rp], t, big >> 20, g, fl >> 20, gf, rp_what[rp]);
                fflush(stdout);
                if (g > dram[t]) dram[t] = g;
                if (gf > dram_fl[t]) dram_fl[t] = gf;
                if (t == 1 && g > best1) best1 = g, best_rp = rp;
            }
        for (int t = 1; t <= 2; t++)
            printf("bench dram threads=%d gbps=%.2f flushed_gbps=%.2f (best pattern: the read limit; ref lines read "
                   "with %s)\n",
                   t, dram[t], dram_fl[t], rp_name[best_rp]);
        pool_stop();
        free(buf);
    }

    /* FMA peak of the active ISA's vectors */
    double peak[3] = {0, 0, 0};
    if (want("fma")) {
        fmactx fc = {1000, 0, 0};
        double t = 0;
        while ((t = timed(work_fma, &fc, 1, NULL, 0, 1)) < 0.02) fc.iters *= 4;
        pool_start();
        for (int th = 1; th <= 2; th++) {
            t = timed(work_fma, &fc, th, NULL, 0, runs);
            peak[th] = fc.flops_per_iter * (double)fc.iters * th / t / 1e9;
            printf("bench fma isa=%s threads=%d gflops=%.1f\n", peak_isa, th, peak[th]);
        }
        pool_stop();
        fflush(stdout);
    }

    float *q = xalloc((size_t)HQ * D * 4), *out = xalloc((size_t)HQ * D * 4);
    for (size_t i = 0; i < (size_t)HQ * D; i++) q[i] = unif() * 2.0f;

    /* kernel and naive, cold K/V */
    static const uint32_t ns[] = {512, 4096, 32768};
    static const kvc_dtype dts[] = {KVC_DTYPE_F32, KVC_DTYPE_F16, KVC_DTYPE_BF16, KVC_DTYPE_Q8};
#define NDT 4
    double worst_frac = 1e9, worst_ref = 1e9, fma_frac[NDT][3] = {{0}}, frac_tab[NDT][3][3] = {{{0}}};
    double us_tab[NDT][3][3] = {{{0}}}, ceil_tab[NDT][3][3] = {{{0}}};
    pool_start();
    for (int di = 0; di < NDT && want("attn"); di++) {
        const kvc_dtype dt = dts[di];
        for (int ni = 0; ni < 3; ni++) {
            const uint32_t n = ns[ni];
            const size_t re = row_elems(dt), kvn = (size_t)HKV * n * re, bytes = kvn * esize(dt);
            void *K = xalloc(bytes), *V = xalloc(bytes);
            float *scratch = xalloc((size_t)HQ * n * 4);
            fill_kv(K, dt == KVC_DTYPE_Q8 ? (size_t)HKV * n : kvn, dt);
            fill_kv(V, dt == KVC_DTYPE_Q8 ? (size_t)HKV * n : kvn, dt);
            attnctx a = {{HQ, HKV, D, n, dt, re, (size_t)n * re, 0.0f}, q, K, V, out, NULL, 0, scratch};
            region fl[2] = {{K, bytes}, {V, bytes}};
            for (int th = 1; th <= 2; th++) {
                for (int naive = 0; naive < 1 + (with_naive && dt != KVC_DTYPE_Q8); naive++) {
                    double tr = 0, tc = 0, t;
                    int cbest = 0; /* which ceiling loop was fastest */
                    if (naive) {
                        t = timed(work_naive, &a, th, fl, 2, runs);
                    } else { /* kernel, plain read and ceiling loop in alternating runs */
                        const work_fn fns[6] = {work_kernel,     work_kvread,         work_ceiling_2k,
                                                work_ceiling_4k, work_ceiling_2k_512, work_ceiling_4k_512};
                        void *const ctxs[6] = {&a, &a, &a, &a, &a, &a};
                        double t6[6];
                        const int nf = ceiling_bits == 512 ? 6 : ceiling_bits ? 4 : 2;
                        timed_n(fns, ctxs, nf, t6, th, fl, 2, runs);
                        t = t6[0], tr = t6[1];
                        for (int f = 2; f < nf; f++)
                            if (tc == 0 || t6[f] < tc) tc = t6[f], cbest = f;
                    }
                    double gbps = 2.0 * (double)bytes / t / 1e9;
                    printf("bench attn isa=%s dtype=%s n=%u threads=%d us=%.1f gbps=%.2f dram_gbps=%.2f frac=%.3f\n",
                           naive ? "naive" : isa, dt_name(dt), n, th, t * 1e6, gbps, dram[th], gbps / dram[th]);
                    if (!naive) {
                        double rg = 2.0 * (double)bytes / tr / 1e9;
                        printf("bench ref dtype=%s n=%u threads=%d read_us=%.1f read_gbps=%.2f frac_read=%.3f\n",
                               dt_name(dt), n, th, tr * 1e6, rg, gbps / rg);
                        if (n >= 4096 && gbps / rg < worst_ref) worst_ref = gbps / rg;
                        if (tc > 0) {
                            double cg = 2.0 * (double)bytes / tc / 1e9;
                            printf("bench ceiling dtype=%s n=%u threads=%d us=%.1f gbps=%.2f frac=%.3f "
                                   "kernel_over_ceiling=%.3f best=%d-bit/%dk (widen + 4 FMAs per element and a "
                                   "prefetch, nothing else)\n",
                                   dt_name(dt), n, th, tc * 1e6, cg, cg / dram[th], gbps / cg, cbest >= 4 ? 512 : 256,
                                   cbest % 2 ? 4 : 2);
                            ceil_tab[di][ni][th] = cg / dram[th];
                        }
                    }
                    fflush(stdout);
                    if (!naive && n >= 4096 && gbps / dram[th] < worst_frac) worst_frac = gbps / dram[th];
                    if (!naive) frac_tab[di][ni][th] = gbps / dram[th], us_tab[di][ni][th] = t * 1e6;
                }
            }
            if (n == 32768) { /* token-major rows (all kv heads of a token together) vs slot-major */
                attnctx tm = a;
                tm.L.row_stride = (size_t)HKV * re;
                tm.L.head_stride = re;
                double tt[2];
                const work_fn fns[2] = {work_kernel, work_kernel};
                void *const ctxs[2] = {&tm, &a};
                timed_n(fns, ctxs, 2, tt, 1, fl, 2, runs);
                printf("bench attn_layout isa=%s dtype=%s n=%u threads=1 token_major_us=%.1f slot_major_us=%.1f "
                       "ratio=%.3f\n",
                       isa, dt_name(dt), n, tt[0] * 1e6, tt[1] * 1e6, tt[0] / tt[1]);
                fflush(stdout);
            }
            if (n == 512) { /* cache-resident: against the FMA peak */
                for (int th = 1; th <= 2; th++) {
                    double t = timed(work_kernel, &a, th, NULL, 0, runs * 5);
                    double gflops = 4.0 * HQ * n * D / t / 1e9;
                    fma_frac[di][th] = peak[th] > 0 ? gflops / peak[th] : 0; /* 0: fma part not run */
                    printf("bench attn_warm isa=%s dtype=%s n=%u threads=%d us=%.1f gflops=%.1f fma_peak_gflops=%.1f "
                           "frac_fma=%.3f\n",
                           isa, dt_name(dt), n, th, t * 1e6, gflops, peak[th], gflops / peak[th]);
                }
                /* one kv head and its 4 query heads: K/V small enough for L2 */
                attnctx one = a;
                one.L.n_q_heads = HQ / HKV;
                one.L.n_kv_heads = 1;
                double t = timed(work_kernel_reps, &one, 1, NULL, 0, runs * 5) / REPS;
                double gflops = 4.0 * (HQ / HKV) * n * D / t / 1e9;
                fma_frac[di][0] = peak[1] > 0 ? gflops / peak[1] : 0;
                printf("bench attn_l2 isa=%s dtype=%s n=%u threads=1 hq=%d hkv=1 kv_kib=%zu us=%.2f gflops=%.1f "
                       "fma_peak_gflops=%.1f frac_fma=%.3f\n",
                       isa, dt_name(dt), n, HQ / HKV, 2 * bytes / HKV >> 10, t * 1e6, gflops, peak[1], gflops / peak[1]);
                fflush(stdout);
            }
            free(K);
            free(V);
            free(scratch);
        }
    }
    pool_stop();

    /* policy bookkeeping over the bare kernel: at attend (h2o's target 1.03),
     * then over whole decode steps, evictions included */
    static const char *const policies[] = {"h2o",          "vase",      "vase_dkv", "rkv", "keydiff",
                                           "scissorhands", "keyformer", "snapkv"};
    enum { NPOL = sizeof policies / sizeof policies[0] };
    double worst_ratio = 0;
    if (worst_frac > 1e8) worst_frac = worst_ref = 0; /* no attn part */
    for (int p = 0; p < NPOL && want("cache"); p++)
        for (int di = 0; di < 3; di++) {
            double r = cache_ratio(policies[p], dts[di], q, out);
            if (p < 2) worst_ratio = r > worst_ratio ? r : worst_ratio; /* the target is for h2o and vase */
        }
    double step[NPOL];
    for (int p = 0; p < NPOL && want("step"); p++) {
        double su, ku;
        step_ratio(policies[p], KVC_DTYPE_F16, q, out, &step[p], &su, &ku);
        printf("bench step policy=%s dtype=f16 n=1024 threads=1 step_us=%.1f kernel_us=%.1f ratio=%.3f "
               "(append + attend, evictions included, over the kernel alone)\n",
               policies[p], su, ku, step[p]);
        fflush(stdout);
    }
    if (want("step")) {
        printf("bench summary step ratios (n=1024, f16, median of rounds):");
        for (int p = 0; p < NPOL; p++) printf(" %s %.2f", policies[p], step[p]);
        printf("\n");
    }
    printf("bench info disturbed_cases=%d (cases where fewer than %d runs had their threads on a CPU >= 90%% of the "
           "time: the machine was busy, figures less reliable)\n",
           disturbed_cases, runs);
    printf("bench summary isa=%s read_limit_gbps=%.2f/%.2f (1/2 threads, best pattern) fma_peak_gflops=%.1f/%.1f\n",
           isa, dram[1], dram[2], peak[1], peak[2]);
    for (int di = 0; di < NDT && want("attn"); di++)
        printf("bench summary isa=%s dtype=%s frac n=512 %.3f/%.3f n=4096 %.3f/%.3f n=32768 %.3f/%.3f (1/2 threads)\n",
               isa, dt_name(dts[di]), frac_tab[di][0][1], frac_tab[di][0][2], frac_tab[di][1][1], frac_tab[di][1][2],
               frac_tab[di][2][1], frac_tab[di][2][2]);
    for (int di = 0; di < NDT && want("attn") && ceiling_bits; di++)
        printf("bench summary isa=%s dtype=%s ceiling frac n=4096 %.3f/%.3f n=32768 %.3f/%.3f (1/2 threads; the "
               "arithmetic alone, see the ceiling lines)\n",
               isa, dt_name(dts[di]), ceil_tab[di][1][1], ceil_tab[di][1][2], ceil_tab[di][2][1], ceil_tab[di][2][2]);
    if (want("attn"))
        for (int th = 1; th <= 2; th++)
            printf("bench summary isa=%s threads=%d n=32768 tokens_per_s f32 %.1f f16 %.1f bf16 %.1f q8 %.1f "
                   "(q8/f16 %.2fx; one token = all 8 kv heads)\n",
                   isa, th, 1e6 / us_tab[0][2][th], 1e6 / us_tab[1][2][th], 1e6 / us_tab[2][2][th],
                   1e6 / us_tab[3][2][th], us_tab[1][2][th] / us_tab[3][2][th]);
    printf("bench summary isa=%s min_frac_n_ge_4096=%.3f (target 0.90) vs_same_bytes_read=%.3f "
           "max_cache_ratio=%.3f (target 1.03)\n",
           isa, worst_frac, worst_ref, worst_ratio);
    printf("bench summary isa=%s n=512 frac_fma (target 0.60 one head in L2): f32 %.3f/%.3f/%.3f f16 %.3f/%.3f/%.3f "
           "bf16 %.3f/%.3f/%.3f q8 %.3f/%.3f/%.3f (1 thread all heads / 2 threads / 1 head in L2)\n",
           isa, fma_frac[0][1], fma_frac[0][2], fma_frac[0][0], fma_frac[1][1], fma_frac[1][2], fma_frac[1][0],
           fma_frac[2][1], fma_frac[2][2], fma_frac[2][0], fma_frac[3][1], fma_frac[3][2], fma_frac[3][0]);
    free(q);
    free(out);
    return 0;
}
