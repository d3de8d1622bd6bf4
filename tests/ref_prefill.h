/* Reference model of prefill compression, written from kvc.h's contract (not
 * from the library): window scores in double straight from the definition,
 * protection recomputed per token, each policy's prefill rule as a keep
 * value, and a check that the library's kept set obeys it. Then the kept set
 * seeds a ref_model so that decoding can be checked as usual. */
#ifndef KVC_REF_PREFILL_H
#define KVC_REF_PREFILL_H

#include "ref_model.h"

#define REF_MAXPROMPT 1024

typedef struct {
    int64_t pos;          /* position of token 0 */
    uint32_t n, w;        /* tokens, observation window */
    const float *k, *v;   /* n x n_kv x d, token-major */
    const float *q;       /* STORE: w x n_q x d */
} ref_prompt;

/* STORE: the window's attention over the prompt for group g: for every query
 * head of the group and each of the w window queries, the softmax over keys
 * 0 .. n-w+r (causal), in double; averaged over all those rows. */
void ref_prefill_scores(const ref_cfg *c, uint32_t g, const ref_prompt *p, double *score);
/* Is prompt token i protected (sink, protect, the last max(recent, w))? */
int ref_prefill_protected(const ref_cfg *c, const ref_prompt *p, uint32_t i);
/* Check group g's kept prompt indices (increasing, n_kept of them) against
 * the rule, given the scores (NULL: none). tol_rel: relative tolerance on
 * keep values for near-ties. */
ref_verdict ref_prefill_check(const ref_cfg *c, uint32_t g, const ref_prompt *p, const double *score,
                              const uint32_t *kept, uint32_t n_kept, double tol_rel);
/* Load the kept tokens into m as the library holds them after the prefill:
 * slot s of group g = kept[g][s], insertion index = prompt index, the scores
 * (when given) delivered as one attention step, the window's queries as the
 * most recent ones. */
void ref_prefill_load(ref_model *m, const ref_prompt *p, const uint32_t *const *kept, uint32_t n_kept,
                      const double *const *score);

#endif
