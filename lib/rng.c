/* xoshiro256** seeded through splitmix64: fast, 256-bit state, and the same
 * sequence on every platform, which makes stochastic policies reproducible. */
#include "internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kvc__rng_seed(struct kvc_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kvc_rng_next(kvc_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double kvc_rng_uniform(kvc_rng *rng) { return (double)(kvc_rng_next(rng) >> 11) * 0x1.0p-53; }

uint32_t kvc_rng_below(kvc_rng *rng, uint32_t bound) {
    /* Lemire's multiply-and-reject: unbiased, one multiply in the common case. */
    if (bound == 0) return 0;
    uint64_t m = (uint64_t)(uint32_t)(kvc_rng_next(rng) >> 32) * bound;
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(kvc_rng_next(rng) >> 32) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
