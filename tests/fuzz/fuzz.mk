# Fuzzing (included by the top Makefile).
#   make fuzz              build the libFuzzer targets (clang) and run each for
#                          FUZZ_SECONDS from the committed corpus; new inputs
#                          go to $(BUILD)/fuzz/corpus-<target>, crashes to $(BUILD)/fuzz/
#   make fuzz-merge        add to tests/fuzz/corpus/<target> only the finds that reach
#                          new code (-merge=1 on edges, not hit counts: keeps it small)
#   make fuzz-replay       plain replay of the committed corpus (any CC; part of make check)
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?= -max_len=1024
FUZZ_TARGETS := api spec
FUZZ_SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz-%)
FUZZ_REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz-replay-%)
FUZZ_HDRS    := include/kvc.h tests/fuzz/fuzz_util.h tests/fuzz/kernel_op.h tests/snapshot.h
FUZZ_HELPERS := tests/snapshot.c

$(FUZZ_DIR)/obj/%.o: %.c include/kvc.h $(wildcard lib/*.h lib/attn/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(KVC_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(ISA_FLAGS_$(basename $(notdir $<))) -c $< -o $@

$(FUZZ_DIR)/fuzz-%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ) $(FUZZ_HELPERS) $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(TEST_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_HELPERS) $(FUZZ_LIB_OBJ) -lm

$(BUILD)/tests/fuzz-replay-%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c $(FUZZ_HELPERS) $(STATIC) $(FUZZ_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/driver.c $(FUZZ_HELPERS) $(STATIC) -lm

# Built only through the pattern rule above, the objects would count as
# intermediate and be deleted after each link: keep them (the sanitizer
# build of lib/attn/avx512_ext.c alone takes minutes).
.SECONDARY: $(FUZZ_LIB_OBJ)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus-$$t; \
	    echo "== fuzz-$$t for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_DIR)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) \
	        $$(test -f tests/fuzz/$$t.dict && echo -dict=tests/fuzz/$$t.dict) \
	        -artifact_prefix=$(FUZZ_DIR)/ -print_final_stats=1 \
	        $(FUZZ_DIR)/corpus-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

fuzz-merge: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus-$$t; \
	    $(FUZZ_DIR)/fuzz-$$t -merge=1 -use_counters=0 tests/fuzz/corpus/$$t $(FUZZ_DIR)/corpus-$$t || exit 1; \
	    echo "tests/fuzz/corpus/$$t: $$(ls tests/fuzz/corpus/$$t | wc -l) inputs"; \
	done

fuzz-replay: $(FUZZ_REPLAY)
	@for t in $(FUZZ_TARGETS); do $(BUILD)/tests/fuzz-replay-$$t tests/fuzz/corpus/$$t || exit 1; done

CHECK_DEPS += $(FUZZ_REPLAY)
.PHONY: fuzz-build fuzz-merge fuzz-replay

# The replay again, under ASan + UBSan (tests/parts/asan.sh); ASAN_FLAGS is the top Makefile's.
fuzz-replay-asan:
	$(MAKE) --no-print-directory BUILD=build/asan OUT=build/asan/lib CFLAGS="$(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)" \
	    $(FUZZ_TARGETS:%=build/asan/tests/fuzz-replay-%)
	@for t in $(FUZZ_TARGETS); do \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/tests/fuzz-replay-$$t tests/fuzz/corpus/$$t || exit 1; \
	done
.PHONY: fuzz-replay-asan
