# make docs: Doxygen HTML of include/kvc.h and the guides in docs/ into
# $(BUILD)/docs/html. docs/Doxyfile turns every warning (an undocumented public
# item included) into a failure. The version shown is read from the header's
# KVC_VERSION_* macros (VERSION, top Makefile), never written in the Doxyfile.
DOCS_OUT := $(BUILD)/docs

docs:
	@command -v doxygen >/dev/null 2>&1 || { echo "make docs: doxygen not found (apt-get install doxygen)"; exit 1; }
	@test -n "$(VERSION_MAJOR)" || { echo "make docs: no version macros in include/kvc.h"; exit 1; }
	@rm -rf $(DOCS_OUT)/html
	@mkdir -p $(DOCS_OUT)
	KVC_VERSION=$(VERSION) KVC_DOCS_OUT=$(DOCS_OUT) doxygen docs/Doxyfile
	@echo "docs: $(DOCS_OUT)/html/index.html"
