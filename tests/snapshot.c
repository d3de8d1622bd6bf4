/* See snapshot.h. */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kvt_snap_take(const kvc_cache *c, const kvc_policy *policy, uint32_t n_kv, uint32_t head_dim, kvt_snap *s) {
    memset(s, 0, sizeof *s);
    s->groups = kvc_cache_groups(c);
    s->cap = kvc_cache_capacity(c);
    s->len = kvc_cache_len(c);
    s->max_ev = kvc_cache_max_evictions(c);
    for (int k = 0; k < 9; k++) kvc_cache_get(c, (kvc_option)k, &s->opt[k]);
    if (policy)
        for (uint32_t i = 0; i < policy->n_params && i < 16; i++, s->n_params++)
            kvc_cache_get_param(c, policy->params[i].name, &s->params[i]);
    kvc_cache_stats(c, &s->stats);
    s->pos = malloc(sizeof(int64_t) * s->groups * s->cap + 1);
    for (uint32_t g = 0; g < s->groups; g++) kvc_cache_positions(c, g, s->pos + (size_t)g * s->cap);
    if (kvc_cache_read(c, 0, 0, NULL, NULL) != KVC_EMODE && s->len) { /* STORE mode: record the rows */
        s->n_rows = n_kv * s->len;
        s->rows = malloc(sizeof(float) * s->n_rows * 2 * head_dim);
        for (uint32_t h = 0; h < n_kv; h++)
            for (uint32_t j = 0; j < s->len; j++) {
                float *r = s->rows + ((size_t)h * s->len + j) * 2 * head_dim;
                kvc_cache_read(c, h, j, r, r + head_dim);
            }
        s->n_rows *= 2 * head_dim; /* floats */
    }
}

void kvt_snap_free(kvt_snap *s) {
    free(s->pos);
    free(s->rows);
    s->pos = NULL;
    s->rows = NULL;
}

int kvt_snap_equal(const kvt_snap *a, const kvt_snap *b, char *why, size_t n) {
    if (a->groups != b->groups || a->cap != b->cap || a->len != b->len || a->max_ev != b->max_ev) {
        snprintf(why, n, "shape/len: groups %u/%u cap %u/%u len %u/%u", a->groups, b->groups, a->cap, b->cap, a->len,
                 b->len);
        return 0;
    }
    for (int k = 0; k < 9; k++)
        if (a->opt[k] != b->opt[k]) {
            snprintf(why, n, "option %d: %lld -> %lld", k, (long long)a->opt[k], (long long)b->opt[k]);
            return 0;
        }
    for (uint32_t i = 0; i < a->n_params; i++)
        if (memcmp(&a->params[i], &b->params[i], sizeof(double)) != 0) {
            snprintf(why, n, "parameter %u: %g -> %g", i, a->params[i], b->params[i]);
            return 0;
        }
    if (a->stats.appends != b->stats.appends || a->stats.evictions != b->stats.evictions ||
        a->stats.attends != b->stats.attends) {
        snprintf(why, n, "stats: appends %llu/%llu evictions %llu/%llu attends %llu/%llu",
                 (unsigned long long)a->stats.appends, (unsigned long long)b->stats.appends,
                 (unsigned long long)a->stats.evictions, (unsigned long long)b->stats.evictions,
                 (unsigned long long)a->stats.attends, (unsigned long long)b->stats.attends);
        return 0;
    }
    for (size_t i = 0; i < (size_t)a->groups * a->cap; i++)
        if (a->pos[i] != b->pos[i]) {
            snprintf(why, n, "slot %zu of group %zu: position %lld -> %lld", i % a->cap, i / a->cap,
                     (long long)a->pos[i], (long long)b->pos[i]);
            return 0;
        }
    if (a->n_rows != b->n_rows || (a->n_rows && memcmp(a->rows, b->rows, sizeof(float) * a->n_rows) != 0)) {
        snprintf(why, n, "stored K/V rows changed");
        return 0;
    }
    return 1;
}

int kvt_consistent(const kvc_cache *c, kvc_mode mode, char *why, size_t n) {
    uint32_t G = kvc_cache_groups(c), cap = kvc_cache_capacity(c), len = kvc_cache_len(c);
    int64_t *pos = malloc(sizeof(int64_t) * cap);
    int ok = 1;
    if (len > cap) {
        snprintf(why, n, "len %u > capacity %u", len, cap);
        ok = 0;
    }
    for (uint32_t g = 0; g < G && ok; g++) {
        kvc_cache_positions(c, g, pos);
        uint32_t count = 0;
        for (uint32_t s = 0; s < cap && ok; s++) {
            if (pos[s] < -1) {
                snprintf(why, n, "group %u slot %u holds %lld", g, s, (long long)pos[s]);
                ok = 0;
            }
            if (pos[s] < 0) continue;
            count++;
            if (mode == KVC_MODE_STORE && s >= len) {
                snprintf(why, n, "group %u: STORE slot %u >= len %u occupied", g, s, len);
                ok = 0;
            }
            for (uint32_t t = 0; t < s && ok; t++)
                if (pos[t] == pos[s]) {
                    snprintf(why, n, "group %u: position %lld in slots %u and %u", g, (long long)pos[s], t, s);
                    ok = 0;
                }
        }
        if (ok && count != len) {
            snprintf(why, n, "group %u: %u residents but len %u", g, count, len);
            ok = 0;
        }
    }
    free(pos);
    return ok;
}
