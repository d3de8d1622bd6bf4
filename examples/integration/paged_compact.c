/* paged_compact: a paged engine (vLLM style) that evicts single tokens and
 * still returns memory. K/V live in pages of PAGE tokens from a pool; a block
 * table maps each block of the sequence's slots to a page. Token-level
 * eviction leaves holes all over the pages, so no page ever empties by
 * itself: after each eviction round the engine asks libkvc for a compaction
 * plan, copies the rows it names, and gives every page past the residents
 * back to the pool. The prompt goes in with one kvc_cache_prefill_index()
 * call: the engine scores it with its own window attention, libkvc says
 * which tokens stay, and the pages past them go back too.
 * A twin cache fed the same tokens and attention never compacts: it makes the
 * same decisions, and shows how many pages the engine would hold without the
 * plan. Checks (exit 1 on failure): the pages hold exactly what
 * kvc_cache_positions() says, no page leaks, both caches evict the same
 * positions, and freed_pages counts the pages really returned. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <kvc.h>

#include "toy.h"

enum { KV_HEADS = 2, Q_HEADS = 4, DIM = 16, PAGE = 8, CAP = 96, CHUNK = 32, PROMPT = 300, WINDOW = 16,
       DECODE = 400, POOL = 64 };
#define ROW (KV_HEADS * DIM)
#define MAX_BLOCKS ((PROMPT + PAGE - 1) / PAGE) /* the prompt, before compression */
#define PAGE_BYTES (PAGE * ROW * 2 * sizeof(float))

static float page_k[POOL][PAGE][ROW], page_v[POOL][PAGE][ROW];
static int64_t page_pos[POOL][PAGE]; /* -1 = empty */
static int free_pages[POOL], n_free;
static int block_table[MAX_BLOCKS]; /* block b = slots [b*PAGE, (b+1)*PAGE) -> page, or -1 */

static int take_page(void) { return n_free ? free_pages[--n_free] : -1; }
static void give_page(int p) { free_pages[n_free++] = p; }
static int pages_in_use(void) { return POOL - n_free; }

static int write_slot(uint32_t slot, int64_t pos, const float *k, const float *v) {
    int b = (int)(slot / PAGE);
    if (block_table[b] < 0 && (block_table[b] = take_page()) < 0) return -1;
    int p = block_table[b];
    memcpy(page_k[p][slot % PAGE], k, sizeof(float) * ROW);
    memcpy(page_v[p][slot % PAGE], v, sizeof(float) * ROW);
    page_pos[p][slot % PAGE] = pos;
    return 0;
}

static void copy_slot(uint32_t from, uint32_t to) {
    int pf = block_table[from / PAGE];
    write_slot(to, page_pos[pf][from % PAGE], page_k[pf][from % PAGE], page_v[pf][from % PAGE]);
    page_pos[pf][from % PAGE] = -1;
}

/* Return the pages of blocks [first, MAX_BLOCKS) to the pool; returns how many. */
static int release_from(uint32_t first) {
    int n = 0;
    for (uint32_t b = first; b < MAX_BLOCKS; b++)
        if (block_table[b] >= 0) {
            for (int t = 0; t < PAGE; t++) page_pos[block_table[b]][t] = -1;
            give_page(block_table[b]);
            block_table[b] = -1;
            n++;
        }
    return n;
}

/* Softmax of q over slots [0, n) through the block table, masked to written
 * slots; mass[slot] is the weight averaged over the query heads. */
static void attend(const float *q, uint32_t n, float *mass) {
    float w[MAX_BLOCKS * PAGE];
    memset(mass, 0, sizeof(float) * n);
    for (uint32_t h = 0; h < Q_HEADS; h++) {
        uint32_t off = h / (Q_HEADS / KV_HEADS) * DIM;
        float mx = -INFINITY, sum = 0.0f;
        for (uint32_t s = 0; s < n; s++) {
            int p = block_table[s / PAGE];
            w[s] = -INFINITY;
            if (p < 0 || page_pos[p][s % PAGE] < 0) continue;
            float dot = 0.0f;
            for (uint32_t d = 0; d < DIM; d++) dot += q[h * DIM + d] * page_k[p][s % PAGE][off + d];
            w[s] = dot / sqrtf((float)DIM);
            mx = w[s] > mx ? w[s] : mx;
        }
        for (uint32_t s = 0; s < n; s++) sum += (w[s] = w[s] == -INFINITY ? 0.0f : expf(w[s] - mx));
        for (uint32_t s = 0; s < n; s++) mass[s] += w[s] / sum / Q_HEADS;
    }
}

static int report(int rc, const kvc_cache *c, const char *what) {
    if (rc) fprintf(stderr, "%s: %s (%s)\n", what, kvc_strerror(rc), kvc_cache_last_error(c));
    return rc;
}

/* The pages hold exactly what libkvc says is resident. */
static int agrees(const kvc_cache *c) {
    int64_t pos[CAP];
    kvc_cache_positions(c, 0, pos);
    for (uint32_t s = 0; s < CAP; s++) {
        int p = block_table[s / PAGE];
        if (pos[s] != (p < 0 ? -1 : page_pos[p][s % PAGE])) return 0;
    }
    return 1;
}

/* Pages a cache's slot map needs: blocks holding at least one resident. */
static int pages_needed(const kvc_cache *c) {
    int64_t pos[CAP];
    int n = 0;
    kvc_cache_positions(c, 0, pos);
    for (uint32_t b = 0; b * PAGE < CAP; b++) {
        int any = 0;
        for (uint32_t s = b * PAGE; s < (b + 1) * PAGE && s < CAP; s++) any |= pos[s] >= 0;
        n += any;
    }
    return n;
}

int main(void) {
    kvc_cache *cache = NULL, *twin = NULL;
    /* scope=shared: one block table for all heads; block 1: single tokens are evicted */
    const char *spec = "h2o scope=shared sink=4 recent=16 chunk=32 prefill_max=300";
    int rc = kvc_cache_create_spec(&cache, KV_HEADS, Q_HEADS, DIM, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, spec, NULL);
    if (!rc) rc = kvc_cache_create_spec(&twin, KV_HEADS, Q_HEADS, DIM, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, spec, NULL);
    if (!rc) rc = kvc_cache_prepare(cache);
    if (!rc) rc = kvc_cache_prepare(twin);
    if (rc) {
        fprintf(stderr, "setup: %s (%s)\n", kvc_strerror(rc), cache ? kvc_cache_last_error(cache) : "");
        kvc_cache_destroy(cache);
        kvc_cache_destroy(twin);
        return 1;
    }
    for (int p = 0; p < POOL; p++) {
        give_page(POOL - 1 - p);
        for (int t = 0; t < PAGE; t++) page_pos[p][t] = -1;
    }
    for (int b = 0; b < MAX_BLOCKS; b++) block_table[b] = -1;
    int bad = 0;

    /* 1. prefill: the prompt's K/V go into pages as the forward pass makes them */
    static float pk[PROMPT][ROW], pv[PROMPT][ROW], wq[WINDOW][Q_HEADS * DIM], scores[PROMPT];
    for (uint32_t i = 0; i < PROMPT; i++) {
        toy_vec(pk[i], ROW, toy_seed(0, i, 0));
        toy_vec(pv[i], ROW, toy_seed(0, i, 1));
        if (write_slot(i, i, pk[i], pv[i])) bad = 1;
    }
    int prompt_pages = pages_in_use();
    /* the engine's window attention: each of the last WINDOW queries over the
     * tokens up to itself (causal), averaged: one score per token */
    float mass[MAX_BLOCKS * PAGE];
    memset(scores, 0, sizeof scores);
    for (uint32_t r = 0; r < WINDOW; r++) {
        toy_vec(wq[r], Q_HEADS * DIM, toy_seed(0, PROMPT - WINDOW + r, 2));
        attend(wq[r], PROMPT - WINDOW + r + 1, mass);
        for (uint32_t i = 0; i < PROMPT - WINDOW + r + 1; i++) scores[i] += mass[i] / WINDOW;
    }
    /* one call: which prompt tokens stay, and in which slot */
    uint32_t keep[CAP];
    if ((rc = report(kvc_cache_prefill_index(cache, 0, PROMPT, NULL, NULL, scores, WINDOW, keep), cache, "prefill")) ||
        (rc = report(kvc_cache_prefill_index(twin, 0, PROMPT, NULL, NULL, scores, WINDOW, keep), twin, "prefill")))
        goto out;
    /* keep[] is increasing, so copying slot keep[s] to slot s in order never overwrites a source */
    uint32_t len = kvc_cache_len(cache);
    for (uint32_t s = 0; s < len; s++)
        if (keep[s] != s) copy_slot(keep[s], s);
    for (uint32_t s = len; s < (len + PAGE - 1) / PAGE * PAGE; s++) page_pos[block_table[s / PAGE]][s % PAGE] = -1;
    int prefill_freed = release_from((len + PAGE - 1) / PAGE);
    if (!agrees(cache)) bad = 1, fprintf(stderr, "after prefill: pages and libkvc disagree\n");
    int after_prefill = pages_in_use();

    /* 2. decode: reserve, free the evicted, write, compact after an eviction round, attend, observe */
    int64_t evicted[CHUNK], twin_ev[CHUNK];
    long pages_sum = 0, twin_sum = 0;
    int pages_max = 0, twin_max = 0, rounds = 0, decode_freed = 0, moves_total = 0;
    float k[ROW], v[ROW], q[Q_HEADS * DIM];
    for (int64_t pos = PROMPT; pos < PROMPT + DECODE && !bad; pos++) {
        uint32_t slot, twin_slot;
        toy_vec(k, ROW, toy_seed(0, pos, 0));
        toy_vec(v, ROW, toy_seed(0, pos, 1));
        if ((rc = report(kvc_cache_reserve(cache, pos, NULL, NULL, &slot, evicted), cache, "reserve")) ||
            (rc = report(kvc_cache_reserve(twin, pos, NULL, NULL, &twin_slot, twin_ev), twin, "reserve")))
            break;
        int n_ev = 0;
        for (; n_ev < CHUNK && evicted[n_ev] >= 0; n_ev++) {
            int found = 0;
            for (int e = 0; e < CHUNK && twin_ev[e] >= 0; e++) found |= twin_ev[e] == evicted[n_ev];
            if (!found) bad = 1, fprintf(stderr, "position %lld: the twin kept %lld\n", (long long)pos,
                                         (long long)evicted[n_ev]);
            for (uint32_t s = 0; s < CAP; s++) { /* the evicted token's row is dead */
                int p = block_table[s / PAGE];
                if (p >= 0 && page_pos[p][s % PAGE] == evicted[n_ev]) page_pos[p][s % PAGE] = -1;
            }
        }
        if (write_slot(slot, pos, k, v)) bad = 1, fprintf(stderr, "page pool exhausted\n");
        if (n_ev) {
            /* an eviction round: move the tail into the holes, return the pages past the residents */
            kvc_move moves[CAP];
            uint32_t n_moves, freed;
            if ((rc = report(kvc_cache_compact(cache, 0, PAGE, moves, &n_moves, &freed), cache, "compact"))) break;
            for (uint32_t i = 0; i < n_moves; i++) copy_slot(moves[i].from, moves[i].to);
            int returned = release_from((kvc_cache_len(cache) + PAGE - 1) / PAGE);
            if ((uint32_t)returned != freed) bad = 1, fprintf(stderr, "freed_pages %u, returned %d\n", freed, returned);
            decode_freed += returned;
            moves_total += (int)n_moves;
            rounds++;
        }
        int used = pages_in_use(), twin_used = pages_needed(twin);
        pages_sum += used, twin_sum += twin_used;
        pages_max = used > pages_max ? used : pages_max;
        twin_max = twin_used > twin_max ? twin_used : twin_max;
        if (!agrees(cache)) bad = 1, fprintf(stderr, "position %lld: pages and libkvc disagree\n", (long long)pos);

        toy_vec(q, Q_HEADS * DIM, toy_seed(0, pos, 2));
        attend(q, CAP, mass);
        if ((rc = report(kvc_cache_observe(cache, 0, mass, CAP), cache, "observe"))) break;
        /* the twin sees the same attention per token, at its own slots */
        int64_t cpos[CAP], tpos[CAP];
        float tmass[CAP];
        kvc_cache_positions(cache, 0, cpos);
        kvc_cache_positions(twin, 0, tpos);
        for (uint32_t s = 0; s < CAP; s++) {
            tmass[s] = 0.0f;
            for (uint32_t u = 0; u < CAP && tpos[s] >= 0; u++)
                if (cpos[u] == tpos[s]) tmass[s] = mass[u];
        }
        if ((rc = report(kvc_cache_observe(twin, 0, tmass, CAP), twin, "observe"))) break;
    }
    if (pages_in_use() + n_free != POOL) bad = 1;

    if (!rc && !bad) {
        printf("paged_compact: pages of %d tokens (%.1f KiB of K+V each), capacity %d slots, chunk %d, h2o\n", PAGE,
               PAGE_BYTES / 1024.0, CAP, CHUNK);
        printf("%-44s %12s %12s\n", "", "pages in use", "K+V memory");
        printf("%-44s %12d %9.1f KiB\n", "prompt of 300 tokens written", prompt_pages,
               prompt_pages * PAGE_BYTES / 1024.0);
        printf("%-44s %12d %9.1f KiB\n", "after prefill_index (96 kept) + gather", after_prefill,
               after_prefill * PAGE_BYTES / 1024.0);
        printf("%-44s %5.1f / %4d %9.1f KiB\n", "decode 400 tokens, compaction: mean / max", (double)pages_sum / DECODE,
               pages_max, (double)pages_sum / DECODE * PAGE_BYTES / 1024.0);
        printf("%-44s %5.1f / %4d %9.1f KiB\n", "decode 400 tokens, no compaction: mean / max",
               (double)twin_sum / DECODE, twin_max, (double)twin_sum / DECODE * PAGE_BYTES / 1024.0);
        printf("pages returned to the pool: %d by the prefill, %d in %d eviction rounds (%d rows moved): %.1f KiB\n",
               prefill_freed, decode_freed, rounds, moves_total, (prefill_freed + decode_freed) * PAGE_BYTES / 1024.0);
        printf("both caches evicted the same positions; pages agree with libkvc\n");
    }
out:
    kvc_cache_destroy(cache);
    kvc_cache_destroy(twin);
    return rc || bad ? 1 : 0;
}
