#!/bin/sh
# Documentation:
#  1. every code block of docs/*.md marked `<!-- snippet: FILE -->` still
#     appears, line for line, in FILE (so the guides quote code that compiles);
#  2. `make docs` passes with Doxygen warnings as errors, shows the header's
#     version, and the warning gate really fails on an undocumented function.
BUILD=${BUILD:-build}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

awk '
function check(path, n, start,    i, j, m, line, src, ok) {
    m = 0
    while ((getline line < path) > 0) src[++m] = line
    close(path)
    if (m == 0) { printf "%s:%d: snippet source %s is missing or empty\n", FILENAME, start, path; bad = 1; return }
    for (i = 1; i + n - 1 <= m; i++) {
        ok = 1
        for (j = 1; j <= n; j++) if (src[i + j - 1] != blk[j]) { ok = 0; break }
        if (ok) return
    }
    printf "%s:%d: code block no longer matches %s\n", FILENAME, start, path
    bad = 1
}
/^<!-- snippet: [^ ]+ -->$/ { path = $3; want = 1; next }
want && /^```/ { inblk = 1; n = 0; start = FNR; want = 0; next }
want { printf "%s:%d: snippet marker not followed by a code block\n", FILENAME, FNR; bad = 1; want = 0 }
inblk && /^```/ { inblk = 0; if (n == 0) { printf "%s:%d: empty snippet\n", FILENAME, start; bad = 1 } else check(path, n, start); count++; next }
inblk { blk[++n] = $0 }
END { printf "%d quoted code blocks checked against their sources\n", count; if (count == 0) bad = 1; exit bad }
' docs/*.md || fail "docs quote code that is not in the examples any more"

# make help and the README's target table list the same targets, and each exists
help=$(make --no-print-directory help BUILD="$BUILD" | sed -n 's/^  \([a-z_-]*\) .*/\1/p' | sort)
readme=$(sed -n 's/^| `make \([a-z_-]*\)` |.*/\1/p' README.md | sort)
[ -n "$help" ] && [ "$help" = "$readme" ] || fail "make help and README.md's target table differ:
$(printf '%s\n' "$help" >"$tmp/h"; printf '%s\n' "$readme" >"$tmp/r"; diff "$tmp/h" "$tmp/r")"
for t in $help; do
    make -n --no-print-directory "$t" BUILD="$BUILD" >/dev/null 2>&1 || fail "make $t: no such target"
done
echo "make help and README list the same $(echo "$help" | wc -l) targets"

command -v doxygen >/dev/null 2>&1 || { echo "skip: doxygen not found"; exit 77; }

make --no-print-directory docs BUILD="$BUILD" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "make docs"; }
index=$BUILD/docs/html/index.html
[ -f "$index" ] || fail "$index not generated"
version=$(sed -n 's/^#define KVC_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/kvc.h | paste -sd. -)
grep -q "projectnumber\">&#160;$version<" "$index" || fail "version $version not shown in $index"
for page in kvc_8h.html md_docs_integration.html md_docs_policies.html; do
    [ -f "$BUILD/docs/html/$page" ] || fail "$page not generated"
done
# the reference in the order a user needs it, without internal names
topics=$(grep -o '[0-9]\. [A-Z][A-Za-z :/]*' "$BUILD/docs/html/modules.html" | head -n 9 | cut -d' ' -f2- | paste -sd'|' -)
[ "$topics" = "Creating a cache|Options|STORE mode: append and attend|INDEX mode: reserve and observe|Introspection|Attention kernel|Policies|Errors|Version" ] ||
    fail "API topics out of order: $topics"
if grep -l 'KVC__[A-Z]*_END\|KVC__[A-Z]*_ENUM' "$BUILD"/docs/html/group__*.html "$BUILD/docs/html/kvc_8h.html"; then
    fail "internal KVC__/kvc__ names in the reference (pages above)"
fi
echo "make docs: no warnings, version $version, topics in order, no internal names"

# the gate must bite: the same configuration over an undocumented function fails
cat >"$tmp/undoc.h" <<'EOF'
/** @file undoc.h
 *  @brief A header with one undocumented function. */
int kvc_undocumented(int x);
EOF
if { cat docs/Doxyfile; printf 'INPUT = %s\nUSE_MDFILE_AS_MAINPAGE =\nOUTPUT_DIRECTORY = %s\n' "$tmp/undoc.h" "$tmp"; } |
    KVC_VERSION=$version doxygen - >"$tmp/gate.log" 2>&1; then
    cat "$tmp/gate.log"
    fail "Doxygen accepted an undocumented function: warnings are not errors"
fi
grep -q 'kvc_undocumented' "$tmp/gate.log" || { cat "$tmp/gate.log"; fail "the gate failed for another reason"; }
echo "an undocumented function fails the build, as it should"
