# src/pageserver/module.mk - the fuzzers and the ingest benchmark.
#
#   make fuzz [FUZZ_TIME=s]   libFuzzer (clang -fsanitize=fuzzer, ASan+UBSan), FUZZ_TIME
#                             seconds for each target: wire_fuzz (frames before and
#                             after authentication), msg_fuzz (the real server after
#                             authentication), image_fuzz (haul restore's image loader)
#   make bench-ingest         page ingest GB/s vs. a plain TCP loop, same run
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS := wire_fuzz msg_fuzz image_fuzz
FUZZ_LIBS := -lev -lprotobuf-c -llz4 -luring -lsodium -lxxhash -lbpf -lelf -lpthread -lm
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	-D_GNU_SOURCE -Isrc -I$(BUILD)/gen
# What the targets link: every module but the CLI, instrumented for coverage
# (image_fuzz reaches the fd kinds' checks in src/restore).
FUZZ_LIB_SRC := $(wildcard src/common/*.c src/pageserver/*.c src/tracker/*.c src/restore/*.c)
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(BUILD)/fuzz/obj/%.o) \
	$(PROTO_C:$(BUILD)/gen/%.c=$(BUILD)/fuzz/obj/gen/%.o) $(BUILD)/gen/vmflags_bpf.o \
	$(BUILD)/gen/unix_skbs_bpf.o

$(BUILD)/fuzz/obj/src/%.o: src/%.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(BUILD)/fuzz/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/fuzz/%_fuzz: tests/fuzz/%_fuzz.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

# Seed writers: plain builds against the library.
$(BUILD)/fuzz/%_seeds: tests/fuzz/%_seeds.c $(BUILD)/libhaul.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libhaul.a $(LDLIBS)

fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%) $(FUZZ_TARGETS:%_fuzz=$(BUILD)/fuzz/%_seeds)
	@for t in $(FUZZ_TARGETS:%_fuzz=%); do \
		mkdir -p $(BUILD)/fuzz/corpus-$$t && \
		$(BUILD)/fuzz/$${t}_seeds $(BUILD)/fuzz/corpus-$$t && \
		$(BUILD)/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_TIME) -rss_limit_mb=2048 \
			-max_len=65536 $(BUILD)/fuzz/corpus-$$t || exit 1; \
	done

bench-ingest: $(BUILD)/progs/ps_ingest
	$(BUILD)/progs/ps_ingest

.PHONY: bench-ingest
