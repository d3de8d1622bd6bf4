/* The model, and where each prediction comes from.
 *
 * Tokens are the addresses 0..n-1. A uniform random permutation pi of them is
 * the chain: z0 = 1 (a fixed start, the second token), z_{t+1} = pi(z_t), and
 * the k-hop answer is z_k. Pointer doubling takes T = ceil(log2 k) stages;
 * stage t (t = 1..T) sees only its cache C_t of s addresses.
 *
 * Which token each stage needs: stage t runs with its chain at z_{t-1}, which
 * points at z_t; it must hold z_t, whose content (pi(z_t) = z_{t+1}) tells
 * stage t+1 what it needs. The start z0 comes with the question and is never
 * needed from a cache. Success is
 *     E = { z_t in C_t for every t = 1..T }.
 *
 * Fact used below: the cycle of pi through z0 has a length L uniform on 1..n
 * (P(L = l) = prod_{j=1..l-1} (n-j)/(n-j+1) * 1/(n-l+1) = 1/n: l-1 steps
 * avoid z0, then one returns to it). Given L = l, (z_1..z_{l-1}) is a uniform
 * sequence of distinct tokens other than z0 (relabel by any permutation that
 * fixes z0), and z_l = z0. So z_1..z_T are min(l, T) distinct tokens, z0
 * among them exactly when l <= T.
 *
 * fresh   C_t drawn uniformly and independently at every stage, independent
 *         of pi: P(z_t in C_t | pi) = s/n whatever z_t is, so (s/n)^T.
 * shared  one uniform C for all stages, independent of pi. Given L = l, E
 *         says that m = min(l, T) given distinct tokens lie in C, which has
 *         probability C(n-m, s-m)/C(n, s) = prod_{i<m} (s-i)/(n-i); averaging
 *         over L gives (1/n) sum_{l=1..n} prod_{i<min(l,T)} (s-i)/(n-i).
 * fixed set without z0 (what a window keeps): given z_1..z_t in C (distinct,
 *         none is z0), pi(z_t) is uniform over the n-t addresses not yet
 *         taken as images (z_1..z_t), s-t of which are in C:
 *         prod_{i<T} (s-i)/(n-i).
 * fixed set with z0 (sinks hold the first tokens): given L = l, the tokens
 *         other than z0 among z_1..z_T are m = min(l-1, T) uniform distinct
 *         tokens other than z0, all to be found among the s-1 other cached:
 *         (1/n) sum_{l=1..n} prod_{i<min(l-1,T)} (s-1-i)/(n-1-i).
 *         A uniform C holds z0 with probability s/n, so shared must equal
 *         s/n * with + (1 - s/n) * without: two derivations, one identity,
 *         which the lab checks before it runs.
 * adaptive C_1 is any s-set chosen without reading pi; z_1 = pi(z0) is
 *         uniform, so P(z_1 in C_1) = s/n. Afterwards C_{t+1} = pi(C_t) (read
 *         the cached tokens, keep what they point to: still s tokens, pi is a
 *         bijection), so z_t in C_t implies z_{t+1} in C_{t+1}: s/n exactly.
 * guess   when E fails the answer is a uniform guess among n, independent of
 *         everything, right with probability 1/n: p + (1-p)/n.
 */
#include "theory.h"

#include <math.h>

double pc_falling(uint32_t n, uint32_t s, uint32_t m) {
    double p = 1.0;
    for (uint32_t i = 0; i < m; i++) {
        if (i >= s) return 0.0;
        p *= (double)(s - i) / (double)(n - i);
    }
    return p;
}

double pc_fresh(uint32_t n, uint32_t s, uint32_t T) { return pow((double)s / n, T); }

double pc_shared(uint32_t n, uint32_t s, uint32_t T) {
    double sum = 0.0;
    for (uint32_t l = 1; l <= n; l++) sum += pc_falling(n, s, l < T ? l : T);
    return sum / n;
}

double pc_fixed_without_start(uint32_t n, uint32_t s, uint32_t T) { return pc_falling(n, s, T); }

double pc_fixed_with_start(uint32_t n, uint32_t s, uint32_t T) {
    double sum = 0.0;
    for (uint32_t l = 1; l <= n; l++) sum += pc_falling(n - 1, s - 1, l - 1 < T ? l - 1 : T);
    return sum / n;
}

double pc_adaptive(uint32_t n, uint32_t s) { return (double)s / n; }

double pc_with_guess(double p, uint32_t n) { return p + (1.0 - p) / n; }

double pc_z_for_level(double level) {
    /* solve erfc(z/sqrt 2) = 1 - level by bisection: monotone, 100 halvings is plenty */
    double lo = 0.0, hi = 40.0, target = 1.0 - level;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (erfc(mid / sqrt(2.0)) > target)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

void pc_wilson(uint64_t x, uint64_t N, double z, double *lo, double *hi) {
    if (N == 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double p = (double)x / N, z2 = z * z, d = 1.0 + z2 / N;
    double centre = (p + z2 / (2.0 * N)) / d;
    double half = z * sqrt(p * (1.0 - p) / N + z2 / (4.0 * N * (double)N)) / d;
    *lo = x == 0 ? 0.0 : centre - half;
    *hi = x == N ? 1.0 : centre + half;
}
