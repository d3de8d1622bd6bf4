/* toy.h: stand-ins for a model's projections, shared by the integration
 * examples so each of them shows only how an engine wires libkvc. */
#ifndef TOY_H
#define TOY_H

#include <stddef.h>
#include <stdint.h>

/* Fill x[0..n) with deterministic values in [-1, 1) derived from `seed`
 * (splitmix64): what a layer's K, V or Q projection would produce. */
static inline void toy_vec(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/* A seed per (layer, position, which tensor). */
static inline uint64_t toy_seed(uint32_t layer, int64_t pos, uint32_t which) {
    return ((uint64_t)layer << 48) ^ ((uint64_t)pos << 8) ^ which;
}

#endif
