# Benchmarks (included by the top Makefile). `make bench` prints, never fails on speed.
#   BENCH_RUNS=n     timed runs per case (median reported; at least 7)
#   BENCH_NAIVE=0    skip the (slow) plain-loop baseline
#   BENCH_PARTS=...  comma-separated subset of dram,fma,attn,cache,step
#   KVC_FORCE_ISA=x  benchmark another kernel (scalar, avx2, ...)
BENCH_ATTN := $(BUILD)/bench/bench_attn

$(BENCH_ATTN): tests/bench/bench_attn.c $(STATIC) include/kvc.h
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $< $(STATIC) -lm -lpthread

.PHONY: bench-attn
bench: bench-attn
bench-attn: $(BENCH_ATTN)
	$(BENCH_ATTN)

# Prefill compression: a 4096-token prompt into 512 slots (tests/bench/bench_prefill.c).
BENCH_PREFILL := $(BUILD)/bench/bench_prefill

$(BENCH_PREFILL): tests/bench/bench_prefill.c $(STATIC) include/kvc.h
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) -lm

.PHONY: bench-prefill
bench: bench-prefill
bench-prefill: $(BENCH_PREFILL)
	$(BENCH_PREFILL)
