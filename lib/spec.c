/* Spec strings: "key=value ..." options for command lines and FFI users.
 * Applied all-or-nothing: on any error the options are restored. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return KVC_ESYNTAX;
    *out = v;
    return KVC_OK;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return KVC_ESYNTAX;
    *out = v;
    return KVC_OK;
}

static int apply_one(kvc_cache *c, const char *key, const char *val) {
    kvc_option opt;
    if (strcmp(key, "scale") == 0) {
        double s;
        if (parse_double(val, &s)) return kvc__fail(c, KVC_ESYNTAX, "scale=%s is not a number", val);
        return kvc_cache_set_scale(c, (float)s);
    }
    if (kvc__option_by_name(key, &opt) == KVC_OK) {
        int64_t v;
        if (opt == KVC_OPT_SCOPE && strcmp(val, "head") == 0)
            v = KVC_SCOPE_HEAD;
        else if (opt == KVC_OPT_SCOPE && strcmp(val, "shared") == 0)
            v = KVC_SCOPE_SHARED;
        else if (parse_int(val, &v))
            return kvc__fail(c, KVC_ESYNTAX, "%s=%s is not an integer%s", key, val,
                             opt == KVC_OPT_SCOPE ? " (or head/shared)" : "");
        return kvc_cache_set(c, opt, v);
    }
    int i = kvc__param_index(c, key);
    if (i < 0)
        return kvc__fail(c, KVC_EUNKNOWN,
                         "unknown key '%s' for policy '%s': options are scope, sink, recent, chunk, block, seed, "
                         "query_window, scale, or the policy's parameters",
                         key, c->pol.name);
    const kvc_param *p = &c->pol.params[i];
    double v;
    if (p->choices) {
        for (int j = 0; p->choices[j]; j++)
            if (strcmp(val, p->choices[j]) == 0) return kvc_cache_set_param(c, key, (double)j);
    }
    if (parse_double(val, &v)) return kvc__fail(c, KVC_ESYNTAX, "%s=%s is not a number or a known choice", key, val);
    return kvc_cache_set_param(c, key, v);
}

int kvc_cache_apply_spec(kvc_cache *c, const char *spec) {
    if (!c) return KVC_EINVAL;
    if (!spec) return kvc__fail(c, KVC_EINVAL, "spec string is NULL");
    if (c->frozen) return kvc__fail(c, KVC_ESTATE, "spec applied after the first append");
    int64_t opt[KVC__N_OPTIONS];
    double params[KVC__MAX_PARAMS];
    float scale = c->scale;
    memcpy(opt, c->opt, sizeof opt);
    memcpy(params, c->params, sizeof params);
    int rc = KVC_OK;
    const char *p = spec;
    while (rc == KVC_OK) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',') p++;
        char tok[96];
        size_t n = (size_t)(p - start);
        if (n >= sizeof tok) {
            rc = kvc__fail(c, KVC_ESYNTAX, "spec item too long: '%.20s...'", start);
            break;
        }
        memcpy(tok, start, n);
        tok[n] = 0;
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1]) {
            rc = kvc__fail(c, KVC_ESYNTAX, "spec item '%s' is not key=value", tok);
            break;
        }
        *eq = 0;
        rc = apply_one(c, tok, eq + 1);
    }
    if (rc) {
        memcpy(c->opt, opt, sizeof opt);
        memcpy(c->params, params, sizeof params);
        c->scale = scale;
    }
    return rc;
}
