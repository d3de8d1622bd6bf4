/* Compaction plan (INDEX mode): after evictions, a group's residents are
 * scattered over its slots and no page of a paged engine ever empties. The
 * plan moves the residents past `len` into the holes below it, lowest hole
 * first, so the engine can copy those rows and return every page past the
 * residents to its pool. Sources and destinations are disjoint, so the moves
 * commute. The cache applies the plan to itself in the same call. */
#include "internal.h"

int kvc_cache_compact(kvc_cache *c, uint32_t group, uint32_t page, kvc_move *moves, uint32_t *n_moves,
                      uint32_t *freed_pages) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_INDEX)
        return kvc__fail(c, KVC_EMODE, "compact needs an INDEX-mode cache; STORE mode keeps residents dense itself");
    if (!moves || !n_moves) return kvc__fail(c, KVC_EINVAL, "compact: moves and n_moves must not be NULL");
    if (page == 0) return kvc__fail(c, KVC_EINVAL, "compact: page must be at least 1 slot");
    if (group >= kvc_cache_groups(c))
        return kvc__fail(c, KVC_ERANGE, "compact: group %u of %u", group, kvc_cache_groups(c));
    *n_moves = 0;
    if (freed_pages) *freed_pages = 0;
    if (!c->frozen) return KVC_OK;
    const uint32_t cap = c->cap, len = c->len;
    const size_t gi = (size_t)group * cap;
    int64_t *pos = c->pos + gi;
    /* pages an engine mapping pages on first write holds past the residents:
     * up to the highest slot used since the last compaction */
    uint64_t first_free = ((uint64_t)len + page - 1) / page, mapped = ((uint64_t)c->high[group] + page - 1) / page;
    uint32_t freed = mapped > first_free ? (uint32_t)(mapped - first_free) : 0;
    c->high[group] = len;
    uint32_t hole = 0, m = 0;
    uint64_t *free_bits = c->freemap + (size_t)group * c->words;
    for (uint32_t from = len; from < cap; from++) {
        if (pos[from] < 0) continue;
        while (pos[hole] >= 0) hole++; /* a hole below len exists for every resident above it */
        uint32_t to = hole++;
        pos[to] = pos[from];
        c->seq[gi + to] = c->seq[gi + from];
        c->obs[gi + to] = c->obs[gi + from]; /* observations pending for the next reserve */
        pos[from] = -1;
        c->seq[gi + from] = 0;
        c->obs[gi + from] = 0.0f;
        free_bits[to / 64] &= ~(1ull << (to % 64));
        free_bits[from / 64] |= 1ull << (from % 64);
        if (c->pol.on_move) c->pol.on_move(c->pstate, group, from, to);
        moves[m].from = from;
        moves[m].to = to;
        m++;
    }
    *n_moves = m;
    if (freed_pages) *freed_pages = freed;
    return KVC_OK;
}
