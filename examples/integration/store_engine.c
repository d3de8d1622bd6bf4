/* store_engine: a CPU engine in STORE mode. libkvc owns K/V: one cache per
 * layer. The prompt goes in with one kvc_cache_prefill() per layer, which
 * compresses it to the capacity (SnapKV-style observation window); then per
 * token and layer the engine appends the new K/V and attends, the kv heads
 * split across threads (kvc_cache_attend_heads) and the policy fed once
 * afterwards (kvc_cache_attend_finish).
 * A twin set of caches runs the single-threaded kvc_cache_attend on the same
 * inputs: outputs and resident positions must be identical (exit 1 if not). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <kvc.h>

#include "toy.h"

enum { LAYERS = 4, KV_HEADS = 4, Q_HEADS = 8, DIM = 16, CAPACITY = 64, PROMPT = 120, WINDOW = 16, TOKENS = 200,
       THREADS = 2 };

static int report(int rc, const kvc_cache *cache, const char *what) {
    if (rc) fprintf(stderr, "%s: %s (%s)\n", what, kvc_strerror(rc), kvc_cache_last_error(cache));
    return rc;
}

typedef struct {
    kvc_cache *cache;
    const float *q;
    float *out;
    uint32_t kv_begin, kv_end;
    int rc;
} attend_job;

static void *attend_range(void *arg) {
    attend_job *job = arg;
    job->rc = kvc_cache_attend_heads(job->cache, job->q, job->out, job->kv_begin, job->kv_end);
    return NULL;
}

/* One layer's attention with its kv heads split over THREADS threads (a real
 * engine keeps a worker pool; creating threads here keeps the example short). */
static int attend_threaded(kvc_cache *cache, const float *q, float *out) {
    pthread_t tid[THREADS];
    attend_job job[THREADS];
    int started[THREADS], rc = KVC_OK;
    for (uint32_t t = 0; t < THREADS; t++) {
        job[t] = (attend_job){cache, q, out, t * KV_HEADS / THREADS, (t + 1) * KV_HEADS / THREADS, KVC_OK};
        started[t] = pthread_create(&tid[t], NULL, attend_range, &job[t]) == 0;
        if (!started[t]) attend_range(&job[t]); /* no thread: do this range here */
    }
    for (uint32_t t = 0; t < THREADS; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        if (job[t].rc && !rc) rc = job[t].rc;
    }
    if (rc) return rc;
    /* alone, after all ranges: hands this step's softmax weights to the policy */
    return kvc_cache_attend_finish(cache, q);
}

int main(void) {
    kvc_cache *threaded[LAYERS] = {0}, *serial[LAYERS] = {0};
    int rc = KVC_OK;
    for (int l = 0; l < LAYERS && !rc; l++) {
        rc = kvc_cache_create_spec(&threaded[l], KV_HEADS, Q_HEADS, DIM, CAPACITY, KVC_DTYPE_F16, KVC_MODE_STORE,
                                   "h2o sink=4 recent=16 prefill_max=120", NULL);
        if (!rc)
            rc = kvc_cache_create_spec(&serial[l], KV_HEADS, Q_HEADS, DIM, CAPACITY, KVC_DTYPE_F16,
                                       KVC_MODE_STORE, "h2o sink=4 recent=16 prefill_max=120", NULL);
        /* allocate everything now: the decode loop below never allocates */
        if (!rc) rc = report(kvc_cache_prepare(threaded[l]), threaded[l], "prepare");
        if (!rc) rc = report(kvc_cache_prepare(serial[l]), serial[l], "prepare");
    }
    if (rc) fprintf(stderr, "create: %s\n", kvc_strerror(rc));

    float k[KV_HEADS * DIM], v[KV_HEADS * DIM], q[Q_HEADS * DIM];
    float qt[Q_HEADS * DIM], qs[Q_HEADS * DIM], xt[Q_HEADS * DIM], xs[Q_HEADS * DIM];
    int mismatch = 0;
    /* the prompt, in one call per layer: K and V of every prompt token (token after
     * token) and the queries of its last WINDOW tokens, from the engine's own prefill pass */
    static float pk[PROMPT * KV_HEADS * DIM], pv[PROMPT * KV_HEADS * DIM], pq[WINDOW * Q_HEADS * DIM];
    for (uint32_t l = 0; l < LAYERS && !rc; l++) {
        for (int64_t i = 0; i < PROMPT; i++) {
            toy_vec(pk + i * KV_HEADS * DIM, KV_HEADS * DIM, toy_seed(l, i, 0));
            toy_vec(pv + i * KV_HEADS * DIM, KV_HEADS * DIM, toy_seed(l, i, 1));
        }
        for (int64_t r = 0; r < WINDOW; r++)
            toy_vec(pq + r * Q_HEADS * DIM, Q_HEADS * DIM, toy_seed(l, PROMPT - WINDOW + r, 2));
        if ((rc = report(kvc_cache_prefill(threaded[l], 0, PROMPT, pk, pv, pq, WINDOW), threaded[l], "prefill")) ||
            (rc = report(kvc_cache_prefill(serial[l], 0, PROMPT, pk, pv, pq, WINDOW), serial[l], "prefill")))
            break;
    }
    for (int64_t pos = PROMPT; pos < TOKENS && !rc && !mismatch; pos++) {
        memset(xt, 0, sizeof xt); /* the "residual stream" entering layer 0 */
        memset(xs, 0, sizeof xs);
        for (uint32_t l = 0; l < LAYERS && !rc; l++) {
            toy_vec(k, KV_HEADS * DIM, toy_seed(l, pos, 0));
            toy_vec(v, KV_HEADS * DIM, toy_seed(l, pos, 1));
            toy_vec(q, Q_HEADS * DIM, toy_seed(l, pos, 2));
            for (int i = 0; i < Q_HEADS * DIM; i++) qt[i] = q[i] + xt[i], qs[i] = q[i] + xs[i];

            if ((rc = report(kvc_cache_append(threaded[l], pos, k, v), threaded[l], "append")) ||
                (rc = report(attend_threaded(threaded[l], qt, xt), threaded[l], "attend (threads)")))
                break;
            if ((rc = report(kvc_cache_append(serial[l], pos, k, v), serial[l], "append")) ||
                (rc = report(kvc_cache_attend(serial[l], qs, xs), serial[l], "attend")))
                break;
            if (memcmp(xt, xs, sizeof xt)) {
                fprintf(stderr, "position %lld layer %u: threaded and serial outputs differ\n", (long long)pos, l);
                mismatch = 1;
                break;
            }
        }
    }

    /* the same decisions, head by head, layer by layer */
    int64_t pt[CAPACITY], ps[CAPACITY];
    for (uint32_t l = 0; l < LAYERS && !rc && !mismatch; l++)
        for (uint32_t g = 0; g < kvc_cache_groups(serial[l]); g++) {
            kvc_cache_positions(threaded[l], g, pt);
            kvc_cache_positions(serial[l], g, ps);
            if (memcmp(pt, ps, sizeof pt)) {
                fprintf(stderr, "layer %u head %u: resident positions differ\n", l, g);
                mismatch = 1;
            }
        }

    if (!rc && !mismatch) {
        kvc_stats st;
        kvc_cache_stats(threaded[0], &st);
        printf("store_engine: %d layers x %d kv heads, capacity %d, prompt of %d (window %d) then %d tokens, kernel %s, "
               "%d threads\n",
               LAYERS, KV_HEADS, CAPACITY, PROMPT, WINDOW, TOKENS - PROMPT, kvc_active_isa(), THREADS);
        printf("layer 0: %u resident per head, %llu evictions, %llu attention steps\n", kvc_cache_len(threaded[0]),
               (unsigned long long)st.evictions, (unsigned long long)st.attends);
        kvc_cache_positions(threaded[0], 0, pt);
        printf("layer 0 head 0 keeps:");
        for (int64_t p = 0; p < TOKENS; p++) /* in position order (slots are not) */
            for (int s = 0; s < CAPACITY; s++)
                if (pt[s] == p) printf(" %lld", (long long)p);
        printf("\nthreaded and serial runs agree\n");
    }
    for (int l = 0; l < LAYERS; l++) {
        kvc_cache_destroy(threaded[l]);
        kvc_cache_destroy(serial[l]);
    }
    return rc || mismatch ? 1 : 0;
}
