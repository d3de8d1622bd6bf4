/**
 * @file kvc.h
 * @brief libkvc: KV-cache eviction policies and SIMD decode attention.
 *
 * libkvc decides which tokens stay in a transformer's key/value cache when the
 * cache has a fixed budget, and can optionally store that cache and run decode
 * attention over it with SIMD kernels.
 *
 * Two modes share the same policies:
 *  - ::KVC_MODE_STORE: the cache owns K/V. Call kvc_cache_append() then
 *    kvc_cache_attend(); softmax weights reach the policy with no extra pass.
 *  - ::KVC_MODE_INDEX: the engine owns its tensors. kvc_cache_reserve() says
 *    which slot to write and what was evicted; kvc_cache_observe() reports
 *    attention mass when the engine has it.
 *
 * Conventions:
 *  - Every function that can fail returns an `int` status: ::KVC_OK (0) or a
 *    negative ::kvc_status code. kvc_strerror() describes a code and
 *    kvc_cache_last_error() says what exactly was wrong for one cache.
 *  - A call that fails leaves the cache exactly as it was (two documented
 *    exceptions, both when a user policy's callback fails: kvc_cache_reset()
 *    and kvc_cache_reserve()).
 *  - Thread safety (the library never starts threads and takes no locks):
 *    - Distinct caches share no mutable state: any number of threads may
 *      each drive their own caches at the same time.
 *    - One cache is not synchronised. Calls that change it (everything taking
 *      a non-const `kvc_cache *`) must not overlap any other call on it: the
 *      caller serialises them (one owning thread, or a mutex). Calls taking
 *      `const kvc_cache *` (kvc_cache_len(), kvc_cache_positions(),
 *      kvc_cache_read(), kvc_cache_stats(), ...) may overlap each other.
 *    - The one exception: kvc_cache_attend_heads() may run on one cache from
 *      several threads at once when their kv-head ranges are disjoint and no
 *      other call on that cache overlaps them; once all have returned (the
 *      caller orders this, e.g. with a barrier or join), one thread calls
 *      kvc_cache_attend_finish().
 *    - A policy's callbacks for one cache are never called concurrently, and
 *      only from inside calls on that cache.
 *    - The free functions (kvc_attention(), kvc_attention_heads(),
 *      kvc_policy_*(), kvc_strerror(), kvc_version_*(), kvc_active_isa(),
 *      kvc_set_isa()) are thread-safe; the kernel is chosen once, race-free,
 *      on first use. kvc_rng_*() on one generator follow its cache's rule.
 *  - K, V and queries are passed as f32 row-major arrays: one row of
 *    `head_dim` floats per head, heads consecutive.
 */
#ifndef KVC_H
#define KVC_H

/**
 * @defgroup kvc_create 1. Creating a cache
 * Shape, mode, policy and allocator, fixed at creation; freezing, reset, destruction.
 * @defgroup kvc_options 2. Options
 * Enum-keyed options, policy parameters and spec strings, set before the first append.
 * @defgroup kvc_store 3. STORE mode: append and attend
 * The cache owns K/V and runs attention; the softmax weights feed the policy.
 * @defgroup kvc_index 4. INDEX mode: reserve and observe
 * The engine owns K/V; the cache says which slot to write and what was evicted.
 * @defgroup kvc_introspect 5. Introspection
 * Length, groups, slot positions, counters.
 * @defgroup kvc_kernel 6. Attention kernel
 * Decode attention over the engine's own K/V, and the kernel's instruction set.
 * @defgroup kvc_policies 7. Policies
 * Built-in policies, and the table of functions a user-written policy fills in.
 * @defgroup kvc_errors 8. Errors
 * Status codes and their messages.
 * @defgroup kvc_version 9. Version
 * The header's and the linked library's version.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @cond KVC_INTERNAL */
/* Decoration of every public declaration. Define KVC_API before including
 * this header to override it (e.g. `-DKVC_API=` for a static-only build, or
 * __declspec(dllimport) for a Windows DLL user). */
#ifndef KVC_API
#if defined(_WIN32) && defined(KVC_BUILD_SHARED)
#define KVC_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define KVC_API __attribute__((visibility("default")))
#else
#define KVC_API
#endif
#endif
/** @endcond */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_version
 *  The version lives only here; the build and the docs read it from these lines.
 *  @{ */
/** Major version: bumped on an incompatible ABI change. */
#define KVC_VERSION_MAJOR 0
/** Minor version: bumped when the API grows compatibly. */
#define KVC_VERSION_MINOR 1
/** Patch version: bumped for fixes only. */
#define KVC_VERSION_PATCH 0
/** Version as one integer: MAJOR*10000 + MINOR*100 + PATCH. */
#define KVC_VERSION_NUMBER (KVC_VERSION_MAJOR * 10000 + KVC_VERSION_MINOR * 100 + KVC_VERSION_PATCH)
/** @cond KVC_INTERNAL */
#define KVC__STR2(x) #x
#define KVC__STR(x) KVC__STR2(x)
/** @endcond */
/** Version as a string, "MAJOR.MINOR.PATCH". */
#define KVC_VERSION_STRING KVC__STR(KVC_VERSION_MAJOR) "." KVC__STR(KVC_VERSION_MINOR) "." KVC__STR(KVC_VERSION_PATCH)

/** @return ::KVC_VERSION_NUMBER of the linked library (compare with the header's). */
KVC_API unsigned kvc_version_number(void);
/** @return ::KVC_VERSION_STRING of the linked library; never NULL. */
KVC_API const char *kvc_version_string(void);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_errors
 *  @{ */

/**
 * The single list of status codes: X(name, value, message).
 *
 * | code | value | meaning |
 * |------|-------|---------|
 * | KVC_OK          |   0 | success |
 * | KVC_EINVAL      |  -1 | an argument is NULL, zero or inconsistent |
 * | KVC_ENOMEM      |  -2 | the allocator returned NULL |
 * | KVC_EOVERFLOW   |  -3 | the requested shape overflows size_t or the 2^31 slot limit |
 * | KVC_EFULL       |  -4 | the cache is full and its policy never evicts |
 * | KVC_ESTATE      |  -5 | not allowed in the cache's current state: an option set after the cache froze (first append or kvc_cache_prepare()), kvc_cache_attend_finish() before every kv head was attended |
 * | KVC_ERANGE      |  -6 | an option or parameter value is outside its allowed range |
 * | KVC_EUNKNOWN    |  -7 | unknown policy name, option key or parameter name |
 * | KVC_EORDER      |  -8 | the position is not greater than the previous one |
 * | KVC_ENONFINITE  |  -9 | NaN or Inf in K, V, a query or observed mass |
 * | KVC_EMODE       | -10 | the call does not exist in this cache's mode |
 * | KVC_EPOLICY     | -11 | the policy answered select() with an invalid victim set |
 * | KVC_EABI        | -12 | the policy's abi_version or struct_size is not supported |
 * | KVC_EEMPTY      | -13 | attention over an empty cache |
 * | KVC_ENOTSUP     | -14 | the operation is not supported (policy control op, ISA) |
 * | KVC_ESYNTAX     | -15 | a spec string is malformed |
 */
#define KVC_STATUS_LIST(X)                                                              \
    X(KVC_OK, 0, "success")                                                             \
    X(KVC_EINVAL, -1, "invalid argument")                                               \
    X(KVC_ENOMEM, -2, "out of memory")                                                  \
    X(KVC_EOVERFLOW, -3, "shape too large")                                             \
    X(KVC_EFULL, -4, "cache is full and the policy never evicts")                       \
    X(KVC_ESTATE, -5, "not allowed in the cache's current state")                       \
    X(KVC_ERANGE, -6, "value out of range")                                             \
    X(KVC_EUNKNOWN, -7, "unknown policy, option or parameter name")                     \
    X(KVC_EORDER, -8, "position must be greater than the previous one")                 \
    X(KVC_ENONFINITE, -9, "NaN or Inf in input")                                        \
    X(KVC_EMODE, -10, "operation not available in this cache mode")                     \
    X(KVC_EPOLICY, -11, "policy returned an invalid victim set")                        \
    X(KVC_EABI, -12, "unsupported policy ABI version or struct size")                   \
    X(KVC_EEMPTY, -13, "attention over an empty cache")                                 \
    X(KVC_ENOTSUP, -14, "operation not supported")                                      \
    X(KVC_ESYNTAX, -15, "malformed spec string")

/** @cond KVC_INTERNAL */
#define KVC__STATUS_ENUM(name, value, msg) name = value,
/** @endcond */

/** Status codes returned by every fallible call; see ::KVC_STATUS_LIST. */
typedef enum kvc_status {
    KVC_STATUS_LIST(KVC__STATUS_ENUM)
    /** @cond KVC_INTERNAL */ KVC__STATUS_END = 1 /** @endcond */
} kvc_status;

/**
 * Describe a status code.
 * @param status any integer.
 * @return a static message; "unknown status" for codes not in the list. Never NULL.
 */
KVC_API const char *kvc_strerror(int status);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_create
 *  @{ */

/** Storage element type of K and V. */
typedef enum kvc_dtype {
    KVC_DTYPE_F32 = 0, /**< IEEE binary32. */
    KVC_DTYPE_F16 = 1, /**< IEEE binary16, converted with round-to-nearest-even. */
    KVC_DTYPE_BF16 = 2, /**< bfloat16, converted with round-to-nearest-even. */
    /** 8-bit integers with one scale per row (per token and kv head). A row
     *  is `head_dim` int8 values q_i followed, at byte offset `head_dim`
     *  rounded up to a multiple of 4, by a native float32 scale s; it holds
     *  the values s * q_i (kvc_row_bytes() gives its size; strides of a
     *  ::kvc_attn_layout are then in bytes). kvc_quantize_q8() makes such a
     *  row: s = max_i |x_i| / 127, q_i = x_i * 127 / max_i |x_i| rounded to
     *  the nearest integer (ties to even), so each value is off by at most
     *  s/2 (plus float rounding); an all-zero row stores s = 0. */
    KVC_DTYPE_Q8 = 3
} kvc_dtype;

/** Who holds the K/V tensors. */
typedef enum kvc_mode {
    KVC_MODE_STORE = 0, /**< The cache stores K/V and runs attention. */
    KVC_MODE_INDEX = 1  /**< The engine stores K/V; the cache only decides slots. */
} kvc_mode;

/** @} */

/** @addtogroup kvc_options
 *  @{ */

/** What unit has its own resident set and budget. */
typedef enum kvc_scope {
    KVC_SCOPE_HEAD = 0,  /**< One eviction group per kv head (H2O, VaSE, SnapKV style). */
    KVC_SCOPE_SHARED = 1 /**< One group for all heads (TOVA, StreamingLLM, llama.cpp cells). */
} kvc_scope;

/** Upper bound in ::KVC_OPTION_LIST that stands for the cache's capacity. */
#define KVC_BOUND_CAPACITY (-1)

/**
 * The single list of cache options: X(name, value, key, min, max, choices, doc).
 * `key` is the option's name in spec strings (kvc_cache_apply_spec());
 * `[min, max]` its range (::KVC_BOUND_CAPACITY: the cache's capacity);
 * `choices` NULL, or the names of the values 0, 1, ... separated by '|',
 * accepted in spec strings instead of the numbers.
 *
 * Options are set with kvc_cache_set() before the first append (or
 * kvc_cache_prepare()); afterwards a set fails with ::KVC_ESTATE. Values are
 * int64; ranges are checked when set and again, jointly, when the cache
 * freezes: chunk*block <= capacity, and for a policy that evicts,
 * ceil(sink/block) + ceil(recent/block) + chunk <= capacity/block (with
 * block 1: sink + recent + chunk <= capacity), which is exactly what leaves
 * `chunk` evictable blocks whenever a group is full.
 *
 * | option | key | range | default |
 * |--------|-----|-------|---------|
 * | KVC_OPT_SCOPE        | scope        | head (0), shared (1) | the policy's (head, except `tova`: shared) |
 * | KVC_OPT_SINK         | sink         | 0 .. capacity | the policy's |
 * | KVC_OPT_RECENT       | recent       | 0 .. capacity | the policy's |
 * | KVC_OPT_CHUNK        | chunk        | 1 .. capacity | the policy's (1 for most) |
 * | KVC_OPT_BLOCK        | block        | 1 .. capacity, divides the capacity | 1 |
 * | KVC_OPT_SEED         | seed         | any int64 | 0 |
 * | KVC_OPT_QUERY_WINDOW | query_window | 1 .. 4096 | 64 |
 * | KVC_OPT_PROTECT      | protect      | 0 .. INT64_MAX | 0 |
 * | KVC_OPT_PREFILL_MAX  | prefill_max  | 0 .. INT32_MAX | 0: no scratch, prefill refused |
 *
 * `protect` pins every token at a position below it (since positions
 * increase, those are among the first `protect` tokens: the room check
 * counts max(sink, protect) of them). `prefill_max` sizes the scratch of
 * kvc_cache_prefill() and kvc_cache_prefill_index() at prepare: 41 bytes
 * per token, plus 64 + 4 x groups in STORE mode (window logits and scores),
 * plus what the policy asks for (`vase`, `snapkv`: about 20).
 */
#define KVC_OPTION_LIST(X)                                                                                          \
    X(KVC_OPT_SCOPE, 0, "scope", 0, 1, "head|shared", "::kvc_scope: what has its own budget.")                      \
    X(KVC_OPT_SINK, 1, "sink", 0, KVC_BOUND_CAPACITY, NULL,                                                         \
      "The first `sink` tokens appended (since creation or reset, whatever their positions) are never evicted.")    \
    X(KVC_OPT_RECENT, 2, "recent", 0, KVC_BOUND_CAPACITY, NULL, "Most recent resident tokens never evicted.")       \
    X(KVC_OPT_CHUNK, 3, "chunk", 1, KVC_BOUND_CAPACITY, NULL,                                                       \
      "Units evicted at once when a full group receives a token.")                                                 \
    X(KVC_OPT_BLOCK, 4, "block", 1, KVC_BOUND_CAPACITY, NULL,                                                       \
      "Tokens per eviction unit (aligned block of slots); must divide the capacity.")                              \
    X(KVC_OPT_SEED, 5, "seed", INT64_MIN, INT64_MAX, NULL, "Seed of the cache's random generator.")                 \
    X(KVC_OPT_QUERY_WINDOW, 6, "query_window", 1, 4096, NULL,                                                       \
      "Queries remembered for ::KVC_NEED_QUERY_WINDOW policies (STORE mode).")                                     \
    X(KVC_OPT_PROTECT, 7, "protect", 0, INT64_MAX, NULL,                                                            \
      "Tokens at a position below `protect` are never evicted, in prefill and decode (e.g. a system prompt).")     \
    X(KVC_OPT_PREFILL_MAX, 8, "prefill_max", 0, INT32_MAX, NULL,                                                    \
      "Longest prompt kvc_cache_prefill() and kvc_cache_prefill_index() accept; their scratch is sized at prepare.")

/** @cond KVC_INTERNAL */
#define KVC__OPTION_ENUM(name, value, key, min, max, choices, doc) name = value,
/** @endcond */

/** Cache options; see ::KVC_OPTION_LIST for their keys, ranges and defaults. */
typedef enum kvc_option {
    KVC_OPTION_LIST(KVC__OPTION_ENUM)
    /** @cond KVC_INTERNAL */ KVC__OPTION_END /**< one past the last option */ /** @endcond */
} kvc_option;

/** @} */

/** @addtogroup kvc_create
 *  @{ */

/**
 * Allocator used by one cache for all its memory. Copied at creation.
 * `alloc` must return memory aligned to `align` (a power of two, at most 4096)
 * or NULL; `free` accepts what `alloc` returned. The cache relies on that
 * alignment (it carves 64-byte aligned K/V rows and typed arrays out of each
 * block): a block that is not aligned as asked is undefined behaviour.
 */
typedef struct kvc_allocator {
    void *(*alloc)(void *opaque, size_t size, size_t align); /**< Allocate `size` bytes aligned to `align`. */
    void (*free)(void *opaque, void *ptr);                    /**< Release memory from `alloc`. */
    void *opaque;                                             /**< Passed back to both functions. */
} kvc_allocator;
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_policies
 *  @{ */

/** A cache's seeded generator (xoshiro256**), handed to policies. Opaque. */
typedef struct kvc_rng kvc_rng;
/** @return the next 64 random bits of `rng`. */
KVC_API uint64_t kvc_rng_next(kvc_rng *rng);
/** @return a uniform double in [0, 1) with 53 random bits. */
KVC_API double kvc_rng_uniform(kvc_rng *rng);
/** @return a uniform integer in [0, bound) without modulo bias; 0 when bound is 0. */
KVC_API uint32_t kvc_rng_below(kvc_rng *rng, uint32_t bound);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_policies
 *
 * A policy is a table of functions, versioned like SQLite's pcache methods:
 * it starts with `abi_version` and `struct_size`, only ever grows at the end,
 * and the cache copies the struct when created (the strings and arrays it
 * points to, such as `name` and `params`, must outlive the cache).
 *
 * Defaults: a cache starts with the policy's default sink, recent, chunk and
 * scope, scaled to its capacity: the chunk is capped at capacity/16 (at
 * least 1), and when sink + recent + chunk still leave no room to evict,
 * sink and recent are each capped at capacity/4. Values set explicitly are
 * never changed.
 *
 * Contract for policy authors:
 *  - Calls for one cache are serialised; a policy never calls back into the
 *    cache and never sees K/V storage, only the per-token facts it asked
 *    for through `needs`.
 *  - The core protects the first `sink` tokens appended and the `recent`
 *    most recently appended ones: they are never offered as candidates.
 *  - Slots are `[0, capacity)` per group. In STORE mode residents are dense
 *    in `[0, len)`; an eviction refills the hole by moving the last
 *    resident in, and the policy is told through `on_move` (as it is of the
 *    moves of kvc_cache_compact() in INDEX mode). Evictions are
 *    not announced: a freed slot keeps whatever the policy stored for it
 *    until `on_insert` reuses it.
 *  - To evict, the core uses `select` if present, otherwise `score`; a policy
 *    with neither never evicts (appending to a full cache fails with ::KVC_EFULL).
 *  - The core checks what `select` returns: exactly `n_victims` distinct
 *    candidates; anything else fails with ::KVC_EPOLICY and the cache is left
 *    as it was (including its random generator). Victim entries `select` does
 *    not write count as invalid.
 *  - A nonzero return from `select` or `init` that is not a negative
 *    ::kvc_status reaches the caller as ::KVC_EPOLICY (select) or
 *    ::KVC_EINVAL (init); a listed code such as ::KVC_ENOMEM passes through.
 *  @{ */

/** ABI version of ::kvc_policy understood by this library. */
#define KVC_POLICY_ABI 1

/** @name Policy needs (bit flags in kvc_policy::needs)
 *  @{ */
#define KVC_NEED_ATTN 0x1u         /**< Wants per-slot attention mass (on_attend). */
#define KVC_NEED_QUERY_WINDOW 0x2u /**< Wants kvc_select::window_score (recent queries' attention). */
#define KVC_NEED_VALUE_STATS 0x4u  /**< Wants kvc_token::value_range and value_l1. */
#define KVC_NEED_KEY_STATS 0x8u    /**< Wants kvc_token::key_norm. */
#define KVC_NEED_RNG 0x10u         /**< Uses the cache's random generator. */
#define KVC_NEED_KEYS 0x20u        /**< Wants kvc_token::key, the token's key rows (since 0.2). */
#define KVC_NEED_VALUES 0x40u      /**< Wants kvc_token::value, the token's value rows (since 0.2). */
#define KVC_NEED_QUERIES 0x80u     /**< Wants kvc_select::queries, the recent queries themselves (STORE mode; since 0.2). */
/** @} */

/** kvc_policy::default_recent value meaning "half the capacity". */
#define KVC_RECENT_HALF UINT32_MAX
/** kvc_policy::default_recent value meaning "`p` percent of the capacity", 0 <= p <= 100 (since 0.2). */
#define KVC_RECENT_PERCENT(p) (0xFFFFFF00u + (uint32_t)(p))

/** Facts about a token, computed once when it is inserted. */
typedef struct kvc_token {
    int64_t pos;       /**< Position given by the engine. */
    uint64_t seq;      /**< Insertion index in this cache (0 for the first token). */
    float key_norm;    /**< L2 norm of the key (mean over heads in shared scope); 0 unless ::KVC_NEED_KEY_STATS. */
    float value_range; /**< max - min over head_dim of the value (mean over heads in shared scope); 0 unless ::KVC_NEED_VALUE_STATS. */
    float value_l1;    /**< L1 norm of the value (mean over heads in shared scope); 0 unless ::KVC_NEED_VALUE_STATS. */
    /** The token's key rows for this group, as the engine passed them (f32): kvc_policy_ctx::kv_heads rows
        of `head_dim` floats (one kv head in head scope, all of them in shared scope). NULL unless
        ::KVC_NEED_KEYS. Valid only during `on_insert`: copy what you keep. Since 0.2. */
    const float *key;
    /** The token's value rows, laid out as `key`. NULL unless ::KVC_NEED_VALUES. Since 0.2. */
    const float *value;
} kvc_token;

/** A named numeric parameter a policy accepts (through kvc_cache_set_param() or a spec string). */
typedef struct kvc_param {
    const char *name;            /**< Parameter name, [a-z0-9_]+. */
    double def;                  /**< Default value. */
    double min;                  /**< Smallest allowed value. */
    double max;                  /**< Largest allowed value. */
    const char *const *choices;  /**< NULL, or NULL-terminated names for values 0, 1, 2, ... usable in specs. */
    const char *help;            /**< One line of description. */
} kvc_param;

/** What a policy learns when its state is initialised. */
typedef struct kvc_policy_ctx {
    uint32_t n_groups;        /**< Eviction groups (kv heads, or 1 in shared scope). */
    uint32_t capacity;        /**< Slots per group. */
    uint32_t head_dim;        /**< Elements per head row. */
    uint32_t q_per_group;     /**< Query heads whose mass is averaged into one group's mass. */
    uint32_t block;           /**< Tokens per eviction unit. */
    uint32_t chunk;           /**< Units evicted at once. */
    uint32_t sink;            /**< Protected first positions. */
    uint32_t recent;          /**< Protected most recent tokens. */
    kvc_mode mode;            /**< Storage mode of the cache. */
    kvc_rng *rng;             /**< The cache's generator (valid for the cache's lifetime). */
    const double *params;     /**< Values of kvc_policy::params, same order. */
    void *user;               /**< kvc_policy::user of the cache's copy of the policy. */
    uint32_t kv_heads;        /**< kv heads in one group: 1 in head scope, n_kv_heads in shared scope (since 0.2). */
    float scale;              /**< The cache's attention logit scale (since 0.2). */
    uint32_t prefill_max;     /**< ::KVC_OPT_PREFILL_MAX: the most tokens a kvc_policy::prefill request holds. */
} kvc_policy_ctx;

/**
 * One prefill request, passed to kvc_policy::prefill: which of a prompt's
 * tokens a group drops. Tokens are indexed in prompt order (0 = oldest).
 */
typedef struct kvc_prefill {
    uint32_t group;             /**< Group that chooses. */
    uint32_t n_tokens;          /**< Tokens in the prompt (at most kvc_policy_ctx::prefill_max). */
    const kvc_token *tokens;    /**< Per token: position, insertion index (= its index) and the statistics in `needs`. */
    const float *score;         /**< Per token: attention of the observation window (STORE: mean softmax weight of
                                     the window queries over the prompt, causal, mean over the group's query heads;
                                     INDEX: the engine's scores), or NULL when the call had none. */
    uint32_t n_window;          /**< The last `n_window` tokens are the observation window (always kept). */
    uint32_t n_candidates;      /**< Tokens that may be dropped. */
    const uint32_t *candidates; /**< Their indices, increasing (protected tokens are not offered). */
    uint32_t n_victims;         /**< Tokens to drop: n_tokens - capacity. */
    kvc_rng *rng;               /**< The cache's generator. */
} kvc_prefill;

/** One eviction request, passed to kvc_policy::select. */
typedef struct kvc_select {
    uint32_t group;              /**< Group that must evict. */
    uint32_t n_candidates;       /**< Number of candidate units. */
    const uint32_t *candidates;  /**< First slot of each candidate unit, in increasing position order. */
    uint32_t n_victims;          /**< Units to return. */
    uint32_t block;              /**< Slots per unit (a unit is slots c .. c+block-1). */
    const int64_t *positions;    /**< Slot -> position of this group (-1 for empty). */
    const float *window_score;   /**< Per candidate unit: mean softmax weight over the last queries,
                                      renormalised over the candidates (finite, >= 0, summing to 1, even where
                                      a remembered query's logits against a later key overflow f32: those rows
                                      are computed in double); NULL unless ::KVC_NEED_QUERY_WINDOW and STORE
                                      mode, and before the first attend. */
    kvc_rng *rng;                /**< The cache's generator. */
    /** The remembered queries, `n_queries` rows of `n_q_heads * head_dim` floats (in no particular order), all query
        heads of each step; group g's are heads `g * q_per_group` to `(g + 1) * q_per_group - 1`, and its
        local head j reads key row `j / (q_per_group / kv_heads)` (n_q_heads = n_groups * q_per_group). NULL unless ::KVC_NEED_QUERIES, STORE
        mode and at least one attend. Since 0.2. */
    const float *queries;
    uint32_t n_queries;          /**< Rows in `queries` (at most ::KVC_OPT_QUERY_WINDOW). */
} kvc_select;

/** The policy vtable. Optional slots may be NULL; see each member. */
typedef struct kvc_policy {
    uint32_t abi_version;   /**< ::KVC_POLICY_ABI. */
    uint32_t struct_size;   /**< sizeof(kvc_policy) as compiled by the policy author. */
    const char *name;       /**< Short name, [a-z0-9_]+. Required. */
    uint32_t needs;         /**< ::KVC_NEED_ATTN and friends. */
    uint32_t default_sink;   /**< Default of ::KVC_OPT_SINK. */
    uint32_t default_recent; /**< Default of ::KVC_OPT_RECENT, or ::KVC_RECENT_HALF, or ::KVC_RECENT_PERCENT(p). */
    uint32_t default_chunk;  /**< Default of ::KVC_OPT_CHUNK; 0 means 1. */
    uint32_t default_scope;  /**< Default of ::KVC_OPT_SCOPE (a ::kvc_scope). */
    uint32_t n_params;       /**< Entries in `params`. */
    const kvc_param *params; /**< Parameters this policy accepts, or NULL. */
    /** Bytes of state the cache must allocate (64-byte aligned). Optional: NULL means 0. Called
        once each time the cache freezes; kvc_cache_reset() reuses that block and does not ask again. */
    size_t (*state_size)(const kvc_policy_ctx *ctx);
    /** Initialise zeroed state. Optional. Also called by kvc_cache_reset(). Return 0 or a ::kvc_status
        (a positive value becomes ::KVC_EINVAL); on failure `fini` is still called on the state (at
        prepare and at reset alike), so every `init` is followed by exactly one `fini`. */
    int (*init)(void *state, const kvc_policy_ctx *ctx);
    /** A token entered `slot` of `group`. Optional. */
    void (*on_insert)(void *state, uint32_t group, uint32_t slot, const kvc_token *tok);
    /** Attention mass of one step for `group`, indexed by slot, `n` entries (empty slots hold 0). Optional. */
    void (*on_attend)(void *state, uint32_t group, const float *mass, uint32_t n);
    /**
     * Keep-score of `n` slots of `group` into `keep` (higher = more worth keeping).
     * Optional. The core evicts the lowest units (sum over a unit's slots),
     * ties going to the older position; a NaN score counts as -infinity.
     */
    void (*score)(void *state, uint32_t group, const uint32_t *slots, uint32_t n, float *keep);
    /** Choose `req->n_victims` distinct units from `req->candidates` into `victims`. Optional; wins over `score`. */
    int (*select)(void *state, const kvc_select *req, uint32_t *victims);
    /** The resident in slot `from` of `group` moved to slot `to` (STORE-mode evictions, INDEX-mode
        kvc_cache_compact()). Optional. */
    void (*on_move)(void *state, uint32_t group, uint32_t from, uint32_t to);
    /** Release anything init acquired. Optional. */
    void (*fini)(void *state);
    /** Policy-specific escape hatch. Optional; unknown ops must return ::KVC_ENOTSUP. */
    int (*control)(void *state, int op, void *arg);
    /** The policy author's own pointer, handed back in kvc_policy_ctx::user (e.g. a binding's object). Optional. */
    void *user;
    /** Default of ::KVC_OPT_QUERY_WINDOW; 0 means 64. Since 0.2. */
    uint32_t default_query_window;
    /**
     * Choose the `req->n_victims` prompt tokens a compressed prefill drops
     * (distinct entries of `req->candidates`, checked like `select`).
     * Optional (added in 0.2: a policy compiled against 0.1 has a smaller
     * `struct_size` and reads as NULL). When NULL, the core drops the
     * candidates with the lowest `req->score` (ties: the older goes), or the
     * oldest when there is no score. Called before the kept tokens reach
     * `on_insert`, so per-slot state must not be touched here; the scores
     * of the kept tokens then reach `on_attend` as one attention step.
     */
    int (*prefill)(void *state, const kvc_prefill *req, uint32_t *victims);
} kvc_policy;

/** Never evicts; appending to a full cache fails with ::KVC_EFULL. */
KVC_API const kvc_policy *kvc_policy_full(void);
/** Keeps the last `capacity` tokens (sliding window). */
KVC_API const kvc_policy *kvc_policy_window(void);
/** StreamingLLM: keeps the first `sink` (default 4) tokens and the most recent ones. */
KVC_API const kvc_policy *kvc_policy_sink(void);
/** Oblivious baseline: uniform random victim among candidates. */
KVC_API const kvc_policy *kvc_policy_random(void);
/** Heavy hitter (H2O): evicts the least accumulated attention; recent = capacity/2; param `norm` (sum|lifetime). */
KVC_API const kvc_policy *kvc_policy_h2o(void);
/** TOVA: evicts the least attention of the current step (group mean); shared scope by default. */
KVC_API const kvc_policy *kvc_policy_tova(void);
/** Key norm: evicts the largest key L2 norm; attention-free; sink 4. */
KVC_API const kvc_policy *kvc_policy_knorm(void);
/** VATP: evicts the least accumulated attention times value L1 norm; sink 4. */
KVC_API const kvc_policy *kvc_policy_vatp(void);
/**
 * VaSE: reserves large value-range tokens, samples the rest in proportion to recent attention.
 * At each eviction, the `reserve` x capacity (default 0.25) candidates with the largest value
 * range are kept, the sinks counting against that reservation; the others are kept by sampling
 * without replacement in proportion to their weight averaged over `pool` (default 5)
 * neighbouring candidates in position order (candidate i averages candidates
 * i - pool/2 .. i - pool/2 + pool - 1, zero padded). The weight is kvc_select::window_score in
 * STORE mode (the last ::KVC_OPT_QUERY_WINDOW queries), and in INDEX mode the mass observed
 * since the group's previous eviction. Weightless candidates go first. Defaults: sink 4,
 * recent 64, chunk 64.
 */
KVC_API const kvc_policy *kvc_policy_vase(void);
/**
 * VaSE-DKV: evicts the lowest CurDKV leverage ||k G||^2 * ||v G||^2, G a head_dim x `rank`
 * (default 20) Gaussian projection with N(0, 1/rank) entries drawn from the cache's generator at
 * every eviction of every group, shared by keys, values and the group's kv heads (shared scope:
 * the mean over kv heads). A deterministic lowest-k of the candidates. Keeps an f32 copy of K
 * and V (2 x head_dim floats per slot and kv head). Defaults: sink 4, recent 64, chunk 64.
 */
KVC_API const kvc_policy *kvc_policy_vase_dkv(void);
/**
 * R-KV: evicts the lowest lambda * importance - (1 - lambda) * redundancy. Importance: the last
 * ::KVC_OPT_QUERY_WINDOW (default 8) queries' attention over every resident but the protected
 * recent ones (per query the maximum over the group's query heads of the logits, a softmax, then
 * the mean over queries), max-pooled over `pool` (default 7) neighbours; in INDEX mode, and before
 * the first attend, the mass observed since the group's previous eviction, normalised, then pooled.
 * Redundancy: the column means of the residents' key cosine matrix (diagonal zeroed, and for each
 * token its similarity to its most recent near-duplicate above `threshold`, default 0.5, dropped),
 * softmaxed over the residents (shared scope: the mean over kv heads). `lambda` default 0.1.
 * Keeps an f32 copy of the keys; O(n^2 head_dim) per eviction. Defaults: recent 8, chunk 128.
 */
KVC_API const kvc_policy *kvc_policy_rkv(void);
/**
 * KeyDiff: evicts the keys most similar (cosine) to the anchor, the mean of the group's
 * normalised resident keys; attention-free (shared scope: the mean over kv heads of each head's
 * cosine). Keeps an f32 copy of the unit keys. No sink, no recent window.
 */
KVC_API const kvc_policy *kvc_policy_keydiff(void);
/**
 * Scissorhands: counts, over the last `history` (default 400) attention steps of each group, the
 * steps in which a token's mass was below 1/t (t = tokens appended so far), and evicts the
 * largest count, ties going to the older. Defaults: recent 10.
 */
KVC_API const kvc_policy *kvc_policy_scissorhands(void);
/**
 * Keyformer: accumulates, each step, a Gumbel-softmax of the group's attention weights,
 * softmax((log m_i + g_i) / tau) with g_i ~ Gumbel(0, 1) from the cache's generator, the
 * temperature rising linearly from `tau_init` (default 1) to `tau_end` (default 2) over `horizon`
 * (default 128) steps of the group, then staying there; evicts the least accumulated.
 * Defaults: recent 30% of the capacity.
 */
KVC_API const kvc_policy *kvc_policy_keyformer(void);

/**
 * SnapKV (Li et al. 2024, arXiv 2404.14469): prompt compression by the observation window.
 * Prefill keeps the observation window and the prompt tokens with the largest attention from
 * it, after 1-D pooling over neighbouring positions (`kernel`, default 7; `pool` max|avg,
 * default max, as in SnapKV's LongBench configuration). Decode re-applies the same rule at
 * each eviction: STORE mode scores candidates with the last ::KVC_OPT_QUERY_WINDOW queries,
 * INDEX mode with the mass observed since the group's previous eviction; deterministic, the
 * lowest pooled score goes. Defaults: recent 32 (the window is kept), chunk 32, query window 32,
 * sink 0.
 */
KVC_API const kvc_policy *kvc_policy_snapkv(void);

/**
 * Look a built-in policy up by name ("full", "window", "sink", "random",
 * "h2o", "tova", "knorm", "vatp", "vase", "vase_dkv", "rkv", "keydiff",
 * "scissorhands", "keyformer", "snapkv").
 * @return the policy, or NULL if `name` is NULL or unknown.
 */
KVC_API const kvc_policy *kvc_policy_by_name(const char *name);
/**
 * Enumerate the built-in policies.
 * @param i index from 0.
 * @return the i-th built-in policy, or NULL past the end.
 */
KVC_API const kvc_policy *kvc_policy_at(size_t i);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_create
 *  @{ */

/** A KV cache for one sequence and one attention layer (or any unit the engine chooses). Opaque. */
typedef struct kvc_cache kvc_cache;

/**
 * Create a cache.
 * @param out        receives the cache; set to NULL on failure.
 * @param n_kv_heads K/V heads (>= 1).
 * @param n_q_heads  query heads, a multiple of `n_kv_heads` (GQA).
 * @param head_dim   elements per head row (>= 1, <= 65536).
 * @param capacity   slots per eviction group (>= 1, < 2^31): the hard memory bound.
 * @param dtype      storage type of K/V (STORE mode; ignored in INDEX mode).
 * @param mode       ::KVC_MODE_STORE or ::KVC_MODE_INDEX.
 * @param policy     eviction policy (copied); NULL means kvc_policy_full().
 * @param alloc      allocator (copied); NULL means the C library's.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL out, zero or inconsistent shape, bad enum),
 *         ::KVC_EOVERFLOW, ::KVC_EABI (policy version), ::KVC_ENOMEM.
 * Memory for slots and policy state is allocated when the cache freezes
 * (kvc_cache_prepare() or the first append/reserve).
 */
KVC_API int kvc_cache_create(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                             uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const kvc_policy *policy,
                             const kvc_allocator *alloc);

/**
 * Create a cache from a spec string: a policy name then `key=value` options,
 * e.g. `"h2o recent=64 sink=4 norm=lifetime"`. Keys are option names
 * (`scope`, `sink`, `recent`, `chunk`, `block`, `seed`, `query_window`,
 * `scale`) or the policy's parameter names. See kvc_cache_apply_spec().
 * @return as kvc_cache_create(), plus ::KVC_EUNKNOWN, ::KVC_ERANGE, ::KVC_ESYNTAX.
 */
KVC_API int kvc_cache_create_spec(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                                  uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const char *spec,
                                  const kvc_allocator *alloc);

/**
 * As kvc_cache_create_spec(), and on failure write what exactly was wrong into `err`
 * (there is no cache to ask kvc_cache_last_error()), e.g. "unknown key 'recnet' for
 * policy 'h2o' (did you mean 'recent'?): ...". On success `err` holds "".
 * @param out, n_kv_heads, n_q_heads, head_dim, capacity, dtype, mode, spec, alloc as kvc_cache_create_spec().
 * @param err      NULL, or a buffer of `err_size` bytes; the message is truncated to fit and NUL-terminated.
 * @param err_size bytes in `err` (256 is always enough).
 * @return as kvc_cache_create_spec().
 */
KVC_API int kvc_cache_create_spec_err(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim,
                                      uint32_t capacity, kvc_dtype dtype, kvc_mode mode, const char *spec,
                                      const kvc_allocator *alloc, char *err, size_t err_size);

/** Destroy a cache and free everything it allocated. NULL is accepted. */
KVC_API void kvc_cache_destroy(kvc_cache *cache);

/**
 * Freeze the options and allocate all memory now, so that appends never
 * allocate. Called implicitly by the first append or reserve. Idempotent.
 * @return ::KVC_OK, ::KVC_EINVAL (options jointly inconsistent: the rule under
 *         ::kvc_option), ::KVC_ENOMEM, or the policy's init error.
 */
KVC_API int kvc_cache_prepare(kvc_cache *cache);

/**
 * Forget all tokens, counters and policy state; keep options and memory. Re-seeds the generator.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL cache), or the error of a user policy's
 *         `init`; then, unlike other failed calls, the cache is left empty,
 *         unfrozen and without its memory (the next append allocates again).
 */
KVC_API int kvc_cache_reset(kvc_cache *cache);

/** @} */

/** @addtogroup kvc_options
 *  @{ */

/**
 * Set an option before the cache freezes.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL cache), ::KVC_EUNKNOWN (bad key),
 *         ::KVC_ERANGE (bad value), ::KVC_ESTATE (frozen). Nothing changes on error.
 */
KVC_API int kvc_cache_set(kvc_cache *cache, kvc_option key, int64_t value);
/** Read an option's current value into `*value`. @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EUNKNOWN. */
KVC_API int kvc_cache_get(const kvc_cache *cache, kvc_option key, int64_t *value);
/** Set the attention scale (default 1/sqrt(head_dim)). Must be finite and > 0. Same errors as kvc_cache_set(). */
KVC_API int kvc_cache_set_scale(kvc_cache *cache, float scale);
/**
 * Set a policy parameter by name before the cache freezes.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EUNKNOWN, ::KVC_ERANGE, ::KVC_ESTATE.
 */
KVC_API int kvc_cache_set_param(kvc_cache *cache, const char *name, double value);
/** Read a policy parameter by name. @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EUNKNOWN. */
KVC_API int kvc_cache_get_param(const kvc_cache *cache, const char *name, double *value);
/**
 * Apply `key=value` options (no policy name) separated by spaces, tabs or
 * commas, e.g. `"recent=64 sink=4 scope=shared"`. A value with named
 * choices (`scope`, a parameter such as `norm`) takes a name or a number.
 * Each key may appear once per call. All-or-nothing: on error nothing changes.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_ESYNTAX (not `key=value`, not a
 *         number, a key given twice), ::KVC_EUNKNOWN (unknown key, or a
 *         name that is not one of the value's choices: the message lists
 *         them), ::KVC_ERANGE, ::KVC_ESTATE.
 */
KVC_API int kvc_cache_apply_spec(kvc_cache *cache, const char *options);

/**
 * Call the policy's `control` slot: a policy-specific operation.
 * Freezes the cache first (as kvc_cache_prepare()), since the policy state
 * must exist; when the policy answers with a negative status on a cache this
 * call froze, the freeze is undone (a failed call changes nothing).
 * @param cache any cache.
 * @param op    policy-defined operation code.
 * @param arg   policy-defined argument.
 * @return the policy's answer, ::KVC_ENOTSUP when it has no `control` slot
 *         (the cache is not frozen for that), ::KVC_EINVAL for a NULL cache,
 *         or an error of kvc_cache_prepare().
 */
KVC_API int kvc_cache_control(kvc_cache *cache, int op, void *arg);

/**
 * Detail of the last error on this cache, e.g. "recent=5000 leaves no room
 * to evict with capacity 4096: lower recent or raise capacity".
 * Every failing call that may modify the cache records one; calls on a const
 * cache (kvc_cache_get(), kvc_cache_get_param(), kvc_cache_read(),
 * kvc_cache_positions(), kvc_cache_stats()) and kvc_cache_attend_heads(),
 * which may run concurrently, only return their status.
 * @return a message owned by the cache (valid until the next call on it); "" if none; never NULL.
 */
KVC_API const char *kvc_cache_last_error(const kvc_cache *cache);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_store
 *  @{ */

/**
 * Append one token (K and V of every kv head) at position `pos`, evicting
 * through the policy when a group is full.
 * @param cache a ::KVC_MODE_STORE cache.
 * @param pos position of the token, greater than the previous one (>= 0).
 * @param k `n_kv_heads * head_dim` floats, converted to the storage dtype.
 * @param v same shape as `k`.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EMODE, ::KVC_EORDER (pos not increasing),
 *         ::KVC_ENONFINITE (NaN/Inf rejected, nothing stored), ::KVC_ERANGE (a
 *         finite value that f16/bf16 storage would round to Inf, i.e. |x| >= 65520
 *         in f16; nothing stored), ::KVC_EFULL, ::KVC_EPOLICY, ::KVC_ENOMEM (first call only).
 */
KVC_API int kvc_cache_append(kvc_cache *cache, int64_t pos, const float *k, const float *v);

/**
 * Decode attention for all query heads over the resident tokens, and feed the
 * softmax weights to the policy in the same pass.
 * @param cache a ::KVC_MODE_STORE cache holding at least one token.
 * @param q   `n_q_heads * head_dim` floats; query head h reads kv head
 *            h / (n_q_heads / n_kv_heads).
 * @param out `n_q_heads * head_dim` floats (may not alias `q`).
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EMODE, ::KVC_EEMPTY, ::KVC_ENONFINITE
 *         (NaN/Inf in q rejected, nothing written), ::KVC_ERANGE (every input
 *         is finite but the attention overflows f32: |scale * q.k| or the
 *         weighted sum of V beyond 3.4e38; `out` then holds unspecified
 *         values, and nothing reaches the policy or the counters: a policy
 *         never sees a non-finite mass).
 */
KVC_API int kvc_cache_attend(kvc_cache *cache, const float *q, float *out);

/**
 * Attention for kv heads `[kv_begin, kv_end)` only, without telling the
 * policy. Calls on disjoint ranges of one cache may run concurrently on
 * different threads; then call kvc_cache_attend_finish() once, alone.
 * When several such calls fail at once, kvc_cache_last_error() keeps one of
 * their messages.
 * @return as kvc_cache_attend() (::KVC_ERANGE for an overflow in these heads),
 *         plus ::KVC_ERANGE for a bad range.
 */
KVC_API int kvc_cache_attend_heads(kvc_cache *cache, const float *q, float *out, uint32_t kv_begin,
                                   uint32_t kv_end);
/**
 * Hand the weights of the preceding kvc_cache_attend_heads() calls (covering all heads) to the policy.
 * @param cache a ::KVC_MODE_STORE cache.
 * @param q the queries those calls used (remembered for ::KVC_NEED_QUERY_WINDOW policies).
 * @return as kvc_cache_attend(): ::KVC_EEMPTY before the first append,
 *         ::KVC_ENONFINITE for NaN/Inf in q (nothing handed over); and
 *         ::KVC_ESTATE unless every kv head was attended by a successful
 *         kvc_cache_attend_heads() since the last append, kvc_cache_attend()
 *         or kvc_cache_attend_finish() (the weights would be stale or missing).
 */
KVC_API int kvc_cache_attend_finish(kvc_cache *cache, const float *q);

/**
 * Read a resident token's stored K and V rows, converted to f32.
 * @param cache a ::KVC_MODE_STORE cache.
 * @param kv_head kv head whose rows to copy.
 * @param slot slot of that head's group (the kv head's own group in head
 *             scope, the single group in shared scope).
 * @param k,v `head_dim` floats each; either may be NULL.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EMODE, ::KVC_ERANGE (empty slot or out of range).
 */
KVC_API int kvc_cache_read(const kvc_cache *cache, uint32_t kv_head, uint32_t slot, float *k, float *v);

/**
 * Take a whole prompt in one call (prefill compression, SnapKV style) into
 * an empty cache: tokens at positions `pos`, `pos + 1`, ..., `pos + n - 1`.
 * When the prompt fits (n <= capacity) every token is stored. Otherwise each
 * group keeps `capacity` tokens: the protected ones (the first `sink`, those
 * at a position below `protect`, and the last max(`recent`, `n_window`):
 * the observation window), then what the policy's kvc_policy::prefill
 * chooses from the rest, given the window's attention over the prompt:
 * per token, the mean over the `n_window` queries and the group's query heads
 * of their causal softmax weights (scaled as attend is). The kept tokens fill
 * slots `[0, kept)` in position order, the window's queries enter the query
 * window, and decoding continues with kvc_cache_append() as usual.
 * Needs scratch sized at prepare: set ::KVC_OPT_PREFILL_MAX to the longest
 * prompt first. Allocates nothing (but a first call freezes the cache, as append does).
 * @param cache    an empty ::KVC_MODE_STORE cache (nothing appended since creation or reset).
 * @param pos      position of the first token (>= 0).
 * @param n        prompt tokens, 1 <= n <= ::KVC_OPT_PREFILL_MAX.
 * @param k,v      `n * n_kv_heads * head_dim` floats each, token after token (each token as append takes it).
 * @param q        `n_window * n_q_heads * head_dim` floats: the queries of the last `n_window` tokens,
 *                 oldest first; NULL when n_window is 0.
 * @param n_window 0 (no scores: the policy's score-free rule) up to n. SnapKV uses 32 (kvpress 64).
 * @return ::KVC_OK, ::KVC_EINVAL (NULL pointer, n = 0, n_window > n), ::KVC_EMODE,
 *         ::KVC_ESTATE (cache not empty), ::KVC_ERANGE (n > prefill_max, positions overflow,
 *         protection keeps more than the capacity, or a value f16/bf16 would round to Inf),
 *         ::KVC_ENONFINITE, ::KVC_EFULL (n > capacity and the policy never evicts),
 *         ::KVC_EPOLICY, ::KVC_ENOMEM (first call only). On error nothing changes.
 */
KVC_API int kvc_cache_prefill(kvc_cache *cache, int64_t pos, uint32_t n, const float *k, const float *v,
                              const float *q, uint32_t n_window);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_index
 *  @{ */

/**
 * Make room for a token at `pos` and say where to write it.
 * @param cache   a ::KVC_MODE_INDEX cache.
 * @param pos     position of the token, greater than the previous one (>= 0).
 * @param slots   receives one slot per group (kvc_cache_groups() entries).
 * @param evicted NULL, or kvc_cache_groups() * kvc_cache_max_evictions() entries:
 *                per group, the positions evicted by this call, then -1 padding.
 * @param k,v     the token's keys/values (`n_kv_heads * head_dim` floats) when the
 *                policy reads keys or values (their stats, or the rows themselves:
 *                ::KVC_NEED_KEY_STATS, ::KVC_NEED_VALUE_STATS, ::KVC_NEED_KEYS,
 *                ::KVC_NEED_VALUES); otherwise ignored (not even checked
 *                for NaN/Inf) and may be NULL.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EMODE, ::KVC_EORDER, ::KVC_ENONFINITE,
 *         ::KVC_EFULL, ::KVC_EPOLICY, ::KVC_ENOMEM (first call only).
 *         One exception to "a failed call changes nothing": when a user policy's
 *         `select` fails (::KVC_EPOLICY or its own code), the observations reported
 *         since the previous reserve have already reached the policy (and count in
 *         kvc_stats::attends); slots, positions and the other counters are unchanged.
 */
KVC_API int kvc_cache_reserve(kvc_cache *cache, int64_t pos, const float *k, const float *v, uint32_t *slots,
                              int64_t *evicted);

/**
 * Report attention mass per slot for one group. May be called several times
 * per step (e.g. once per layer): the calls between two reserves are averaged
 * and reach the policy as one step at the next reserve.
 * @param cache a ::KVC_MODE_INDEX cache.
 * @param group eviction group, < kvc_cache_groups().
 * @param mass `n` finite, non-negative values indexed by slot; `n` <= capacity.
 *             Entries of empty slots are ignored.
 * @param n    entries in `mass` (slots `[0, n)`); slots past `n` count as 0 in this call's average.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_EMODE, ::KVC_ERANGE (bad group or n),
 *         ::KVC_ENONFINITE (negative, NaN or Inf mass; nothing recorded).
 */
KVC_API int kvc_cache_observe(kvc_cache *cache, uint32_t group, const float *mass, uint32_t n);

/** Tokens a single reserve or append may evict per group (chunk * block). 0 on NULL.
    Saturates at UINT32_MAX, which only options that cannot freeze reach. */
KVC_API uint32_t kvc_cache_max_evictions(const kvc_cache *cache);

/**
 * INDEX-mode prefill: the engine ran the prompt through its own kernels and
 * says how much each token matters; libkvc says which tokens each group keeps
 * and where. Same rule as kvc_cache_prefill() (protection, then the
 * policy's kvc_policy::prefill, given `scores`), into an empty cache.
 * @param cache    an empty ::KVC_MODE_INDEX cache.
 * @param pos      position of the first token (>= 0); tokens are at pos .. pos + n - 1.
 * @param n        prompt tokens, 1 <= n <= ::KVC_OPT_PREFILL_MAX.
 * @param k,v      `n * n_kv_heads * head_dim` floats each when the policy reads keys or values
 *                 (or their statistics), as for kvc_cache_reserve(); otherwise ignored and may be NULL.
 * @param scores   NULL, or kvc_cache_groups() rows of `n` finite, non-negative floats: per group and
 *                 token, e.g. the softmax weight the last `n_window` queries give the token, averaged
 *                 over those queries and the group's query heads (what kvc_cache_prefill() computes).
 * @param n_window the last `n_window` tokens form the observation window and are kept (0..n).
 * @param keep     kvc_cache_groups() * kvc_cache_capacity() entries: per group, the prompt index
 *                 (0..n-1) of the token now in slot s, for s < kvc_cache_len(), increasing; then
 *                 UINT32_MAX. The engine copies prompt row keep[g*capacity + s] into slot s.
 * @return as kvc_cache_prefill(), with ::KVC_ENONFINITE also for negative scores. On error nothing changes.
 */
KVC_API int kvc_cache_prefill_index(kvc_cache *cache, int64_t pos, uint32_t n, const float *k, const float *v,
                                    const float *scores, uint32_t n_window, uint32_t *keep);

/** One row copy of a compaction plan: the engine copies slot `from` into slot `to` of the same group. */
typedef struct kvc_move {
    uint32_t from; /**< Slot the resident leaves (>= kvc_cache_len()). */
    uint32_t to;   /**< Empty slot it fills (< kvc_cache_len()). */
} kvc_move;

/**
 * Compaction plan for paged engines: move one group's residents into its
 * leading slots `[0, len)`, so that every page past them is empty and can
 * return to the engine's pool. Sources are all `>= len` and destinations all
 * `< len`, so the moves are independent (one batched gather/scatter). The cache
 * applies the plan to its own slot map (kvc_cache_positions(), pending
 * observations, the policy through `on_move`) before returning; the engine
 * copies the same rows before its next attention or observe. The slot of the
 * token just reserved is never moved. Call it after a reserve that evicted (or
 * after kvc_cache_prefill_index(): it never needs one); with no holes it
 * returns 0 moves. With ::KVC_OPT_BLOCK > 1 whole units move, each resident
 * keeping its offset in its unit (so a unit never mixes tokens of different
 * ages): read `len` above as `ceil(len / block) * block`. The residents then
 * fill the lowest ceil(len / block) units, the partly filled one (the newest
 * tokens) keeping its free tail.
 * @param cache a ::KVC_MODE_INDEX cache.
 * @param group eviction group, < kvc_cache_groups().
 * @param page  slots per engine page (>= 1; need not divide the capacity).
 * @param moves receives up to min(len, capacity - len) moves (capacity entries always suffice).
 * @param n_moves receives the number of moves written.
 * @param freed_pages NULL, or receives the pages to return: `[ceil(len / page), ceil(high / page))`, where
 *              `high` is one past the highest slot used since the previous compaction (or prefill, or
 *              reset): exactly the pages past the residents that an engine mapping a page on its first
 *              write holds. All pages from ceil(len / page) on are empty after the call.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL cache, moves or n_moves, page 0), ::KVC_EMODE, ::KVC_ERANGE (bad group).
 *         On error nothing changes.
 */
KVC_API int kvc_cache_compact(kvc_cache *cache, uint32_t group, uint32_t page, kvc_move *moves,
                              uint32_t *n_moves, uint32_t *freed_pages);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_introspect
 *  @{ */

/** Eviction groups: n_kv_heads in head scope, 1 in shared scope. 0 on NULL. */
KVC_API uint32_t kvc_cache_groups(const kvc_cache *cache);
/** Slots per group. 0 on NULL. */
KVC_API uint32_t kvc_cache_capacity(const kvc_cache *cache);
/** Resident tokens per group (the same for every group). 0 on NULL. */
KVC_API uint32_t kvc_cache_len(const kvc_cache *cache);
/**
 * Copy the slot -> position map of a group (-1 for empty slots).
 * @param cache any cache (before the first append every slot reads -1).
 * @param group eviction group, < kvc_cache_groups().
 * @param pos receives kvc_cache_capacity() entries.
 * @return ::KVC_OK, ::KVC_EINVAL, ::KVC_ERANGE (bad group).
 */
KVC_API int kvc_cache_positions(const kvc_cache *cache, uint32_t group, int64_t *pos);

/** Cumulative counters of a cache (reset by kvc_cache_reset()). */
typedef struct kvc_stats {
    uint64_t appends;   /**< Tokens appended or reserved. */
    uint64_t evictions; /**< Tokens evicted, summed over groups. */
    uint64_t attends;   /**< Attention steps (attend calls, or observed steps in INDEX mode). */
} kvc_stats;
/** Fill `*stats`. @return ::KVC_OK or ::KVC_EINVAL. */
KVC_API int kvc_cache_stats(const kvc_cache *cache, kvc_stats *stats);
/** The cache's policy name (its own copy); "" on NULL. */
KVC_API const char *kvc_cache_policy_name(const kvc_cache *cache);
/** @} */

/* ------------------------------------------------------------------------ */
/** @addtogroup kvc_kernel
 *  @{ */

/** Layout of K/V for kvc_attention(). Element strides are in elements of `dtype`. */
typedef struct kvc_attn_layout {
    uint32_t n_q_heads;  /**< Query heads, a multiple of n_kv_heads. */
    uint32_t n_kv_heads; /**< K/V heads. */
    uint32_t head_dim;   /**< Elements per row. */
    uint32_t n_keys;     /**< Keys per kv head (>= 1). */
    kvc_dtype dtype;     /**< Element type of K and V. */
    size_t row_stride;   /**< Elements between consecutive keys of one head (>= head_dim). */
    size_t head_stride;  /**< Elements between the first rows of consecutive kv heads: any value.
                              n_keys*row_stride for heads stored one after the other
                              (slot-major); head_dim with row_stride = n_kv_heads*head_dim
                              for all heads of a token stored together (token-major, as
                              llama.cpp does); 0 for one K/V shared by every head. */
    float scale;         /**< Logit scale; 0 means 1/sqrt(head_dim). */
} kvc_attn_layout;

/**
 * Decode attention for one token: `out[h] = softmax(scale * q[h] . K^T) . V`.
 * K and V share `layout`. Query head h reads kv head h / (n_q_heads/n_kv_heads);
 * all query heads of a kv head share one pass over its K and V rows, so the
 * memory traffic is one read of K and V whatever the GQA ratio (up to 64
 * query heads per kv head with the SIMD kernels, 8 with the scalar one;
 * beyond that, one pass per such block).
 *
 * Layout: K and V are only read, so any strides are accepted as long as
 * every offset can be addressed (::KVC_EOVERFLOW otherwise): heads stored
 * one after the other, token-major rows (all kv heads of a token together),
 * heads that overlap or share one K/V. Heads whose rows interleave are read
 * tile by tile together, so a token-major cache is still one sequential pass.
 *
 * Numerics: f16 and bf16 are widened to f32 exactly and all arithmetic is
 * f32. The softmax is computed online (running max and sum), so no exp
 * overflows; weights below ~1e-38 may read as 0. The logits themselves
 * must fit in f32 (|scale * q.k| < 3.4e38).
 * @param layout   shapes, dtype and strides of K and V.
 * @param q        `n_q_heads * head_dim` floats.
 * @param k,v      K and V; any address aligned to the element size (4 bytes
 *                 for f32, 2 for f16/bf16); 64-byte aligned rows are the fast path.
 * @param out      `n_q_heads * head_dim` floats (not overlapping the inputs).
 * @param weights  NULL, or `n_q_heads` rows of `weights_stride` floats receiving
 *                 the softmax weights (they sum to 1 per row), at no extra
 *                 pass over K or V. Entries past `n_keys` in a row are not written.
 * @param weights_stride floats between weight rows (>= n_keys) when weights != NULL.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL pointer, zero or inconsistent shape),
 *         ::KVC_EOVERFLOW (a stride makes an offset of K, V, q, out or weights
 *         exceed PTRDIFF_MAX bytes; such a layout cannot describe real memory).
 *         Non-finite inputs are not checked here (a cache checks them before
 *         they are stored). Their damage stays inside the heads that read
 *         them, on every ISA: a NaN or Inf in query head h may make head h's
 *         output and weights non-finite; one in a K or V row of kv head g may
 *         do so for the query heads of g (a K row spoils their whole softmax,
 *         not just its own weight). Every other head's output and weights are
 *         exactly what they would be without it.
 */
KVC_API int kvc_attention(const kvc_attn_layout *layout, const float *q, const void *k, const void *v, float *out,
                          float *weights, size_t weights_stride);

/**
 * As kvc_attention() for kv heads `[kv_begin, kv_end)` only (and their query
 * heads); `q`, `out` and `weights` are still indexed from head 0, so threads
 * can split one token's attention over disjoint ranges: calls on disjoint
 * ranges may run concurrently (the library itself never starts threads).
 * @return as kvc_attention(), plus ::KVC_ERANGE for a bad range.
 */
KVC_API int kvc_attention_heads(const kvc_attn_layout *layout, uint32_t kv_begin, uint32_t kv_end, const float *q,
                                const void *k, const void *v, float *out, float *weights, size_t weights_stride);

/**
 * Bytes of one K or V row of `head_dim` elements in `dtype`: 4, 2 and 2 per
 * element for f32, f16 and bf16; for ::KVC_DTYPE_Q8, `head_dim` rounded up
 * to a multiple of 4, plus the 4-byte scale. For Q8 this is also the
 * smallest ::kvc_attn_layout row_stride (strides are bytes there).
 * @return the size; 0 for an unknown dtype.
 */
KVC_API size_t kvc_row_bytes(kvc_dtype dtype, uint32_t head_dim);

/**
 * Quantise one row of `head_dim` floats to the ::KVC_DTYPE_Q8 format (the
 * rule is documented there): `head_dim` int8 values, zero padding up to a
 * multiple of 4 bytes, then the float32 scale.
 * @param x        `head_dim` finite floats.
 * @param head_dim elements of the row (>= 1).
 * @param row      kvc_row_bytes(KVC_DTYPE_Q8, head_dim) bytes, any alignment.
 * @return ::KVC_OK, ::KVC_EINVAL (NULL pointer, head_dim 0), ::KVC_ENONFINITE
 *         (NaN or Inf in x; row not written).
 */
KVC_API int kvc_quantize_q8(const float *x, uint32_t head_dim, void *row);

/**
 * The instruction set the attention kernel runs on: "scalar", "avx2"
 * (AVX2 + FMA + F16C), "avx512" (F, BW, VL, DQ), "avx512_vnni" (also VNNI:
 * ::KVC_DTYPE_Q8 dot products by vpdpwssd on the int8 keys widened to int16,
 * the query quantised once per call to int16 with one scale per head,
 * max|q|/32767, about 2^-16 relative), "avx512_bf16" (also BF16: bf16 dot products by vdpbf16ps, the
 * query split into two bf16 parts, about 2^-17 relative) or "neon". The
 * rounded queries are the only departure from f32 arithmetic on the stored
 * values; force "avx512" to avoid them. Chosen once, at
 * first use: the best one the CPU has and the OS enables (cpuid + XGETBV on
 * x86, so a hypervisor that hides ZMM state gets "avx2"; NEON is always
 * there on AArch64), unless the environment variable `KVC_FORCE_ISA` names
 * a usable one (other names are ignored). "avx512_bf16" is never chosen by
 * itself, only by name: where it was measured (an Intel Xeon,
 * docs/performance.md) it decodes bf16 10-12% slower than "avx512_vnni".
 * @return a static string; never NULL.
 */
KVC_API const char *kvc_active_isa(void);

/**
 * Force the kernel ISA for this process (tests, benchmarks).
 * @param isa "scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon", or NULL/"auto" for the CPU's
 *            best (ignoring `KVC_FORCE_ISA`).
 * @return ::KVC_OK, ::KVC_EUNKNOWN (bad name), ::KVC_ENOTSUP (not compiled in
 *         or not supported by this CPU); on error nothing changes.
 * May be called while other threads run attention: a call in progress keeps
 * the kernel it started with, later calls use the new one.
 */
KVC_API int kvc_set_isa(const char *isa);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* KVC_H */
