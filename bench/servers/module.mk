# bench/servers/module.mk - the load clients of the server tests and
# `make bench-servers` (issue 11): build/progs/srvload_{redis,memcached,http,udp},
# built by `all` like the other test programs.
#
# `make bench-servers`: Redis and memcached migrated under client load, every
# mode, sizes from BENCH_SERVERS_ARGS (bench/servers/run.sh --help); installs
# the server packages first (bench/servers/deps.sh: left stopped and disabled):
# SRV_PKGS for the srv_* tests and the bench, criu for its peer cells (run only
# when `criu check` passes), nginx and PostgreSQL for the servers to come
# (issue 12).  `make test` installs none of them; each srv_* test installs what
# it needs when it runs.
SRVLOAD_BINS := $(patsubst bench/servers/srvload_%.c,$(BUILD)/progs/srvload_%,\
	$(wildcard bench/servers/srvload_*.c))
PROGS += $(SRVLOAD_BINS)
SRV_PKGS := redis-server redis-tools memcached nftables python3
SRV_PKGS_BENCH := criu
SRV_PKGS_LATER := nginx postgresql postgresql-contrib openssl
BENCH_SERVERS_ARGS ?=

$(BUILD)/progs/srvload_redis $(BUILD)/progs/srvload_memcached: SRVLOAD_KV := bench/servers/kv.c
$(BUILD)/progs/srvload_%: bench/servers/srvload_%.c bench/servers/load.c bench/servers/load.h \
		bench/servers/kv.c bench/servers/kv.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE $(LDFLAGS) -o $@ $< bench/servers/load.c $(SRVLOAD_KV)

deps-servers:
	@sh bench/servers/deps.sh $(SRV_PKGS) $(SRV_PKGS_BENCH) $(SRV_PKGS_LATER)

bench-servers: deps deps-servers
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	BUILD=$(BUILD) bench/servers/run.sh --out $(BENCH_OUT)/servers $(BENCH_SERVERS_ARGS)

# `make bench-postgres`: PostgreSQL with 2 GiB of shared_buffers migrated under
# pgbench, pre-copy against stop-and-copy (bench/servers/pg.sh --help); the
# table goes to bench/RESULTS.md.
BENCH_POSTGRES_ARGS ?=
bench-postgres: deps deps-servers
	$(MAKE) --no-print-directory BUILD=$(BUILD) all
	BUILD=$(BUILD) bench/servers/pg.sh --out $(BENCH_OUT)/postgres --results $(BENCH_POSTGRES_ARGS)

.PHONY: deps-servers bench-servers bench-postgres
