# weld - merge neural-network checkpoints by weight arithmetic.
# CFLAGS/CPPFLAGS/LDFLAGS belong to the user; warnings and required flags
# live in other variables. `make help` lists the targets. Any C11 compiler
# with OpenMP builds weld: `make CC=clang BUILD=build-clang`.

# make's built-in CC is cc: gcc unless the user names a compiler
ifeq ($(origin CC),default)
CC       = gcc
endif
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wwrite-strings -Wformat=2 -Wvla -Wundef
REQ      = -std=c11 -D_GNU_SOURCE -fopenmp -fno-fast-math -ffp-contract=off -fno-trapping-math -MMD -MP $(GCC_ONLY)
# Flags only gcc knows, given when $(CC) says it is gcc (clang also
# defines __GNUC__, so the probe reads the --version text).
CC_IS_GCC := $(shell $(CC) --version 2>/dev/null | grep -q 'Free Software Foundation' && echo yes)
GCC_ONLY = $(if $(CC_IS_GCC),-fvect-cost-model=dynamic)
PKGS     = libzip libcjson libxxhash zlib openblas lapacke
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lzip -lcjson -lxxhash -lz -lopenblas -llapacke)
LIBS     = $(PKG_LIBS) -lm -fopenmp
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
BUILD   ?= build
PYTHON  ?= /usr/bin/python3

LIB_SRC  = $(wildcard lib/common/*.c formats/*.c lib/*.c lib/engine/*.c lib/recipe/*.c lib/moe/*.c)
CMD_SRC  = $(wildcard cmd/*.c)
TEST_SRC = $(wildcard tests/unit/test_*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
CMD_OBJ  = $(CMD_SRC:%.c=$(BUILD)/%.o)
TESTS    = $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

INCLUDES = -Ilib/common -Iformats -Ilib -Ilib/engine -Ilib/recipe -Ilib/moe
ALL_CFLAGS = $(REQ) $(WARN) $(PKG_CFLAGS) $(INCLUDES) $(CPPFLAGS) $(CFLAGS)

.PHONY: print-pkgs all weld deps demo check check-layers check-slurm slurm unit cli asan clang fuzz bench install uninstall clean help

all: weld  ## build ./weld

# ./weld is a copy of $(BUILD)/weld, refreshed whenever they differ, so that
# it is always the binary of the BUILD last asked for.
weld: $(BUILD)/weld
	@cmp -s $(BUILD)/weld weld || cp $(BUILD)/weld weld

$(BUILD)/weld: $(BUILD)/libweld.a $(CMD_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libweld.a $(LIBS) $(LDFLAGS)

$(BUILD)/libweld.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/fixtures.c $(BUILD)/libweld.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< tests/unit/fixtures.c $(BUILD)/libweld.a $(LIBS) -lcmocka $(LDFLAGS)

$(BUILD)/mkmodel: tests/tools/mkmodel.c $(BUILD)/libweld.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libweld.a $(LIBS) $(LDFLAGS)

deps:  ## install the Debian packages weld needs, if any is missing
	@PYTHON=$(PYTHON) sh tests/deps.sh

demo: deps  ## build, create small example models and merge them
	@$(MAKE) --no-print-directory weld $(BUILD)/mkmodel
	@sh tests/demo.sh

unit: $(TESTS)  ## build and run the cmocka unit tests
	@sh tests/run-unit.sh $(TESTS)

cli: weld $(BUILD)/mkmodel  ## run the command-line tests
	@WELD=$(CURDIR)/weld MKMODEL=$(CURDIR)/$(BUILD)/mkmodel PYTHON=$(PYTHON) sh tests/cli/run.sh

asan:  ## unit and CLI tests under AddressSanitizer + UBSan
	@$(MAKE) --no-print-directory BUILD=build-asan \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" build-asan/weld-asan unit

build-asan/weld-asan: $(BUILD)/libweld.a $(CMD_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libweld.a $(LIBS) $(LDFLAGS)

check-layers:  ## fail on an #include that points up the layering (lib/common < formats < lib < cmd)
	@sh tests/check_layers.sh

check: deps  ## install what is missing, build, run every test (plain, sanitized, and with clang)
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory weld unit
	@$(MAKE) --no-print-directory cli
	@$(MAKE) --no-print-directory asan
	@WELD=$(CURDIR)/build-asan/weld-asan MKMODEL=$(CURDIR)/$(BUILD)/mkmodel PYTHON=$(PYTHON) \
	  sh tests/cli/run.sh quick
	@MKMODEL=$(CURDIR)/$(BUILD)/mkmodel sh tests/compare_builds.sh $(CURDIR)/weld $(CURDIR)/build-asan/weld-asan
	@$(MAKE) --no-print-directory clang
	@$(MAKE) --no-print-directory slurm

# gcc's build runs its hot loops as AVX-512 or AVX2 clones and intrinsics
# where the processor has them; clang's runs the plain loops, which the
# unit tests then check on any machine, and both must write the same bytes
clang: weld $(BUILD)/mkmodel  ## build with clang in build-clang, run its unit tests, compare its merges with ./weld's
	@$(MAKE) --no-print-directory CC=clang BUILD=build-clang build-clang/weld unit
	@MKMODEL=$(CURDIR)/$(BUILD)/mkmodel sh tests/compare_builds.sh $(CURDIR)/weld $(CURDIR)/build-clang/weld

slurm: weld $(BUILD)/mkmodel  ## a merge in parts on a one-node Slurm cluster (skipped if Slurm is missing)
	@echo "== tests/slurm/test_slurm.sh"
	@WELD=$(CURDIR)/weld MKMODEL=$(CURDIR)/$(BUILD)/mkmodel sh tests/slurm/test_slurm.sh

check-slurm:  ## install slurm-wlm and munge if missing, then the Slurm test (a failure if it cannot run)
	@WITH_SLURM=1 PYTHON=$(PYTHON) sh tests/deps.sh
	@$(MAKE) --no-print-directory weld $(BUILD)/mkmodel
	@WELD=$(CURDIR)/weld MKMODEL=$(CURDIR)/$(BUILD)/mkmodel SLURM_REQUIRED=1 sh tests/slurm/test_slurm.sh

fuzz:  ## build the libFuzzer targets (clang) and run each for FUZZ_SECONDS
	@sh tests/fuzz/run.sh

# the pkg-config packages weld links (tests/fuzz/run.sh asks for them)
print-pkgs:
	@echo $(PKGS)

# make bench FAMILY=zeros runs one family (tests/bench/gen_family.py --kind)
BENCH_FAMILIES = gauss zeros few heavytail eight huge
bench: weld $(BUILD)/mkmodel  ## speed and memory against cat and PyTorch, per family (FAMILY=...; ~35 GB of disk for all)
	@for f in $(or $(FAMILY),$(BENCH_FAMILIES)); do \
		FAMILY=$$f MKMODEL=$(CURDIR)/$(BUILD)/mkmodel PYTHON=$(PYTHON) sh tests/bench/run.sh || exit 1; \
	done

install: weld  ## install the binary and man pages under PREFIX
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 weld $(DESTDIR)$(BINDIR)/weld
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/weld
	cd man && for f in *.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$$f; done

clean:
	rm -rf $(BUILD) build build-asan build-fuzz weld

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)
