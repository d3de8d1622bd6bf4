/* Allocation through a cache's allocator, and overflow-checked size arithmetic. */
#include "internal.h"

#include <stdlib.h>

bool kvc__mul(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

bool kvc__add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}

void *kvc__alloc(const kvc_allocator *al, size_t size) {
    size_t rounded;
    if (size == 0) size = 1;
    if (!kvc__add(size, KVC__ALIGN - 1, &rounded)) return NULL;
    rounded &= ~(size_t)(KVC__ALIGN - 1);
    if (al->alloc) return al->alloc(al->opaque, rounded, KVC__ALIGN);
    return aligned_alloc(KVC__ALIGN, rounded);
}

void kvc__free(const kvc_allocator *al, void *p) {
    if (!p) return;
    if (al->free)
        al->free(al->opaque, p);
    else
        free(p);
}
