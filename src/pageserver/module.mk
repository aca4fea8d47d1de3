# src/pageserver/module.mk - the wire fuzzer and the ingest benchmark.
#
#   make fuzz [FUZZ_TIME=s]   libFuzzer on the frame decoder (clang -fsanitize=fuzzer)
#   make bench-ingest         page ingest GB/s vs. a plain TCP loop, same run
FUZZ_TIME ?= 60
FUZZ_CC ?= clang
FUZZ_SRC := tests/fuzz/wire_fuzz.c src/common/wire.c src/common/log.c $(BUILD)/gen/wire.pb-c.c
FUZZ_LIBS := -lprotobuf-c -llz4 -lsodium

$(BUILD)/fuzz/wire_fuzz: $(FUZZ_SRC) src/common/wire.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		-Isrc -I$(BUILD)/gen -o $@ $(FUZZ_SRC) $(FUZZ_LIBS)

$(BUILD)/fuzz/wire_seeds: tests/fuzz/wire_seeds.c src/common/wire.c src/common/log.c $(BUILD)/gen/wire.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 -g -D_GNU_SOURCE -Isrc -I$(BUILD)/gen -o $@ $^ $(FUZZ_LIBS)

fuzz: $(BUILD)/fuzz/wire_fuzz $(BUILD)/fuzz/wire_seeds
	@mkdir -p $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/wire_seeds $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/wire_fuzz -max_total_time=$(FUZZ_TIME) -rss_limit_mb=1024 \
		$(BUILD)/fuzz/corpus

bench-ingest: $(BUILD)/progs/ps_ingest
	$(BUILD)/progs/ps_ingest

.PHONY: bench-ingest
