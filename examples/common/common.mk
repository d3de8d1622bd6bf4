# examples/common: code shared by the examples (not part of libkvc).
#   svgplot.c/.h   SVG line plots with error bars, log axes and panels; link
#                  $(SVGPLOT_OBJ) and add -Iexamples/common to use it.
#   cli.h          the monotonic clock and a bounded integer parser for command
#                  lines (header-only; -Iexamples/common).
SVGPLOT_OBJ   := $(BUILD)/obj/examples/common/svgplot.o
SVGPLOT_CHECK := $(BUILD)/examples/common/svgplot_check

$(BUILD)/obj/examples/common/%.o: OBJ_FLAGS = $(TEST_CFLAGS) -Iexamples/common

$(SVGPLOT_CHECK): $(BUILD)/obj/examples/common/svgplot_check.o $(SVGPLOT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

CHECK_DEPS += $(SVGPLOT_CHECK)
