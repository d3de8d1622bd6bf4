/* Compaction plan (INDEX mode): after evictions, a group's residents are
 * scattered over its slots and no page of a paged engine ever empties. The
 * plan moves the residents past `len` into the holes below it, lowest hole
 * first, so the engine can copy those rows and return every page past the
 * residents to its pool. Sources and destinations are disjoint, so the moves
 * commute. The cache applies the plan to itself in the same call.
 *
 * With block > 1 eviction frees whole units, so the holes are whole units
 * and at most one unit (the one being filled, with the newest tokens) is
 * partly used. The plan then moves whole units, each resident keeping its
 * offset in the unit: moving single slots would mix tokens of different
 * ages in one unit, and a recent window split over two units can leave no
 * unit evictable. */
#include "internal.h"

static bool unit_used(const int64_t *pos, uint32_t u, uint32_t B) {
    for (uint32_t i = 0; i < B; i++)
        if (pos[u * B + i] >= 0) return true;
    return false;
}

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
    const uint32_t cap = c->cap, len = c->len, B = c->block;
    const size_t gi = (size_t)group * cap;
    int64_t *pos = c->pos + gi;
    /* the residents end in units [0, nu): slots [0, top), top = len when B = 1 */
    const uint32_t nu = (len + B - 1) / B, top = nu * B;
    /* pages an engine mapping pages on first write holds past the residents:
     * up to the highest slot used since the last compaction */
    uint64_t first_free = ((uint64_t)top + page - 1) / page, mapped = ((uint64_t)c->high[group] + page - 1) / page;
    uint32_t freed = mapped > first_free ? (uint32_t)(mapped - first_free) : 0;
    c->high[group] = top;
    uint32_t hole = 0, m = 0;
    uint64_t *free_bits = c->freemap + (size_t)group * c->words;
    for (uint32_t fu = nu; fu < cap / B; fu++) {
        if (!unit_used(pos, fu, B)) continue;
        /* an empty unit below nu exists for every used unit above it (at most one unit is partly used) */
        while (hole < fu && unit_used(pos, hole, B)) hole++;
        if (hole >= fu) break; /* unreachable while that holds; never move a unit upwards */
        const uint32_t tu = hole++;
        for (uint32_t i = 0; i < B; i++) {
            const uint32_t from = fu * B + i, to = tu * B + i;
            if (pos[from] < 0) continue;
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
    }
    *n_moves = m;
    if (freed_pages) *freed_pages = freed;
    return KVC_OK;
}
