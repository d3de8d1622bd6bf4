# Threads under ThreadSanitizer (included by the top Makefile).
#   make tsan    build the library and tests/threads/threads.c with clang
#                -fsanitize=thread and run it; any report fails.
TSAN_CC      ?= clang
TSAN_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_DIR     := $(BUILD)/tsan
TSAN_LIB_OBJ := $(LIB_SRC:%.c=$(TSAN_DIR)/obj/%.o)
TSAN_BIN     := $(TSAN_DIR)/threads

$(TSAN_DIR)/obj/%.o: %.c include/kvc.h $(wildcard lib/*.h lib/attn/*.h)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(KVC_CFLAGS) $(TSAN_FLAGS) $(ISA_FLAGS_$(basename $(notdir $<))) -c $< -o $@

$(TSAN_BIN): tests/threads/threads.c $(TSAN_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(TSAN_CC) $(TEST_CFLAGS) $(TSAN_FLAGS) -o $@ $< $(TSAN_LIB_OBJ) -lm -lpthread

tsan-build: $(TSAN_BIN)

tsan: $(TSAN_BIN)
	TSAN_OPTIONS="halt_on_error=1 exitcode=66 $(TSAN_OPTIONS)" $(TSAN_BIN)

.PHONY: tsan tsan-build

# make check builds it when the compiler is there (tests/parts/tsan.sh skips otherwise)
ifneq ($(shell command -v $(TSAN_CC) 2>/dev/null),)
CHECK_DEPS += $(TSAN_BIN)
endif
