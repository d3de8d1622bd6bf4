/* Spec strings: "policy key=value ..." for command lines and FFI users, and
 * the name lookups they need. Applied all-or-nothing: on any error the
 * options are restored. Every message a spec can produce is written here. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
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

/* Every error a spec string can produce goes through here (c may be NULL
 * when no cache exists yet, e.g. an unknown policy name in create_spec). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int spec_error(kvc_cache *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kvc__vfail(c, status, fmt, ap);
    va_end(ap);
    return status;
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

/* "a, b, c" from "a|b|c", for messages. */
static const char *list_choices(const char *choices, char *buf, size_t size) {
    size_t n = 0;
    for (; *choices && n + 2 < size; choices++) {
        if (*choices == '|') buf[n++] = ',', buf[n++] = ' ';
        else buf[n++] = *choices;
    }
    buf[n] = 0;
    return buf;
}

/* "a, b, c" from a parameter's NULL-terminated choices. */
static const char *list_param_choices(const char *const *choices, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int j = 0; choices[j]; j++)
        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", j ? ", " : "", choices[j]);
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

/* Keys already given in this spec: options, then scale, then the policy's parameters. */
enum { SEEN_SCALE = KVC__N_OPTIONS, SEEN_PARAM0 };

static int apply_one(kvc_cache *c, const char *key, const char *val, uint32_t *seen) {
    kvc_option opt;
    int bit;
    int i = -1;
    if (strcmp(key, "scale") == 0)
        bit = SEEN_SCALE;
    else if (option_by_name(key, &opt) == KVC_OK)
        bit = (int)opt;
    else if ((i = kvc__param_index(c, key)) >= 0)
        bit = SEEN_PARAM0 + i;
    else {
        char keys[128];
        return spec_error(c, KVC_EUNKNOWN,
                          "unknown key '%s' for policy '%s': options are %sscale, or the policy's parameters", key,
                          c->pol.name, list_keys(keys, sizeof keys));
    }
    if (*seen & (1u << bit))
        return spec_error(c, KVC_ESYNTAX, "'%s' is given twice in the spec: give each key once", key);
    *seen |= 1u << bit;

    char buf[96];
    if (bit == SEEN_SCALE) {
        double s;
        if (parse_double(val, &s)) return spec_error(c, KVC_ESYNTAX, "scale=%s is not a number", val);
        return kvc_cache_set_scale(c, (float)s);
    }
    if (i < 0) {
        int64_t v;
        const char *choices = options[opt].choices;
        int ci = choice_index(choices, val);
        if (ci >= 0)
            v = ci;
        else if (parse_int(val, &v)) {
            if (choices)
                return spec_error(c, KVC_EUNKNOWN, "%s=%s: unknown choice; choices are %s", key, val,
                                  list_choices(choices, buf, sizeof buf));
            return spec_error(c, KVC_ESYNTAX, "%s=%s is not an integer", key, val);
        }
        return kvc_cache_set(c, opt, v);
    }
    const kvc_param *p = &c->pol.params[i];
    double v;
    if (p->choices) {
        for (int j = 0; p->choices[j]; j++)
            if (strcmp(val, p->choices[j]) == 0) return kvc_cache_set_param(c, key, (double)j);
    }
    if (parse_double(val, &v)) {
        if (p->choices)
            return spec_error(c, KVC_EUNKNOWN, "%s=%s: unknown choice for policy '%s'; choices are %s", key, val,
                              c->pol.name, list_param_choices(p->choices, buf, sizeof buf));
        return spec_error(c, KVC_ESYNTAX, "%s=%s is not a number", key, val);
    }
    return kvc_cache_set_param(c, key, v);
}

int kvc_cache_apply_spec(kvc_cache *c, const char *spec) {
    if (!c) return KVC_EINVAL;
    if (!spec) return spec_error(c, KVC_EINVAL, "spec string is NULL");
    if (c->frozen) return spec_error(c, KVC_ESTATE, "spec applied after the first append");
    uint32_t seen = 0;
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
            rc = spec_error(c, KVC_ESYNTAX, "spec item too long: '%.20s...'", start);
            break;
        }
        memcpy(tok, start, n);
        tok[n] = 0;
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1]) {
            rc = spec_error(c, KVC_ESYNTAX, "spec item '%s' is not key=value", tok);
            break;
        }
        *eq = 0;
        rc = apply_one(c, tok, eq + 1, &seen);
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
    /* no cache yet: these messages have nowhere to go (spec_error(NULL, ...)) */
    if (n == 0) return spec_error(NULL, KVC_ESYNTAX, "empty spec: it starts with a policy name");
    if (n >= sizeof name || memchr(spec, '=', n))
        return spec_error(NULL, KVC_ESYNTAX, "spec '%.40s' does not start with a policy name", spec);
    memcpy(name, spec, n);
    name[n] = 0;
    const kvc_policy *p = kvc_policy_by_name(name);
    if (!p) return spec_error(NULL, KVC_EUNKNOWN, "unknown policy '%s'", name);
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
