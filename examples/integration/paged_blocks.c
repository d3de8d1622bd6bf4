/* paged_blocks: a paged engine (vLLM style, e.g. on a GPU). K/V live in
 * fixed-size pages of PAGE tokens taken from a pool; a block table maps each
 * block of the sequence's slots to a page. libkvc runs in INDEX mode with
 * block=PAGE: it evicts whole aligned blocks (scored by the sum of their
 * tokens' scores), CHUNK blocks at a time, and the positions it evicts tell
 * the engine which pages to give back to the pool.
 * Checks (exit 1 on failure): evictions always empty whole pages, no page
 * leaks, and the engine's pages hold exactly what kvc_cache_positions says. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <kvc.h>

#include "toy.h"

enum { KV_HEADS = 2, Q_HEADS = 4, DIM = 16, PAGE = 8, BLOCKS = 8, CHUNK = 2, POOL = 12, TOKENS = 300 };
#define CAP (PAGE * BLOCKS)
#define ROW (KV_HEADS * DIM)

/* the page pool: shared by every sequence of a real engine */
static float page_k[POOL][PAGE][ROW], page_v[POOL][PAGE][ROW];
static int64_t page_pos[POOL][PAGE]; /* -1 = empty */
static int free_pages[POOL], n_free;
/* this sequence's block table: block b = slots [b*PAGE, (b+1)*PAGE) -> page, or -1 */
static int block_table[BLOCKS];

/* Attention through the block table, masked to written slots; mass[slot] is
 * each slot's softmax weight averaged over the query heads. */
static void attend_pages(const float *q, float *out, float *mass) {
    const uint32_t ratio = Q_HEADS / KV_HEADS;
    float w[CAP];
    memset(mass, 0, CAP * sizeof *mass);
    for (uint32_t h = 0; h < Q_HEADS; h++) {
        const uint32_t off = (h / ratio) * DIM;
        float mx = -INFINITY, sum = 0.0f;
        for (uint32_t s = 0; s < CAP; s++) {
            int p = block_table[s / PAGE];
            w[s] = -INFINITY;
            if (p < 0 || page_pos[p][s % PAGE] < 0) continue;
            float dot = 0.0f;
            for (uint32_t d = 0; d < DIM; d++) dot += q[h * DIM + d] * page_k[p][s % PAGE][off + d];
            w[s] = dot / sqrtf((float)DIM);
            mx = w[s] > mx ? w[s] : mx;
        }
        for (uint32_t s = 0; s < CAP; s++) sum += (w[s] = w[s] == -INFINITY ? 0.0f : expf(w[s] - mx));
        memset(out + h * DIM, 0, DIM * sizeof *out);
        for (uint32_t s = 0; s < CAP; s++) {
            if (w[s] == 0.0f) continue;
            const float *v = page_v[block_table[s / PAGE]][s % PAGE];
            mass[s] += w[s] / sum / Q_HEADS;
            for (uint32_t d = 0; d < DIM; d++) out[h * DIM + d] += w[s] / sum * v[off + d];
        }
    }
}

/* Remove one evicted position from the pages; return the block that held it, or -1. */
static int forget(int64_t pos) {
    for (int b = 0; b < BLOCKS; b++)
        if (block_table[b] >= 0)
            for (int t = 0; t < PAGE; t++)
                if (page_pos[block_table[b]][t] == pos) {
                    page_pos[block_table[b]][t] = -1;
                    return b;
                }
    return -1;
}

static int page_empty(int p) {
    for (int t = 0; t < PAGE; t++)
        if (page_pos[p][t] >= 0) return 0;
    return 1;
}

int main(void) {
    kvc_cache *cache;
    int rc = kvc_cache_create(&cache, KV_HEADS, Q_HEADS, DIM, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_h2o(),
                              NULL);
    /* scope=shared: one block table for all heads; block: the page size */
    if (!rc) rc = kvc_cache_apply_spec(cache, "scope=shared sink=4 recent=16");
    if (!rc) rc = kvc_cache_set(cache, KVC_OPT_BLOCK, PAGE);
    if (!rc) rc = kvc_cache_set(cache, KVC_OPT_CHUNK, CHUNK);
    if (!rc) rc = kvc_cache_prepare(cache);
    if (rc) {
        fprintf(stderr, "setup: %s (%s)\n", kvc_strerror(rc), cache ? kvc_cache_last_error(cache) : "");
        kvc_cache_destroy(cache);
        return 1;
    }
    for (int p = 0; p < POOL; p++) {
        free_pages[n_free++] = POOL - 1 - p;
        for (int t = 0; t < PAGE; t++) page_pos[p][t] = -1;
    }
    for (int b = 0; b < BLOCKS; b++) block_table[b] = -1;

    float k[ROW], v[ROW], q[Q_HEADS * DIM], out[Q_HEADS * DIM], mass[CAP];
    int64_t evicted[CHUNK * PAGE], lib_pos[CAP];
    int bad = 0, evictions = 0, pages_freed = 0;
    for (int64_t pos = 0; pos < TOKENS && !rc && !bad; pos++) {
        toy_vec(k, ROW, toy_seed(0, pos, 0));
        toy_vec(v, ROW, toy_seed(0, pos, 1));
        uint32_t slot;
        rc = kvc_cache_reserve(cache, pos, k, v, &slot, evicted);
        if (rc) {
            fprintf(stderr, "reserve: %s (%s)\n", kvc_strerror(rc), kvc_cache_last_error(cache));
            break;
        }
        /* evicted positions -> emptied pages -> back to the pool */
        int touched[BLOCKS] = {0};
        for (int e = 0; e < CHUNK * PAGE && evicted[e] >= 0; e++, evictions++) {
            int b = forget(evicted[e]);
            if (b < 0) {
                fprintf(stderr, "evicted position %lld is in no page\n", (long long)evicted[e]);
                bad = 1;
            } else {
                touched[b] = 1;
            }
        }
        for (int b = 0; b < BLOCKS; b++) {
            if (!touched[b]) continue;
            if (!page_empty(block_table[b])) { /* block eviction never leaves a partial page */
                fprintf(stderr, "block %d: eviction left its page partly full\n", b);
                bad = 1;
            }
            free_pages[n_free++] = block_table[b];
            block_table[b] = -1;
            pages_freed++;
        }
        /* the slot's block gets a page on first use */
        int b = (int)(slot / PAGE);
        if (block_table[b] < 0) {
            if (n_free == 0) {
                fprintf(stderr, "page pool exhausted\n");
                bad = 1;
                break;
            }
            block_table[b] = free_pages[--n_free];
        }
        int p = block_table[b];
        memcpy(page_k[p][slot % PAGE], k, sizeof k);
        memcpy(page_v[p][slot % PAGE], v, sizeof v);
        page_pos[p][slot % PAGE] = pos;

        toy_vec(q, Q_HEADS * DIM, toy_seed(0, pos, 2));
        attend_pages(q, out, mass);
        if ((rc = kvc_cache_observe(cache, 0, mass, CAP))) break;

        /* the pages hold exactly what libkvc says is resident, and no page leaks */
        kvc_cache_positions(cache, 0, lib_pos);
        int used = 0;
        for (int s = 0; s < CAP; s++) {
            int pg = block_table[s / PAGE];
            if (lib_pos[s] != (pg < 0 ? -1 : page_pos[pg][s % PAGE])) bad = 1;
        }
        for (int bb = 0; bb < BLOCKS; bb++) used += block_table[bb] >= 0;
        if (used + n_free != POOL) bad = 1;
        if (bad) fprintf(stderr, "position %lld: block table and libkvc disagree\n", (long long)pos);
    }

    if (!rc && !bad) {
        int used = 0;
        for (int bb = 0; bb < BLOCKS; bb++) used += block_table[bb] >= 0;
        printf("paged_blocks: pages of %d tokens, %d blocks per sequence, chunk %d, %d tokens\n", PAGE, BLOCKS, CHUNK,
               TOKENS);
        printf("%d positions evicted in %d whole pages; %u tokens resident in %d pages, %d pages free\n", evictions,
               pages_freed, kvc_cache_len(cache), used, n_free);
        printf("block table (block: page, first position):");
        for (int bb = 0; bb < BLOCKS; bb++) {
            int pg = block_table[bb];
            if (pg < 0)
                printf(" %d: -", bb);
            else
                printf(" %d: %d @%lld", bb, pg, (long long)page_pos[pg][0]);
        }
        printf("\npages agree with libkvc\n");
    }
    kvc_cache_destroy(cache);
    return rc || bad ? 1 : 0;
}
