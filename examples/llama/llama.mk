# examples/llama: a llama2.c-format runner on libkvc caches, and the quality
# evaluation of every policy against the full cache.
LLAMA_DIR  := $(BUILD)/examples/llama
LLAMA_BINS := $(LLAMA_DIR)/llama $(LLAMA_DIR)/eval
LLAMA_OBJ  := $(BUILD)/obj/examples/llama

$(LLAMA_OBJ)/%.o: OBJ_FLAGS = $(TEST_CFLAGS) -Iexamples/llama -Iexamples/common

$(LLAMA_DIR)/llama: $(LLAMA_OBJ)/run.o $(LLAMA_OBJ)/model.o $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(LLAMA_DIR)/eval: $(LLAMA_OBJ)/eval.o $(LLAMA_OBJ)/model.o $(SVGPLOT_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ -lm

.PHONY: llama quality
llama: $(LLAMA_BINS)

# The measured figures of docs/quality.md (a few minutes on 2 cores).
quality: $(LLAMA_DIR)/eval
	$(LLAMA_DIR)/eval --csv docs/quality.csv --md $(BUILD)/quality-table.md --svg docs/quality.svg

CHECK_DEPS += $(LLAMA_BINS)
