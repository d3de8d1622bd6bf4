#!/bin/sh
# include/kvc.h from C++: warning-free at -std=c++11 -Wall -Wextra -Wpedantic
# -Werror (g++, and clang++ when present), safe to include twice, and usable:
# the program links against libkvc.a (extern "C") and runs a tiny cache.
BUILD=${BUILD:-build}
OUT=${OUT:-lib}
command -v g++ >/dev/null 2>&1 || { echo "skip: g++ not found"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$OUT/libkvc.a" ] || fail "$OUT/libkvc.a missing (run make)"

cat >"$tmp/use.cpp" <<'EOF'
#include <kvc.h>
#include <kvc.h> // twice: the include guard must hold
#include "kvc.h"

#include <cstdio>
#include <cstring>
#include <vector>

static_assert(KVC_VERSION_NUMBER == KVC_VERSION_MAJOR * 10000 + KVC_VERSION_MINOR * 100 + KVC_VERSION_PATCH,
              "version macros");

int main() {
    if (kvc_version_number() != KVC_VERSION_NUMBER) return 1;
    if (std::strcmp(kvc_version_string(), KVC_VERSION_STRING) != 0) return 2;
    if (std::strcmp(kvc_strerror(KVC_EFULL), "cache is full and the policy never evicts") != 0) return 3;
    const kvc_policy *p = kvc_policy_by_name("h2o");
    if (!p || std::strcmp(p->name, "h2o") != 0) return 4;

    kvc_cache *c = nullptr;
    if (kvc_cache_create(&c, 2, 4, 8, 8, KVC_DTYPE_F32, KVC_MODE_STORE, p, nullptr) != KVC_OK) return 5;
    if (kvc_cache_set(c, KVC_OPT_RECENT, 2) != KVC_OK) return 6;
    std::vector<float> k(16), v(16), q(32), out(32);
    for (int t = 0; t < 20; t++) {
        for (size_t i = 0; i < k.size(); i++) k[i] = v[i] = float((t + int(i)) % 7) / 7.0f;
        for (size_t i = 0; i < q.size(); i++) q[i] = float((t * 3 + int(i)) % 5) / 5.0f;
        if (kvc_cache_append(c, t, k.data(), v.data()) != KVC_OK) return 7;
        if (kvc_cache_attend(c, q.data(), out.data()) != KVC_OK) return 8;
    }
    kvc_stats st;
    if (kvc_cache_stats(c, &st) != KVC_OK || st.appends != 20 || st.evictions != 2 * 12) return 9;
    if (kvc_cache_len(c) != 8) return 10;
    kvc_cache_destroy(c);
    std::printf("C++ ok: libkvc %s\n", kvc_version_string());
    return 0;
}
EOF

flags="-std=c++11 -Wall -Wextra -Wpedantic -Werror -Iinclude"
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || { echo "$cxx not found: not checked"; continue; }
    $cxx $flags "$tmp/use.cpp" "$OUT/libkvc.a" -lm -o "$tmp/use-$cxx" >"$tmp/log" 2>&1 ||
        { cat "$tmp/log"; fail "$cxx could not compile or link kvc.h as C++11"; }
    "$tmp/use-$cxx" || fail "$cxx program failed (exit $?)"
done
