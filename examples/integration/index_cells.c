/* index_cells: an engine that owns its K/V in a cell array (llama.cpp style)
 * and asks libkvc only which cell each new token goes to. A cell holds every
 * kv head of one token in every layer, so each sequence gets one INDEX-mode
 * cache with scope=shared; sequence s owns cells [s*CAP, (s+1)*CAP).
 * Per token: one kvc_cache_reserve (cell to write, position evicted), then for
 * every layer the engine's own attention and one kvc_cache_observe of each
 * cell's mass; libkvc averages the layers into one step at the next reserve.
 * The engine's cell map must always equal kvc_cache_positions (exit 1 if not). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <kvc.h>

#include "toy.h"

enum { LAYERS = 3, KV_HEADS = 2, Q_HEADS = 4, DIM = 16, SEQS = 2, CAP = 32, TOKENS = 100, MAX_EV = 8 };
#define ROW (KV_HEADS * DIM)

static float cell_k[LAYERS][SEQS * CAP][ROW], cell_v[LAYERS][SEQS * CAP][ROW];
static int64_t cell_pos[SEQS * CAP]; /* position held by each cell, -1 = empty */

/* The engine's attention for one layer of one sequence, over its non-empty
 * cells only. mass[slot] receives each cell's softmax weight, averaged over
 * the query heads (what a shared-scope cache expects). */
static void attend_cells(uint32_t layer, uint32_t seq, const float *q, float *out, float *mass) {
    const uint32_t base = seq * CAP, ratio = Q_HEADS / KV_HEADS;
    float w[CAP];
    memset(mass, 0, CAP * sizeof *mass);
    for (uint32_t h = 0; h < Q_HEADS; h++) {
        const float *qh = q + h * DIM;
        const uint32_t off = (h / ratio) * DIM; /* this query head's kv head inside a cell */
        float mx = -INFINITY, sum = 0.0f;
        for (uint32_t s = 0; s < CAP; s++) {
            if (cell_pos[base + s] < 0) continue; /* empty cell: masked */
            float dot = 0.0f;
            for (uint32_t d = 0; d < DIM; d++) dot += qh[d] * cell_k[layer][base + s][off + d];
            w[s] = dot / sqrtf((float)DIM);
            mx = w[s] > mx ? w[s] : mx;
        }
        for (uint32_t s = 0; s < CAP; s++) {
            w[s] = cell_pos[base + s] < 0 ? 0.0f : expf(w[s] - mx);
            sum += w[s];
        }
        memset(out + h * DIM, 0, DIM * sizeof *out);
        for (uint32_t s = 0; s < CAP; s++) {
            w[s] /= sum;
            mass[s] += w[s] / Q_HEADS;
            for (uint32_t d = 0; d < DIM; d++) out[h * DIM + d] += w[s] * cell_v[layer][base + s][off + d];
        }
    }
}

static int report(int rc, const kvc_cache *cache, const char *what) {
    if (rc) fprintf(stderr, "%s: %s (%s)\n", what, kvc_strerror(rc), kvc_cache_last_error(cache));
    return rc;
}

int main(void) {
    /* each sequence may use its own policy; both attention-driven here */
    const char *spec[SEQS] = {"tova sink=2", "h2o scope=shared recent=8 norm=lifetime"};
    kvc_cache *seq_cache[SEQS] = {0};
    int rc = KVC_OK, bad = 0;
    for (int s = 0; s < SEQS && !rc; s++) {
        rc = kvc_cache_create_spec(&seq_cache[s], KV_HEADS, Q_HEADS, DIM, CAP, KVC_DTYPE_F32, KVC_MODE_INDEX,
                                   spec[s], NULL);
        if (rc) fprintf(stderr, "create '%s': %s\n", spec[s], kvc_strerror(rc));
        else if (kvc_cache_groups(seq_cache[s]) != 1 || kvc_cache_max_evictions(seq_cache[s]) > MAX_EV) bad = 1;
    }
    for (int c = 0; c < SEQS * CAP; c++) cell_pos[c] = -1;

    float q[Q_HEADS * DIM], x[Q_HEADS * DIM], mass[CAP];
    int64_t evicted[MAX_EV], lib_pos[CAP];
    for (int64_t pos = 0; pos < TOKENS && !rc && !bad; pos++) {
        for (uint32_t seq = 0; seq < SEQS && !rc && !bad; seq++) {
            kvc_cache *cache = seq_cache[seq];
            const uint32_t base = seq * CAP;
            uint32_t slot;
            /* 1. which cell? k/v may be NULL: these policies need no key/value stats */
            if ((rc = report(kvc_cache_reserve(cache, pos, NULL, NULL, &slot, evicted), cache, "reserve"))) break;
            /* 2. free the cells of the evicted positions (-1 pads the list) */
            for (uint32_t e = 0; e < kvc_cache_max_evictions(cache) && evicted[e] >= 0; e++)
                for (uint32_t s = 0; s < CAP; s++)
                    if (cell_pos[base + s] == evicted[e]) cell_pos[base + s] = -1;
            if (cell_pos[base + slot] != -1) {
                fprintf(stderr, "reserve gave cell %u, still holding position %lld\n", base + slot,
                        (long long)cell_pos[base + slot]);
                bad = 1;
                break;
            }
            /* 3. write the token's K/V into that cell, in every layer */
            cell_pos[base + slot] = pos;
            for (uint32_t l = 0; l < LAYERS; l++) {
                toy_vec(cell_k[l][base + slot], ROW, toy_seed(l, pos, 0) ^ seq);
                toy_vec(cell_v[l][base + slot], ROW, toy_seed(l, pos, 1) ^ seq);
            }
            /* 4. layer by layer: the engine attends, libkvc observes */
            memset(x, 0, sizeof x);
            for (uint32_t l = 0; l < LAYERS && !rc; l++) {
                toy_vec(q, Q_HEADS * DIM, toy_seed(l, pos, 2) ^ seq);
                for (int i = 0; i < Q_HEADS * DIM; i++) q[i] += x[i];
                attend_cells(l, seq, q, x, mass);
                rc = report(kvc_cache_observe(cache, 0, mass, CAP), cache, "observe");
            }
            /* the engine's cell map and libkvc's slot map never disagree */
            kvc_cache_positions(cache, 0, lib_pos);
            if (memcmp(lib_pos, cell_pos + base, sizeof lib_pos)) {
                fprintf(stderr, "sequence %u at position %lld: cell map differs from libkvc\n", seq, (long long)pos);
                bad = 1;
            }
        }
    }

    if (!rc && !bad) {
        printf("index_cells: %d sequences x %d cells, %d layers observed per token, %d tokens\n", SEQS, CAP, LAYERS,
               TOKENS);
        for (uint32_t seq = 0; seq < SEQS; seq++) {
            kvc_stats st;
            kvc_cache_stats(seq_cache[seq], &st);
            printf("sequence %u (%s): %u cells used, %llu evictions, %llu observed steps; keeps", seq, spec[seq],
                   kvc_cache_len(seq_cache[seq]), (unsigned long long)st.evictions, (unsigned long long)st.attends);
            for (int64_t p = 0; p < TOKENS; p++)
                for (uint32_t s = 0; s < CAP; s++)
                    if (cell_pos[seq * CAP + s] == p) printf(" %lld", (long long)p);
            printf("\n");
        }
        printf("cell maps agree with libkvc\n");
    }
    for (int s = 0; s < SEQS; s++) kvc_cache_destroy(seq_cache[s]);
    return rc || bad ? 1 : 0;
}
