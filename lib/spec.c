/* Spec strings: "policy key=value ..." for command lines and FFI users, and
 * the name lookups they need. Applied all-or-nothing: on any error the
 * options are restored. Every message a spec can produce is written here. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
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

/* Option keys and choices come from the one table, KVC_OPTION_LIST. */
typedef struct {
    const char *key, *choices;
} option_info;

static const option_info options[KVC__N_OPTIONS] = {
#define KVC__OPTION_INFO(name, value, key, min, max, choices, doc) [name] = {key, choices},
    KVC_OPTION_LIST(KVC__OPTION_INFO)
#undef KVC__OPTION_INFO
};

static int option_by_name(const char *name, kvc_option *key) {
    for (int i = 0; i < KVC__N_OPTIONS; i++)
        if (strcmp(name, options[i].key) == 0) {
            *key = (kvc_option)i;
            return KVC_OK;
        }
    return KVC_EUNKNOWN;
}

/* Index of `val` among the '|'-separated `choices`, or -1. */
static int choice_index(const char *choices, const char *val) {
    size_t n = strlen(val);
    for (int i = 0; choices && *choices; i++) {
        const char *end = strchr(choices, '|');
        size_t len = end ? (size_t)(end - choices) : strlen(choices);
        if (len == n && memcmp(choices, val, n) == 0) return i;
        choices += len + (end != NULL);
    }
    return -1;
}

/* "a/b/c" from "a|b|c", for messages. */
static const char *list_choices(const char *choices, char *buf, size_t size) {
    size_t n = 0;
    for (; choices[n] && n + 1 < size; n++) buf[n] = choices[n] == '|' ? '/' : choices[n];
    buf[n] = 0;
    return buf;
}

/* "scope, sink, ..." : every option key, for messages. */
static const char *list_keys(char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < KVC__N_OPTIONS; i++)
        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s, ", options[i].key);
    return buf;
}

static int apply_one(kvc_cache *c, const char *key, const char *val) {
    kvc_option opt;
    if (strcmp(key, "scale") == 0) {
        double s;
        if (parse_double(val, &s)) return kvc__fail(c, KVC_ESYNTAX, "scale=%s is not a number", val);
        return kvc_cache_set_scale(c, (float)s);
    }
    if (option_by_name(key, &opt) == KVC_OK) {
        int64_t v;
        const char *choices = options[opt].choices;
        int ci = choice_index(choices, val);
        char buf[64];
        if (ci >= 0)
            v = ci;
        else if (parse_int(val, &v))
            return kvc__fail(c, KVC_ESYNTAX, "%s=%s is not an integer%s%s%s", key, val, choices ? " (or " : "",
                             choices ? list_choices(choices, buf, sizeof buf) : "", choices ? ")" : "");
        return kvc_cache_set(c, opt, v);
    }
    int i = kvc__param_index(c, key);
    if (i < 0) {
        char keys[128];
        return kvc__fail(c, KVC_EUNKNOWN, "unknown key '%s' for policy '%s': options are %sscale, or the policy's parameters",
                         key, c->pol.name, list_keys(keys, sizeof keys));
    }
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

int kvc_cache_create_spec(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                          uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const char *spec,
                          const kvc_allocator *alloc) {
    if (!out) return KVC_EINVAL;
    *out = NULL;
    if (!spec) return KVC_EINVAL;
    while (*spec == ' ' || *spec == '\t') spec++;
    char name[32];
    size_t n = 0;
    while (spec[n] && spec[n] != ' ' && spec[n] != '\t') n++;
    if (n == 0) return KVC_ESYNTAX;
    if (n >= sizeof name || memchr(spec, '=', n)) return KVC_ESYNTAX;
    memcpy(name, spec, n);
    name[n] = 0;
    const kvc_policy *p = kvc_policy_by_name(name);
    if (!p) return KVC_EUNKNOWN;
    kvc_cache *c;
    int rc = kvc_cache_create(&c, n_kv_heads, n_q_heads, head_dim, capacity, dtype, mode, p, alloc);
    if (rc) return rc;
    rc = kvc_cache_apply_spec(c, spec + n);
    if (rc) {
        kvc_cache_destroy(c);
        return rc;
    }
    *out = c;
    return KVC_OK;
}
