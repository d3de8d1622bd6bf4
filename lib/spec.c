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

/* Edit distance with adjacent transpositions (optimal string alignment),
 * capped: names are short, so two rows of 33 suffice; longer words never match. */
static unsigned edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 32 || m > 32) return 99;
    unsigned d[33][33];
    for (size_t i = 0; i <= n; i++) d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            unsigned best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

/* Keep `cand` as the suggestion for `word` if it is the closest so far and close enough
 * (one edit per three letters, at least one). */
static void suggest(const char *word, const char *cand, const char **best, unsigned *best_d) {
    unsigned d = edit_distance(word, cand), limit = (unsigned)strlen(word) / 3;
    if (d <= (limit ? limit : 1) && d < *best_d) *best = cand, *best_d = d;
}

/* " (did you mean 'x'?)" for an unknown key, from the options and the policy's parameters. */
static const char *key_hint(const kvc_cache *c, const char *key, char *buf, size_t size) {
    const char *best = NULL;
    unsigned d = 99;
    for (int i = 0; i < KVC__N_OPTIONS; i++) suggest(key, options[i].key, &best, &d);
    suggest(key, "scale", &best, &d);
    for (uint32_t i = 0; i < c->pol.n_params; i++) suggest(key, c->pol.params[i].name, &best, &d);
    if (!best) return "";
    snprintf(buf, size, " (did you mean '%s'?)", best);
    return buf;
}

/* "norm, reserve" : the policy's own parameters, or a note that it has none. */
static const char *list_params(const kvc_cache *c, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "%s", c->pol.n_params ? "; its parameters: " : "; it has no parameters");
    for (uint32_t i = 0; i < c->pol.n_params; i++)
        n += (size_t)snprintf(buf + (n < size ? n : size - 1), n < size ? size - n : 1, "%s%s",
                              i ? ", " : "", c->pol.params[i].name);
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
        char keys[160], params[96], hint[64];
        return spec_error(c, KVC_EUNKNOWN, "unknown key '%s' for policy '%s'%s: options are %sscale%s", key,
                          c->pol.name, key_hint(c, key, hint, sizeof hint), list_keys(keys, sizeof keys),
                          list_params(c, params, sizeof params));
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

/* snprintf for messages that may be cut to the buffer: truncation is intended. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void message(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* Why kvc_cache_create() refused these arguments, restating its documented preconditions. */
static void create_why(int rc, uint32_t n_kv, uint32_t n_q, uint32_t d, uint32_t cap, kvc_dtype dtype, kvc_mode mode,
                       const kvc_allocator *alloc, char *err, size_t size) {
    if (rc == KVC_ENOMEM)
        message(err, size, "the allocator returned NULL for the cache object");
    else if (rc == KVC_EOVERFLOW)
        message(err, size, "capacity %u x head_dim %u x %u heads is too large (capacity < 2^31, head_dim <= 65536)",
                 cap, d, n_q > n_kv ? n_q : n_kv);
    else if (!n_kv || !n_q || !d || !cap)
        message(err, size, "n_kv_heads=%u, n_q_heads=%u, head_dim=%u and capacity=%u must all be at least 1", n_kv,
                 n_q, d, cap);
    else if (n_q % n_kv)
        message(err, size, "n_q_heads=%u is not a multiple of n_kv_heads=%u (GQA)", n_q, n_kv);
    else if ((unsigned)dtype > KVC_DTYPE_BF16 || (unsigned)mode > KVC_MODE_INDEX)
        message(err, size, "dtype %u or mode %u is not a kvc_dtype / kvc_mode value", (unsigned)dtype,
                 (unsigned)mode);
    else if (alloc && (!alloc->alloc || !alloc->free))
        message(err, size, "the allocator needs both alloc and free");
    else
        message(err, size, "kvc_cache_create failed: %s", kvc_strerror(rc));
}

/* Every built-in policy name, and a suggestion for `name`. */
static void unknown_policy(const char *name, char *err, size_t size) {
    char all[160], hint[64] = "";
    size_t n = 0;
    const char *best = NULL;
    unsigned d = 99;
    all[0] = 0;
    for (size_t i = 0; kvc_policy_at(i); i++) {
        const char *p = kvc_policy_at(i)->name;
        n += (size_t)snprintf(all + (n < sizeof all ? n : sizeof all - 1), n < sizeof all ? sizeof all - n : 1,
                              "%s%s", i ? ", " : "", p);
        suggest(name, p, &best, &d);
    }
    if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    message(err, size, "unknown policy '%s'%s; built-in policies: %s", name, hint, all);
}

#define SET_ERR(...)                                 \
    do {                                             \
        if (err && err_size) snprintf(err, err_size, __VA_ARGS__); \
    } while (0)

int kvc_cache_create_spec_err(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                              uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const char *spec,
                              const kvc_allocator *alloc, char *err, size_t err_size) {
    char why[256];
    SET_ERR("%s", "");
    if (!out) {
        SET_ERR("out must not be NULL");
        return KVC_EINVAL;
    }
    *out = NULL;
    if (!spec) {
        SET_ERR("spec must not be NULL");
        return KVC_EINVAL;
    }
    while (*spec == ' ' || *spec == '\t') spec++;
    char name[32];
    size_t n = 0;
    while (spec[n] && spec[n] != ' ' && spec[n] != '\t') n++;
    if (n == 0) {
        SET_ERR("spec is empty: start it with a policy name, e.g. \"h2o recent=64\"");
        return KVC_ESYNTAX;
    }
    if (n >= sizeof name || memchr(spec, '=', n)) {
        SET_ERR("spec '%.*s' must start with a policy name, e.g. \"h2o %.*s\"", (int)(n < 40 ? n : 40), spec,
                (int)(n < 40 ? n : 40), spec);
        return KVC_ESYNTAX;
    }
    memcpy(name, spec, n);
    name[n] = 0;
    const kvc_policy *p = kvc_policy_by_name(name);
    if (!p) {
        unknown_policy(name, why, sizeof why);
        SET_ERR("%s", why);
        return KVC_EUNKNOWN;
    }
    kvc_cache *c;
    int rc = kvc_cache_create(&c, n_kv_heads, n_q_heads, head_dim, capacity, dtype, mode, p, alloc);
    if (rc) {
        create_why(rc, n_kv_heads, n_q_heads, head_dim, capacity, dtype, mode, alloc, why, sizeof why);
        SET_ERR("%s", why);
        return rc;
    }
    rc = kvc_cache_apply_spec(c, spec + n);
    if (rc) {
        SET_ERR("%s", kvc_cache_last_error(c));
        kvc_cache_destroy(c);
        return rc;
    }
    *out = c;
    return KVC_OK;
}

int kvc_cache_create_spec(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                          uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const char *spec,
                          const kvc_allocator *alloc) {
    return kvc_cache_create_spec_err(out, n_kv_heads, n_q_heads, head_dim, capacity, dtype, mode, spec, alloc, NULL,
                                     0);
}
