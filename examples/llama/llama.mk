# examples/llama: a llama2.c-format runner on libkvc caches, and the quality
# evaluation of every policy against the full cache.
LLAMA_DIR  := $(BUILD)/examples/llama
LLAMA_BINS := $(LLAMA_DIR)/llama
LLAMA_HDRS := examples/llama/model.h include/kvc.h

$(LLAMA_DIR)/%.o: examples/llama/%.c $(LLAMA_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -Iexamples/llama $(CFLAGS) -c $< -o $@

$(LLAMA_DIR)/llama: $(LLAMA_DIR)/run.o $(LLAMA_DIR)/model.o $(STATIC)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

.PHONY: llama
llama: $(LLAMA_BINS)

CHECK_DEPS += $(LLAMA_BINS)
