#!/bin/sh
# examples/llama on the real stories260K checkpoint: with the full cache,
# greedy decoding from BOS must reproduce the published text token for token
# (200 tokens), the BPE encoder must give back the same ids for that text,
# byte-fallback tokens must round-trip, and bad input must fail clearly.
BUILD=${BUILD:-build}
dir=${KVC_MODEL_DIR:-../shared/models/stories260K}
bin=$BUILD/examples/llama/llama
data=tests/data
if [ ! -f "$dir/stories260K.bin" ] || [ ! -f "$dir/tok512.bin" ]; then
    echo "model: stories260K.bin/tok512.bin not found in $dir (set KVC_MODEL_DIR); skipping"
    exit 77
fi
[ -x "$bin" ] || { echo "FAIL: $bin not built (make check builds it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
run() { "$bin" -m "$dir/stories260K.bin" -z "$dir/tok512.bin" "$@"; }

# 1. the published greedy text, token ids and bytes; on every kernel ISA this CPU runs
for isa in "" scalar; do
    KVC_FORCE_ISA=$isa run -t 0 --steps 200 --ids >"$tmp/ids" 2>"$tmp/err" || bad "greedy ids run failed: $(cat "$tmp/err")"
    cmp -s "$tmp/ids" "$data/llama_greedy200.ids" || { bad "greedy token ids differ (isa '${isa:-auto}'):"; diff "$data/llama_greedy200.ids" "$tmp/ids" | head -5; }
    KVC_FORCE_ISA=$isa run -t 0 --steps 200 >"$tmp/txt" 2>"$tmp/err" || bad "greedy text run failed: $(cat "$tmp/err")"
    cmp -s "$tmp/txt" "$data/llama_greedy200.txt" || { bad "greedy text differs (isa '${isa:-auto}'):"; diff "$data/llama_greedy200.txt" "$tmp/txt" | head -5; }
done
[ "$(wc -l <"$tmp/ids")" -eq 200 ] || bad "expected 200 generated ids, got $(wc -l <"$tmp/ids")"
published='Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.'
case "$(head -c ${#published} "$tmp/txt")" in
"$published") ;;
*) bad "text does not begin with the published sentence: $(head -c 80 "$tmp/txt")" ;;
esac

# 2. BPE: encoding the published beginning gives the ids greedy decoding produced
run --encode -i "$published" >"$tmp/enc" 2>"$tmp/err" || bad "encode failed: $(cat "$tmp/err")"
n=$(wc -l <"$tmp/enc")
[ "$n" -gt 30 ] || bad "encoding gave only $n tokens"
head -n "$n" "$data/llama_greedy200.ids" | cmp -s - "$tmp/enc" || bad "encoding of the published text differs from the greedy ids"

# 3. byte fallback and leading-space handling: the prompt is printed back exactly
prompt='Zoë said “naïve café” 😀 ok'
run -i "$prompt" --steps 0 >"$tmp/rt" 2>"$tmp/err" || bad "round-trip run failed: $(cat "$tmp/err")"
printf '%s\n' "$prompt" | cmp -s - "$tmp/rt" || bad "prompt did not round-trip: '$(cat "$tmp/rt")'"
# U+1F600 is F0 9F 98 80, not in the vocabulary: the dummy-prefix space, then
# the byte tokens <0xF0> <0x9F> <0x98> <0x80> (ids byte + 3 in this vocabulary)
run --encode -i "😀" >"$tmp/emoji" 2>/dev/null
[ "$(tr '\n' ' ' <"$tmp/emoji")" = "410 243 162 155 131 " ] ||
    bad "emoji should encode as a space and four byte tokens: $(tr '\n' ' ' <"$tmp/emoji")"

# 4. seeded sampling is reproducible, and a different seed changes it
run -t 1 -p 0.9 --seed 7 --steps 60 --no-stop >"$tmp/s1" 2>/dev/null
run -t 1 -p 0.9 --seed 7 --steps 60 --no-stop >"$tmp/s2" 2>/dev/null
run -t 1 -p 0.9 --seed 8 --steps 60 --no-stop >"$tmp/s3" 2>/dev/null
cmp -s "$tmp/s1" "$tmp/s2" || bad "same seed gave different samples"
cmp -s "$tmp/s1" "$tmp/s3" && bad "different seeds gave identical samples"

# 5. a small budget evicts through the chosen policy and still runs to the end
run -t 0 --steps 300 --no-stop --policy "h2o recent=16" --budget 48 --ids >"$tmp/h2o" 2>"$tmp/err" ||
    bad "h2o budget 48 failed: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/h2o")" -eq 300 ] || bad "h2o run generated $(wc -l <"$tmp/h2o") tokens, not 300"
grep -q ' 0 evictions' "$tmp/err" && bad "budget 48 over 300 tokens evicted nothing: $(cat "$tmp/err")"

# 6. clear failures
run -t 0 --steps 100 --policy full --budget 50 >/dev/null 2>"$tmp/err" && bad "full cache past its budget should fail"
grep -q 'full' "$tmp/err" || bad "no clear message for a full cache: $(cat "$tmp/err")"
run --policy nosuch >/dev/null 2>"$tmp/err" && bad "unknown policy accepted"
grep -qi 'unknown' "$tmp/err" || bad "no clear message for an unknown policy: $(cat "$tmp/err")"
"$bin" -m "$tmp/none.bin" -z "$dir/tok512.bin" >/dev/null 2>"$tmp/err" && bad "missing checkpoint accepted"
grep -q 'cannot open' "$tmp/err" || bad "no clear message for a missing checkpoint: $(cat "$tmp/err")"
head -c 1000 "$dir/stories260K.bin" >"$tmp/trunc.bin"
"$bin" -m "$tmp/trunc.bin" -z "$dir/tok512.bin" >/dev/null 2>"$tmp/err" && bad "truncated checkpoint accepted"
grep -q 'does not match' "$tmp/err" || bad "no clear message for a truncated checkpoint: $(cat "$tmp/err")"
run --budget 0 >/dev/null 2>&1 && bad "budget 0 accepted"

# 7. a run that exactly fills a full cache ends cleanly: no forward of a token
#    that is never used (it used to fail with "cache is full" after the last id)
run -t 0 --budget 64 --steps 64 --no-stop --ids >"$tmp/b64" 2>"$tmp/err" ||
    bad "64 steps at budget 64 failed: $(cat "$tmp/err")"
head -n 64 "$data/llama_greedy200.ids" | cmp -s - "$tmp/b64" || bad "64 steps at budget 64 gave other ids"
run -t 0 --budget 65 --steps 64 --no-stop --ids --policy full >/dev/null 2>"$tmp/err" ||
    bad "64 steps at budget 65 failed: $(cat "$tmp/err")"
run -t 0 --budget 63 --steps 64 --no-stop --ids --policy full >/dev/null 2>"$tmp/err" &&
    bad "64 steps at budget 63 with the full policy should fail"

# 8. --prompt-ids: BOS and the first 10 greedy ids, fed as ids, continue with
#    greedy ids 11..20, filling a budget of 20 exactly
{ echo 1; head -n 10 "$data/llama_greedy200.ids"; } >"$tmp/p.ids"
run -t 0 --budget 20 --steps 10 --no-stop --ids --prompt-ids "$tmp/p.ids" >"$tmp/cont" 2>"$tmp/err" ||
    bad "--prompt-ids run failed: $(cat "$tmp/err")"
sed -n 11,20p "$data/llama_greedy200.ids" | cmp -s - "$tmp/cont" || bad "--prompt-ids did not continue the greedy ids"
echo "1 5 x" >"$tmp/badids"
run --prompt-ids "$tmp/badids" >/dev/null 2>"$tmp/err" && bad "a non-numeric prompt id was accepted"
grep -q "'x' (entry 3) is not a token id" "$tmp/err" || bad "no clear message for a bad prompt id: $(cat "$tmp/err")"
run --prompt-ids "$tmp/p.ids" -i "Once" >/dev/null 2>"$tmp/err" && bad "--prompt-ids together with -i was accepted"

# 9. --trace: the fed tokens and argmaxes are the run's, and a window of 32
#    evicts exactly position pos-32 in every layer and group from pos 32 on
run -t 0 --steps 60 --no-stop --ids --policy window --budget 32 --trace "$tmp/trace" >"$tmp/wids" 2>"$tmp/err" ||
    bad "--trace run failed: $(cat "$tmp/err")"
awk '$1 == "step" { print $4 }' "$tmp/trace" | cmp -s - "$tmp/wids" || bad "trace argmaxes differ from the printed ids"
awk -v L=5 -v G=4 '
    $1 == "evict" { n++; if ($5 != $2 - 32 || NF != 5) bad = bad " " $0 }
    END { if (n != 28 * L * G) bad = bad " count " n; if (bad != "") { print bad; exit 1 } }' "$tmp/trace" ||
    bad "window trace evictions are not pos-32 in every layer and group"

[ $fail -eq 0 ] && echo "llama runner: published greedy text reproduced (200 tokens), BPE and byte fallback ok"
exit $fail
