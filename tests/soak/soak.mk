# Load test (included by the top Makefile).
#   make soak           SOAK_STEPS tokens (default 2000000) over 96 caches, on
#                       the CPU's best ISA twice and on every other usable ISA
#                       once; fails on any allocation after warm-up, RSS
#                       growth, or a hash that differs (tests/soak/run.sh)
#   SOAK_STEPS=n        tokens per run; make check runs a short version
#                       (tests/parts/soak.sh)
SOAK_BIN   := $(BUILD)/tests/soak
SOAK_STEPS ?= 2000000

$(SOAK_BIN): tests/soak/soak.c $(STATIC) include/kvc.h
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) -lm

soak: $(SOAK_BIN)
	@SOAK_BIN=$(SOAK_BIN) SOAK_STEPS=$(SOAK_STEPS) sh tests/soak/run.sh

CHECK_DEPS += $(SOAK_BIN)
.PHONY: soak
