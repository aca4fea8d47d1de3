# src/haul/install.mk - the version header, `make install`, `make deb` and
# the man page check.  Included before the Makefile's `all`: keep `all` the
# default goal.
#
# The version lives in one place, the VERSION file; `git describe` adds the
# commit when the tree is a git checkout.  $(BUILD)/gen/haul_version.h is
# rewritten only when either changes, so a build stays incremental.
haul_install_saved_goal := $(.DEFAULT_GOAL)

HAUL_VERSION := $(shell cat VERSION 2>/dev/null || echo 0)
# `make deb` builds in a copy without .git: scripts/mkdeb.sh passes HAUL_GIT.
ifeq ($(origin HAUL_GIT),undefined)
HAUL_GIT := $(shell git describe --always --dirty 2>/dev/null)
endif

$(BUILD)/gen/haul_version.h: FORCE
	@mkdir -p $(dir $@)
	@printf '#define HAUL_VERSION "%s"\n#define HAUL_GIT "%s"\n' '$(HAUL_VERSION)' \
		'$(HAUL_GIT)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/obj/src/haul/main.o $(BUILD)/obj/src/haul/cmd_version.o: $(BUILD)/gen/haul_version.h

# `make install`: PREFIX (default /usr/local) and DESTDIR as usual.  The
# systemd unit and its environment file go where systemd and /etc expect
# them whatever PREFIX is, except that SYSTEMDUNITDIR can be overridden.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= /lib/systemd/system
# The criu-compatible entry point: haul run under the name criu (a symlink),
# in a directory of its own that an operator puts first on PATH for a
# container engine (runc, crun) and nowhere else (man haul-criu).
LIBEXECDIR ?= $(PREFIX)/libexec
CRIU_COMPAT_DIR ?= $(LIBEXECDIR)/haul/criu-compat
MAN_PAGES := $(wildcard man/*.[0-9])

install: $(BUILD)/haul
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/haul
	install -m 755 $(BUILD)/haul $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(CRIU_COMPAT_DIR)
	ln -sf $(BINDIR)/haul $(DESTDIR)$(CRIU_COMPAT_DIR)/criu
	install -m 644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 scripts/haul.bash-completion $(DESTDIR)$(BASHCOMPDIR)/haul
	sed 's|@BINDIR@|$(BINDIR)|g' scripts/haul-pageserver.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/haul-pageserver.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/haul-pageserver.service
	test -e $(DESTDIR)$(SYSCONFDIR)/haul/pageserver.env || \
		install -m 644 scripts/haul-pageserver.env $(DESTDIR)$(SYSCONFDIR)/haul/pageserver.env
	chmod 700 $(DESTDIR)$(SYSCONFDIR)/haul

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/haul $(DESTDIR)$(CRIU_COMPAT_DIR)/criu \
		$(DESTDIR)$(BASHCOMPDIR)/haul $(DESTDIR)$(SYSTEMDUNITDIR)/haul-pageserver.service \
		$(patsubst man/%,$(DESTDIR)$(MANDIR)/man1/%,$(MAN_PAGES))

# `make deb`: a binary package from debian/, built by dpkg-buildpackage in
# this tree; the .deb lands in $(BUILD)/deb.  Its build tools are installed
# here only (not by `make deps`).
deb:
	HAUL_EXTRA_PKGS="dpkg-dev debhelper lintian" sh scripts/deps.sh
	sh scripts/mkdeb.sh $(BUILD)/deb

# Every option of each subcommand's --help is in its man page and back.
man-check: $(BUILD)/haul
	HAUL_BIN=$(BUILD)/haul sh tests/extra/ops_man.sh

FORCE:
.PHONY: install uninstall deb man-check FORCE

.DEFAULT_GOAL := $(haul_install_saved_goal)
