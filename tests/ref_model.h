/* Reference models of the eviction rules, written from the design and the
 * header's contract (not from the library): a plain list of resident tokens
 * per eviction group, scores in double, candidates recomputed from scratch at
 * every eviction. Slow and obvious on purpose; the property tests drive the
 * library and this model with the same trace and compare every decision. */
#ifndef KVC_REF_MODEL_H
#define KVC_REF_MODEL_H

#include <stdint.h>

#define REF_MAXKV 4
#define REF_MAXQ 8
#define REF_MAXD 16
#define REF_MAXCAP 256
#define REF_MAXG REF_MAXKV
#define REF_MAXW 16
#define REF_MAXSTEPS 1024 /* attention steps a trace may deliver (scissorhands' records) */

typedef enum {
    REF_WINDOW, REF_SINK, REF_RANDOM, REF_H2O, REF_TOVA, REF_KNORM, REF_VATP, REF_VASE,
    REF_KEYDIFF, REF_SCISSOR, REF_RKV, REF_KEYFORMER, REF_VASE_DKV, REF_SNAPKV,
    REF_DEFAULT /* a policy without a prefill slot: the core's default prefill, never evicts in decode */
} ref_rule;

/* Plausible wrong rules, to show that the checks can fail (ref_cfg::mutant). */
enum {
    REF_EXACT = 0,
    REF_MUT_KEYDIFF_CAND_ANCHOR,  /* keydiff: anchor over the candidates only */
    REF_MUT_SCISSOR_NO_WINDOW,    /* scissorhands: count over the whole history */
    REF_MUT_SCISSOR_RESIDENT_T,   /* scissorhands: threshold 1/(residents) instead of 1/t */
    REF_MUT_RKV_NO_EXEMPT,        /* rkv: no near-duplicate exemption */
    REF_MUT_RKV_MEAN_HEADS        /* rkv: mean over the GQA group's logits instead of max */
};

typedef struct {
    ref_rule rule;
    uint32_t n_kv, n_q, d, cap;
    int shared; /* KVC_SCOPE_SHARED: one group for all heads */
    int index;  /* KVC_MODE_INDEX: masses come from observe, by slot */
    uint32_t sink, recent, chunk, block;
    int lifetime;   /* h2o norm=lifetime */
    double reserve; /* vase: fraction of the capacity reserved by value range */
    uint32_t pool;  /* vase: width of the average pooling */
    uint32_t qwin;  /* vase, STORE mode: queries remembered */
    double scale;   /* attention logit scale */
    double lambda, threshold; /* rkv */
    uint32_t history;         /* scissorhands */
    int mutant;               /* REF_EXACT or a REF_MUT_* wrong rule */
    int64_t protect;   /* positions below are never evicted */
    uint32_t kernel;   /* snapkv: pooling width */
    int avgpool;       /* snapkv: 1 = average pooling, 0 = max pooling */
} ref_cfg;

typedef struct {
    int64_t pos;
    uint64_t seq;  /* insertion index */
    int32_t slot;  /* slot in the library's map (learnt from it, checked by the driver) */
    float k[REF_MAXKV * REF_MAXD], v[REF_MAXKV * REF_MAXD];
    double key_norm, value_l1, value_range; /* this group's view (mean over heads when shared) */
    double acc;   /* accumulated mass (h2o, vatp) */
    double steps; /* steps in which the group received mass (h2o lifetime) */
    double cur;   /* mass of the latest step (tova) */
    double since; /* mass since the group's last eviction (vase, rkv INDEX mode) */
    /* scissorhands: steps (group step numbers, from 1) in which the token's mass was
     * surely below 1/t, and those too close to 1/t to call in f32 (STORE) */
    uint32_t n_low, n_amb;
    uint16_t low[REF_MAXSTEPS], amb[REF_MAXSTEPS];
    double keep; /* scratch: keep-score of rules that look at all residents */
} ref_tok;

typedef struct {
    ref_cfg c;
    uint32_t groups;
    uint64_t appended;
    uint32_t n[REF_MAXG];
    ref_tok tok[REF_MAXG][REF_MAXCAP]; /* residents of each group, oldest first */
    double pend[REF_MAXG][REF_MAXCAP]; /* INDEX: mass observed by slot since the last reserve */
    uint32_t calls[REF_MAXG];
    float ring[REF_MAXW][REF_MAXQ * REF_MAXD]; /* STORE: recent queries */
    uint32_t ring_n, ring_head;
    uint32_t steps[REF_MAXG]; /* attention steps delivered to each group */
} ref_model;

/* Outcome of checking one eviction of one group against the rule. */
typedef struct {
    int ok;       /* the library's victims obey the rule */
    int exact;    /* ... and are exactly the model's own choice (no tolerance used) */
    int skipped;  /* a stochastic check could not be decided (ambiguous reservation) */
    char why[200];
} ref_verdict;

void ref_init(ref_model *m, const ref_cfg *c);
int ref_full(const ref_model *m);
/* Index of the resident with position `pos` in group g, or -1. */
int ref_find(const ref_model *m, uint32_t g, int64_t pos);
/* Candidate units of group g (unit id = seq / block), oldest first. */
uint32_t ref_candidates(const ref_model *m, uint32_t g, uint64_t *units);
/* Check the library's victim units for group g against the rule. `tol_rel`
 * is the relative score tolerance for near-ties (0: exact arithmetic). */
ref_verdict ref_check(const ref_model *m, uint32_t g, const uint64_t *victims, uint32_t n_victims, double tol_rel);
/* Remove the given units from group g. */
void ref_evict(ref_model *m, uint32_t g, const uint64_t *units, uint32_t n);
/* Add a token to every group; slots (INDEX) may be NULL. */
void ref_insert(ref_model *m, int64_t pos, const float *k, const float *v, const uint32_t *slots);
/* STORE mode: one attention step with queries q (n_q x d). */
void ref_attend(ref_model *m, const float *q);
/* INDEX mode: one observe call for group g. */
void ref_observe(ref_model *m, uint32_t g, const float *mass, uint32_t n);
/* One attention step of group g reaching the policy state: mass[i] for resident i. */
void ref_deliver(ref_model *m, uint32_t g, const double *mass);
/* INDEX mode: hand the averaged observations to the policy state (start of reserve). */
void ref_flush(ref_model *m);

/* VaSE pieces, exposed for the sampling tests: per candidate unit, the
 * sampling weight (window attention or observed mass) and its pooled value. */
void ref_vase_weights(const ref_model *m, uint32_t g, const uint64_t *units, uint32_t n, double *w);
void ref_pool(const double *w, uint32_t n, uint32_t pool, double *pooled);

/* Max (avgpool = 0) or zero-padded average pooling of width `kernel`:
 * out[i] pools in[i - kernel/2 .. i - kernel/2 + kernel - 1] within [0, n). */
void ref_pool_snap(const double *w, uint32_t n, uint32_t kernel, int avgpool, double *pooled);

/* Chi-square upper tail probability P(X >= x) for `df` degrees of freedom. */
double ref_chi2_sf(double x, double df);
/* Pearson chi-square of observed counts against probabilities p (cells with
 * p == 0 must be empty, else the statistic is infinite); returns the p-value. */
double ref_chi2_test(const uint64_t *counts, const double *p, uint32_t k, double *stat);

#endif
