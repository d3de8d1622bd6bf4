/* Test helpers: a snapshot of everything observable about a cache (options,
 * parameters, counters, slot maps, stored K/V rows), to prove that a failed
 * call left the cache as it was, and a consistency check of its maps. */
#ifndef KVC_TEST_SNAPSHOT_H
#define KVC_TEST_SNAPSHOT_H

#include <stddef.h>

#include "kvc.h"

typedef struct {
    uint32_t groups, cap, len, max_ev, n_rows, n_params;
    int64_t opt[9];
    double params[16];
    kvc_stats stats;
    int64_t *pos;  /* groups x cap */
    float *rows;   /* STORE: n_kv x len x 2 x head_dim, else NULL */
} kvt_snap;

/* Take a snapshot; `policy` (may be NULL) names the parameters to record. */
void kvt_snap_take(const kvc_cache *c, const kvc_policy *policy, uint32_t n_kv, uint32_t head_dim, kvt_snap *s);
void kvt_snap_free(kvt_snap *s);
/* 1 if equal, else 0 with a description of the first difference. */
int kvt_snap_equal(const kvt_snap *a, const kvt_snap *b, char *why, size_t n);

/* Slot maps consistent with len: per group, len residents with distinct
 * positions; STORE: dense in [0, len); empty slots -1. 1 if fine. */
int kvt_consistent(const kvc_cache *c, kvc_mode mode, char *why, size_t n);

#endif
