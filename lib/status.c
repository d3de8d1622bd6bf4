/* Status messages and version queries. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

const char *kvc_strerror(int status) {
    switch (status) {
#define KVC__STATUS_CASE(name, value, msg) \
    case value:                            \
        return msg;
        KVC_STATUS_LIST(KVC__STATUS_CASE)
#undef KVC__STATUS_CASE
    default:
        return "unknown status";
    }
}

unsigned kvc_version_number(void) { return KVC_VERSION_NUMBER; }
const char *kvc_version_string(void) { return KVC_VERSION_STRING; }

int kvc__vfail(kvc_cache *c, int status, const char *fmt, va_list ap) {
    if (c) vsnprintf(c->err, sizeof c->err, fmt, ap);
    return status;
}

int kvc__fail(kvc_cache *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kvc__vfail(c, status, fmt, ap);
    va_end(ap);
    return status;
}

int kvc__policy_status(int rc, int fallback) {
    switch (rc) {
#define KVC__STATUS_KNOWN(name, value, msg) case value:
        KVC_STATUS_LIST(KVC__STATUS_KNOWN)
#undef KVC__STATUS_KNOWN
        return rc < 0 ? rc : fallback;
    default:
        return fallback;
    }
}

const char *kvc_cache_last_error(const kvc_cache *c) { return c ? c->err : "no cache (NULL handle)"; }
