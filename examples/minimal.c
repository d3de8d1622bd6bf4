/* minimal: the smallest complete use of libkvc in STORE mode.
 * Build against an installed copy with:  cc minimal.c $(pkg-config --cflags --libs kvc) */
#include <stdio.h>

#include <kvc.h>

int main(void) {
    enum { KV_HEADS = 2, Q_HEADS = 4, DIM = 8, CAPACITY = 16 };
    kvc_cache *cache;
    int rc = kvc_cache_create_spec(&cache, KV_HEADS, Q_HEADS, DIM, CAPACITY, KVC_DTYPE_F16, KVC_MODE_STORE,
                                   "h2o recent=4", NULL);
    if (rc) {
        fprintf(stderr, "kvc_cache_create_spec: %s\n", kvc_strerror(rc));
        return 1;
    }
    float k[KV_HEADS * DIM], v[KV_HEADS * DIM], q[Q_HEADS * DIM], out[Q_HEADS * DIM];
    for (int t = 0; t < 40; t++) {
        for (int i = 0; i < KV_HEADS * DIM; i++) k[i] = v[i] = (float)((t * 7 + i) % 11) / 11.0f;
        for (int i = 0; i < Q_HEADS * DIM; i++) q[i] = (float)((t + i) % 5) / 5.0f;
        if ((rc = kvc_cache_append(cache, t, k, v)) || (rc = kvc_cache_attend(cache, q, out))) {
            fprintf(stderr, "step %d: %s (%s)\n", t, kvc_strerror(rc), kvc_cache_last_error(cache));
            kvc_cache_destroy(cache);
            return 1;
        }
    }
    kvc_stats st;
    kvc_cache_stats(cache, &st);
    printf("libkvc %s: %u tokens resident, %llu evicted, out[0] = %.4f\n", kvc_version_string(),
           kvc_cache_len(cache), (unsigned long long)st.evictions, out[0]);
    kvc_cache_destroy(cache);
    return 0;
}
