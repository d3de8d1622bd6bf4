# examples/pointer_chase: the pointer-chasing lab (docs/pointer_chase.md).
PC_BIN  := $(BUILD)/examples/pointer_chase
PC_SRCS := $(wildcard examples/pointer_chase/*.c)
PC_OBJS := $(PC_SRCS:%.c=$(BUILD)/obj/%.o)

$(PC_OBJS): OBJ_FLAGS = -std=c11 $(WARN) -Iinclude

$(PC_BIN): $(PC_OBJS) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

.PHONY: pointer-chase
# The default run quoted in docs/pointer_chase.md.
pointer-chase: $(PC_BIN)
	$(PC_BIN)

CHECK_DEPS += $(PC_BIN)
