# src/haul/module.mk - `make demo`: install what is missing, build, then
# live-migrate a workload between two network namespaces (scripts/demo.sh).
# Included before the Makefile's `all`: keep `all` the default goal.
haul_saved_goal := $(.DEFAULT_GOAL)

demo: deps
	$(MAKE) --no-print-directory BUILD=$(BUILD) $(BUILD)/haul $(BUILD)/progs/mig_workload
	BUILD=$(BUILD) sh scripts/demo.sh

.DEFAULT_GOAL := $(haul_saved_goal)

# make install, make deb, the version header: src/haul/install.mk
include src/haul/install.mk
