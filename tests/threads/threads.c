/* Thread-safety checks, built with -fsanitize=thread (tests/threads/threads.mk)
 * and run by tests/parts/tsan.sh; any report fails the run.
 *  1. first use of the kernel dispatcher from several threads at once (the
 *     lazy ISA choice) — this must come first in a fresh process;
 *  2. many caches (every policy, both modes) driven by several threads at
 *     once, each result equal to the same work done on one thread;
 *  3. kvc_cache_attend_heads() from two threads on disjoint kv-head ranges
 *     of one cache, then kvc_cache_attend_finish() alone, on every ISA: the
 *     outputs and evictions equal a twin cache driven by kvc_cache_attend(). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvc.h"

static int failures;
#define EXPECT(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "threads: %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static void tfill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 40) % 2001) / 1000.0f - 1.0f;
    }
}

/* ------------------------------------------------- 1. dispatcher first use */

enum { N_FIRST = 4 };
static pthread_barrier_t first_barrier;
static const char *first_isa[N_FIRST];

static void *first_use(void *arg) {
    int id = (int)(intptr_t)arg;
    float q[8], k[8 * 16], v[8 * 16], out[8];
    tfill(q, 8, 1);
    tfill(k, 8 * 16, 2);
    tfill(v, 8 * 16, 3);
    kvc_attn_layout L = {1, 1, 8, 16, KVC_DTYPE_F32, 8, 8 * 16, 0.0f};
    pthread_barrier_wait(&first_barrier);
    if (id % 2)
        first_isa[id] = kvc_active_isa();
    else if (kvc_attention(&L, q, k, v, out, NULL, 0) == KVC_OK)
        first_isa[id] = kvc_active_isa();
    return NULL;
}

static void dispatcher_first_use(void) {
    pthread_t t[N_FIRST];
    pthread_barrier_init(&first_barrier, NULL, N_FIRST);
    for (int i = 0; i < N_FIRST; i++) pthread_create(&t[i], NULL, first_use, (void *)(intptr_t)i);
    for (int i = 0; i < N_FIRST; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&first_barrier);
    for (int i = 0; i < N_FIRST; i++)
        EXPECT(first_isa[i] && strcmp(first_isa[i], first_isa[0]) == 0, "threads saw different ISAs");
}

/* ---------------------------------------------- 2. many independent caches */

enum { KV = 2, Q = 4, D = 16, CAP = 48, STEPS = 300, N_WORKERS = 4 };

/* One cache's life; returns a hash of its evictions and outputs. */
static uint64_t cache_life(const char *policy, kvc_mode mode, uint64_t seed) {
    kvc_cache *c;
    if (kvc_cache_create(&c, KV, Q, D, CAP, KVC_DTYPE_F16, mode, kvc_policy_by_name(policy), NULL) != KVC_OK)
        return 0;
    kvc_cache_set(c, KVC_OPT_SEED, (int64_t)seed);
    uint64_t h = 0xcbf29ce484222325ull;
    float k[KV * D], v[KV * D], q[Q * D], out[Q * D], mass[CAP];
    uint32_t slots[KV];
    int64_t ev[KV * CAP];
    for (int t = 0; t < STEPS; t++) {
        tfill(k, KV * D, seed * 1000 + (uint64_t)t);
        tfill(v, KV * D, seed * 2000 + (uint64_t)t);
        tfill(q, Q * D, seed * 3000 + (uint64_t)t);
        int rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, t, k, v) : kvc_cache_reserve(c, t, k, v, slots, ev);
        if (rc == KVC_EFULL) break;
        if (rc != KVC_OK) {
            h = 0;
            break;
        }
        if (mode == KVC_MODE_STORE) {
            kvc_cache_attend(c, q, out);
            for (int i = 0; i < Q * D; i++) {
                uint32_t b;
                memcpy(&b, &out[i], 4);
                h = (h ^ b) * 0x100000001b3ull;
            }
        } else {
            for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
                for (int i = 0; i < CAP; i++) mass[i] = (float)((t + i * 7 + (int)g) % 11) * 0.01f;
                kvc_cache_observe(c, g, mass, CAP);
            }
        }
        for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
            int64_t pos[CAP];
            kvc_cache_positions(c, g, pos);
            for (int s = 0; s < CAP; s++) h = (h ^ (uint64_t)pos[s]) * 0x100000001b3ull;
        }
    }
    kvc_cache_destroy(c);
    return h;
}

static uint64_t expected[N_WORKERS][32], got[N_WORKERS][32];

static uint64_t worker_job(int w, int j, const char **policy, kvc_mode *mode) {
    *policy = kvc_policy_at((size_t)j % 9)->name;
    *mode = (kvc_mode)(j / 9 % 2);
    return (uint64_t)(w * 100 + j + 1);
}

static void *many_caches(void *arg) {
    int w = (int)(intptr_t)arg;
    for (int j = 0; j < 18; j++) {
        const char *p;
        kvc_mode m;
        uint64_t seed = worker_job(w, j, &p, &m);
        got[w][j] = cache_life(p, m, seed);
    }
    return NULL;
}

static void concurrent_caches(void) {
    for (int w = 0; w < N_WORKERS; w++)
        for (int j = 0; j < 18; j++) {
            const char *p;
            kvc_mode m;
            uint64_t seed = worker_job(w, j, &p, &m);
            expected[w][j] = cache_life(p, m, seed);
            EXPECT(expected[w][j] != 0, "%s mode %d failed", p, m);
        }
    pthread_t t[N_WORKERS];
    for (int w = 0; w < N_WORKERS; w++) pthread_create(&t[w], NULL, many_caches, (void *)(intptr_t)w);
    for (int w = 0; w < N_WORKERS; w++) pthread_join(t[w], NULL);
    for (int w = 0; w < N_WORKERS; w++)
        for (int j = 0; j < 18; j++) EXPECT(got[w][j] == expected[w][j], "worker %d job %d differs from the serial run", w, j);
}

/* ----------------------------------- 3. attend_heads on one cache, 2 threads */

enum { HKV = 4, HQ = 8, HD = 24, HCAP = 64, HSTEPS = 200 };

typedef struct {
    kvc_cache *c;
    const float *q;
    float *out;
    uint32_t begin, end;
    pthread_barrier_t *go, *done;
    int steps, rc;
} half_job;

static void *half(void *arg) {
    half_job *j = arg;
    for (int t = 0; t < j->steps; t++) {
        pthread_barrier_wait(j->go);
        int rc = kvc_cache_attend_heads(j->c, j->q, j->out, j->begin, j->end);
        if (rc && !j->rc) j->rc = rc;
        pthread_barrier_wait(j->done);
    }
    return NULL;
}

/* Concurrent calls that fail (empty cache, bad range, NaN query) must not
 * race either. The calls that succeed (second round) use each thread's own
 * kv head: only disjoint ranges may run at once (same-range calls write the
 * same weights rows). */
typedef struct {
    kvc_cache *c;
    uint32_t head;
} failing_job;

static void *failing_heads(void *arg) {
    const failing_job *j = arg;
    kvc_cache *c = j->c;
    static const float q[HQ * HD];
    float out[HQ * HD];
    for (int i = 0; i < 50; i++) {
        int rc = kvc_cache_attend_heads(c, q, out, j->head, j->head + 1);
        if (rc != KVC_EEMPTY && rc != KVC_OK) return (void *)1;
        if (kvc_cache_attend_heads(c, q, out, 3, 2) != (rc == KVC_EEMPTY ? KVC_EEMPTY : KVC_ERANGE)) return (void *)1;
        if (kvc_cache_attend_heads(c, NULL, out, 0, 1) != KVC_EINVAL) return (void *)1;
    }
    return NULL;
}

static void failing_split_calls(void) {
    kvc_cache *c;
    if (kvc_cache_create(&c, HKV, HQ, HD, HCAP, KVC_DTYPE_F32, KVC_MODE_STORE, kvc_policy_h2o(), NULL) != KVC_OK) {
        EXPECT(0, "create");
        return;
    }
    for (int round = 0; round < 2; round++) {
        if (round) {
            float k[HKV * HD] = {0}, v[HKV * HD] = {0};
            EXPECT(kvc_cache_append(c, 0, k, v) == KVC_OK, "append");
        }
        pthread_t t[2];
        void *r[2];
        failing_job jobs[2] = {{c, 0}, {c, 1}};
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, failing_heads, &jobs[i]);
        for (int i = 0; i < 2; i++) pthread_join(t[i], &r[i]);
        EXPECT(!r[0] && !r[1], "concurrent failing attend_heads gave unexpected codes");
    }
    kvc_cache_destroy(c);
}

static void split_attention(const char *isa, const char *policy) {
    kvc_cache *c, *twin;
    if (kvc_cache_create_spec(&c, HKV, HQ, HD, HCAP, KVC_DTYPE_BF16, KVC_MODE_STORE, policy, NULL) != KVC_OK ||
        kvc_cache_create_spec(&twin, HKV, HQ, HD, HCAP, KVC_DTYPE_BF16, KVC_MODE_STORE, policy, NULL) != KVC_OK) {
        EXPECT(0, "create %s", policy);
        return;
    }
    static float q[HQ * HD], out[HQ * HD], out2[HQ * HD];
    float k[HKV * HD], v[HKV * HD];
    pthread_barrier_t go, done;
    pthread_barrier_init(&go, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    half_job jobs[2] = {{c, q, out, 0, 1, &go, &done, HSTEPS, 0}, {c, q, out, 1, HKV, &go, &done, HSTEPS, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, half, &jobs[i]);
    for (int s = 0; s < HSTEPS; s++) {
        tfill(k, HKV * HD, 10u + (uint64_t)s);
        tfill(v, HKV * HD, 20u + (uint64_t)s);
        tfill(q, HQ * HD, 30u + (uint64_t)s);
        EXPECT(kvc_cache_append(c, s, k, v) == KVC_OK, "append");
        EXPECT(kvc_cache_append(twin, s, k, v) == KVC_OK, "append twin");
        pthread_barrier_wait(&go);   /* workers attend their heads */
        pthread_barrier_wait(&done); /* ... and are done */
        EXPECT(kvc_cache_attend_finish(c, q) == KVC_OK, "finish");
        EXPECT(kvc_cache_attend(twin, q, out2) == KVC_OK, "attend twin");
        EXPECT(memcmp(out, out2, sizeof out) == 0, "%s %s step %d: split output differs", isa, policy, s);
        for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
            int64_t a[HCAP], b[HCAP];
            kvc_cache_positions(c, g, a);
            kvc_cache_positions(twin, g, b);
            EXPECT(memcmp(a, b, sizeof a) == 0, "%s %s step %d: evictions differ", isa, policy, s);
        }
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    EXPECT(jobs[0].rc == 0 && jobs[1].rc == 0, "attend_heads failed");
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&done);
    kvc_cache_destroy(c);
    kvc_cache_destroy(twin);
}

int main(void) {
    dispatcher_first_use();
    concurrent_caches();
    failing_split_calls();
    static const char *const isas[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};
    int n = 0;
    for (int i = 0; i < 6; i++) {
        if (kvc_set_isa(isas[i]) != KVC_OK) continue; /* no attention runs while switching */
        n++;
        split_attention(isas[i], "h2o");
        split_attention(isas[i], "vase chunk=8 recent=16 scope=shared");
        split_attention(isas[i], "tova");
    }
    kvc_set_isa(NULL);
    printf("threads: dispatcher first use, %d concurrent caches, split attention on %d ISA(s): %s\n",
           N_WORKERS * 18, n, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
