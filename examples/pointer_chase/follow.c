/* follow: keep what the cached tokens point to.
 *
 * A policy written as any user would, with nothing but kvc.h. It reads token
 * content only through the statistics the cache computes when a token is
 * inserted, so the lab gives every token (head_dim 1):
 *   key   = its address x                     -> kvc_token.key_norm = x
 *   value = 1 + the address it points to      -> kvc_token.value_l1 = pi(x) + 1
 * and each stage ends with a query token whose value is 0 (it points nowhere).
 *
 * Rule. When a query token arrives, the stage is over: read the pointers of
 * the tokens resident in this cache at that moment (and of no other token),
 * then, during the next stage, prefer the tokens whose address is one of
 * them. Scores: 2 = named by a pointer read at the last query, 1 = any other
 * token of the current stage, 0 = tokens of earlier stages and queries. Ties
 * go to the oldest (the core's rule), so before the first query, having read
 * nothing, it keeps the most recent tokens like a window.
 *
 * Why this is locality-respecting: what it knows of a token lives in that
 * token's slot record, which the next token to take the slot overwrites, so
 * at a query it can consult only residents. Evictions are not reported in
 * INDEX mode; with chunk = 1 and block = 1 the slot an eviction frees is the
 * one the arriving token takes, so the records are exactly the residents
 * (STORE mode compacts slots and reports it through on_move). init refuses
 * other chunk or block values instead of guessing.
 */
#include "follow.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t addr;   /* the token's address (its key) */
    uint32_t ptr;    /* where it points (its value - 1) */
    uint32_t stage;  /* queries seen by this group when it arrived */
    uint8_t used;    /* slot has held a token */
    uint8_t query;   /* it is a query token */
    uint8_t wanted;  /* named by a pointer read at the previous query */
} slot_rec;

typedef struct {
    uint32_t stage;  /* queries seen so far */
    uint32_t n_read; /* pointers read at the last query */
} group_rec;

typedef struct {
    uint32_t n_groups, cap;
    group_rec *groups; /* n_groups */
    slot_rec *slots;   /* n_groups x cap */
    uint32_t *reads;   /* n_groups x cap, sorted per group */
} follow_state;

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

static size_t state_size(const kvc_policy_ctx *ctx) {
    size_t gc = (size_t)ctx->n_groups * ctx->capacity;
    return align8(sizeof(follow_state)) + align8(ctx->n_groups * sizeof(group_rec)) + align8(gc * sizeof(slot_rec)) +
           gc * sizeof(uint32_t);
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    if (ctx->chunk != 1 || ctx->block != 1) return KVC_EINVAL; /* see the comment at the top */
    follow_state *st = state;
    char *p = (char *)state + align8(sizeof *st);
    size_t gc = (size_t)ctx->n_groups * ctx->capacity;
    st->n_groups = ctx->n_groups;
    st->cap = ctx->capacity;
    st->groups = (group_rec *)(void *)p;
    p += align8(ctx->n_groups * sizeof(group_rec));
    st->slots = (slot_rec *)(void *)p;
    p += align8(gc * sizeof(slot_rec));
    st->reads = (uint32_t *)(void *)p;
    /* the cache hands over zeroed memory: every slot unused, every group at stage 0 */
    return KVC_OK;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int was_read(const follow_state *st, uint32_t g, uint32_t addr) {
    const uint32_t *r = st->reads + (size_t)g * st->cap;
    return bsearch(&addr, r, st->groups[g].n_read, sizeof *r, cmp_u32) != NULL;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    follow_state *st = state;
    group_rec *gr = &st->groups[g];
    slot_rec *rec = &st->slots[(size_t)g * st->cap + slot];
    rec->used = 1;
    rec->stage = gr->stage;
    if (tok->value_l1 == 0.0f) {
        /* a query: read the pointers of the current stage's residents (the new
         * query already overwrote the record of the token it displaced) */
        rec->query = 1;
        rec->wanted = 0;
        uint32_t *r = st->reads + (size_t)g * st->cap, n = 0;
        const slot_rec *s = st->slots + (size_t)g * st->cap;
        for (uint32_t j = 0; j < st->cap; j++)
            if (j != slot && s[j].used && !s[j].query && s[j].stage == gr->stage) r[n++] = s[j].ptr;
        qsort(r, n, sizeof *r, cmp_u32);
        gr->n_read = n;
        gr->stage++;
        return;
    }
    rec->query = 0;
    rec->addr = (uint32_t)tok->key_norm;
    rec->ptr = (uint32_t)tok->value_l1 - 1;
    rec->wanted = (uint8_t)(gr->stage > 0 && was_read(st, g, rec->addr));
}

static void score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    const follow_state *st = state;
    uint32_t stage = st->groups[g].stage;
    for (uint32_t i = 0; i < n; i++) {
        const slot_rec *rec = &st->slots[(size_t)g * st->cap + slots[i]];
        keep[i] = (rec->query || rec->stage != stage) ? 0.0f : rec->wanted ? 2.0f : 1.0f;
    }
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    follow_state *st = state;
    slot_rec *s = st->slots + (size_t)g * st->cap;
    s[to] = s[from];
    memset(&s[from], 0, sizeof s[from]);
}

static const kvc_policy follow = {
    .abi_version = KVC_POLICY_ABI,
    .struct_size = sizeof(kvc_policy),
    .name = "follow",
    .needs = KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .score = score,
    .on_move = on_move,
};

const kvc_policy *pc_policy_follow(void) { return &follow; }
