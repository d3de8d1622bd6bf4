/* Smoke tests: every built-in policy runs a decode loop in both modes. */
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

TEST(smoke_every_policy_store_and_index) {
    for (size_t p = 0; kvc_policy_at(p); p++) {
        const kvc_policy *pol = kvc_policy_at(p);
        for (int mode = 0; mode < 2; mode++) {
            kvc_cache *c;
            int rc = kvc_cache_create(&c, 2, 4, 8, 96, KVC_DTYPE_F32, (kvc_mode)mode, pol, NULL);
            REQUIRE(rc == KVC_OK);
            unsigned seed = 1;
            float k[16], v[16], q[32], out[32], mass[96];
            uint32_t slots[2];
            int64_t ev[2 * 64];
            int steps = 300;
            for (int t = 0; t < steps; t++) {
                for (int i = 0; i < 16; i++) k[i] = frand(&seed), v[i] = frand(&seed);
                for (int i = 0; i < 32; i++) q[i] = frand(&seed);
                if (mode == KVC_MODE_STORE) {
                    rc = kvc_cache_append(c, t, k, v);
                } else {
                    rc = kvc_cache_reserve(c, t, k, v, slots, ev);
                }
                if (pol == kvc_policy_full() && t >= 96) {
                    CHECK_EQ(rc, KVC_EFULL);
                    break;
                }
                CHECKF(rc == KVC_OK, "%s mode %d step %d: %s (%s)", pol->name, mode, t, kvc_strerror(rc),
                       kvc_cache_last_error(c));
                if (rc) break;
                if (mode == KVC_MODE_STORE) {
                    rc = kvc_cache_attend(c, q, out);
                    CHECK_EQ(rc, KVC_OK);
                } else {
                    for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
                        for (int i = 0; i < 96; i++) mass[i] = frand(&seed) + 0.5f;
                        CHECK_EQ(kvc_cache_observe(c, g, mass, 96), KVC_OK);
                    }
                }
                CHECK(kvc_cache_len(c) <= 96);
            }
            kvc_cache_destroy(c);
        }
    }
}
