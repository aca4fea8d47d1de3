# haul: one flat, non-recursive Makefile.  `make BUILD=dir` keeps a separate
# build tree (helpers and CI use their own).  Modules may add rules for
# things that are not plain library sources in src/<module>/module.mk.
BUILD ?= build
CC ?= gcc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wvla -Wformat=2 -Wundef
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -D_GNU_SOURCE -Isrc -I$(BUILD)/gen -MMD -MP
LDLIBS := -lev -lprotobuf-c -llz4 -luring -lsodium -lxxhash -lnftables -lbpf -lelf -lpthread -lm
LDFLAGS ?=

PROTOS := $(wildcard proto/*.proto)
PROTO_C := $(PROTOS:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
LIB_SRC := $(wildcard src/common/*.c src/tracker/*.c src/pageserver/*.c src/restore/*.c) \
	$(filter-out src/haul/main.c,$(wildcard src/haul/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_C:%.c=%.o)
UNIT_SRC := $(wildcard tests/unit/*.c)
INTEG_SRC := $(wildcard tests/integration/*.c)
PROGS := $(patsubst tests/progs/%.c,$(BUILD)/progs/%,$(wildcard tests/progs/*.c)) \
	$(patsubst bench/%.c,$(BUILD)/progs/%,$(wildcard bench/*.c))

# Module fragments may append to LIB_OBJ (e.g. an embedded binary), PROGS,
# TEST_EXTRA (built before `make test` runs) and BENCH_DEPS.
-include $(wildcard src/*/module.mk bench/module.mk bench/servers/module.mk bench/ctr/module.mk tests/module.mk)
.DEFAULT_GOAL := all

all: $(BUILD)/haul $(PROGS)

deps:
	@sh scripts/deps.sh

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) -std=gnu11 $(CFLAGS) -I$(BUILD)/gen -c -o $@ $<

$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libhaul.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/haul: $(BUILD)/obj/src/haul/main.o $(BUILD)/libhaul.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/progs/%: tests/progs/%.c $(wildcard tests/progs/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $< -lpthread -lm

$(BUILD)/progs/%: bench/%.c $(BUILD)/libhaul.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libhaul.a $(LDLIBS)

$(BUILD)/test-unit: $(UNIT_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/libhaul.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

$(BUILD)/test-integration: $(INTEG_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/libhaul.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

TEST_BINS := $(BUILD)/test-unit $(if $(INTEG_SRC),$(BUILD)/test-integration)

# `make test` is what CI runs: install what is missing, build, run everything.
test: deps
	$(MAKE) all $(TEST_BINS) $(TEST_EXTRA)
	$(MAKE) asan-bin
	BUILD=$(BUILD) sh tests/run.sh

# haul itself under ASan + UBSan, for the tests that run it so (misuse.c)
ASAN_FLAGS = CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	LDFLAGS="-fsanitize=address,undefined"
asan-bin:
	$(MAKE) BUILD=build-asan $(ASAN_FLAGS) build-asan/haul

check: test

asan:
	$(MAKE) BUILD=build-asan $(ASAN_FLAGS) test

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]')

clean:
	rm -rf build build-*

.PHONY: all deps test check asan asan-bin format format-check clean bench bench-full demo fuzz
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
