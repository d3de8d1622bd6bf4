/* Closed forms for k-hop pointer chasing under a bounded cache (Wang,
 * "How Much Cache Does Reasoning Need?", arXiv 2604.17935), and the Wilson
 * score interval the lab compares them with. Derivations are in theory.c. */
#ifndef PC_THEORY_H
#define PC_THEORY_H

#include <stdint.h>

/* prod_{i<m} (s-i)/(n-i): the chance that m given distinct tokens all lie in
 * a uniform random s-subset of n tokens (0 when m > s). */
double pc_falling(uint32_t n, uint32_t s, uint32_t m);
/* A fresh uniform random cache at every stage: (s/n)^T. */
double pc_fresh(uint32_t n, uint32_t s, uint32_t T);
/* One uniform random cache shared by all stages:
 * (1/n) * sum_{l=1..n} prod_{i<min(l,T)} (s-i)/(n-i). */
double pc_shared(uint32_t n, uint32_t s, uint32_t T);
/* One fixed cache for all stages that does not hold z0 (a window). */
double pc_fixed_without_start(uint32_t n, uint32_t s, uint32_t T);
/* One fixed cache for all stages that holds z0 (sinks include it). */
double pc_fixed_with_start(uint32_t n, uint32_t s, uint32_t T);
/* An adaptive, locality-respecting controller: s/n, whatever T. */
double pc_adaptive(uint32_t n, uint32_t s);
/* Success when a lost chain ends in a uniform guess among n answers. */
double pc_with_guess(double p, uint32_t n);

/* Two-sided normal quantile for a confidence level in (0,1), e.g. 0.95 -> 1.96. */
double pc_z_for_level(double level);
/* Wilson score interval for x successes in N trials at normal quantile z. */
void pc_wilson(uint64_t x, uint64_t N, double z, double *lo, double *hi);

#endif
