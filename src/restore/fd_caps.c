/*
 * fd_caps.c - the capability exchange: which resource kinds a target can
 * restore, so that the source refuses before the freeze a process the
 * target could not take, instead of failing inside the downtime.
 *
 * A kind is named by the image's name for it (the FdKind value name,
 * "FD_PIPE") and the version of its image message (struct rst_fd_ops).
 * The target's page server announces its list in SessionOk.resources; the
 * source classifies the process's fds with the same table and looks each
 * kind up there.  A target that announces nothing is older than the
 * exchange: it restores the kinds of image version 3, i.e. version 3 of
 * every kind this table had then.  The per-process resources whose image
 * fields an older restorer would ignore (POSIX timers, seccomp: res_int.h)
 * are announced too, by their own names, and checked when the process
 * uses them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore.h"

/* The image's name of @kind ("FD_PIPE"), or NULL. */
static const char *kind_name(Haul__Img__FdKind kind)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&haul__img__fd_kind__descriptor, kind);

	return v ? v->name : NULL;
}

/* Whether @name is an item of the comma list @list. */
static bool listed(const char *list, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = list; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, nl) && (p[nl] == ',' || !p[nl]))
			return true;
	return false;
}

size_t rst_resource_caps(const char *without, const struct ps_resource_cap **out)
{
	static struct ps_resource_cap caps[48];
	size_t n = 0;

	for (size_t i = 0; rst_fd_kinds[i] && n < sizeof(caps) / sizeof(caps[0]); i++) {
		const char *name = kind_name(rst_fd_kinds[i]->kind);

		if (!name || listed(without, name))
			continue;
		caps[n].kind = name;
		caps[n++].version = rst_fd_kinds[i]->version;
	}
	/* the per-process resources an older restorer would silently drop (res_int.h) */
	for (size_t i = 0; rst_res_kinds[i] && n < sizeof(caps) / sizeof(caps[0]); i++) {
		const struct rst_res_ops *r = rst_res_kinds[i];

		if (!r->cap || listed(without, r->cap))
			continue;
		caps[n].kind = r->cap;
		caps[n++].version = r->version;
	}
	/* a live process tree: SessionOpen.tree and .tree_session (sink_tree.c) */
	if (n < sizeof(caps) / sizeof(caps[0]) && !listed(without, RST_CAP_TREE)) {
		caps[n].kind = RST_CAP_TREE;
		caps[n++].version = 1;
	}
	*out = caps;
	return n;
}

/* Whether a target with @caps restores version @k->version of @k. */
static bool can_restore(const struct rst_fd_ops *k, const struct ps_resource_cap *caps, size_t n)
{
	const char *name = kind_name(k->kind);

	if (!n)
		return k->version <= 3; /* an older target: the kinds of image version 3 */
	for (size_t i = 0; name && i < n; i++)
		if (!strcmp(caps[i].kind, name) && caps[i].version >= k->version)
			return true;
	return false;
}

struct caps_of {
	const struct ps_resource_cap *caps;
	size_t n;
};

static int check_kind(void *arg, const struct rst_fd_probe *p, const struct rst_fd_ops *k,
		      char *why, size_t whylen)
{
	const struct caps_of *c = arg;

	if (can_restore(k, c->caps, c->n))
		return 0;
	snprintf(why, whylen,
		 "fd %d (%.256s) is a %s (%s version %u), which the target cannot restore; "
		 "upgrade haul on the target",
		 p->fd, p->target, k->name, kind_name(k->kind), k->version);
	return -EOPNOTSUPP;
}

/* Whether a target with @caps restores resource @r (an older target, none: never). */
static bool can_restore_res(const struct rst_res_ops *r, const struct ps_resource_cap *caps,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(caps[i].kind, r->cap) && caps[i].version >= r->version)
			return true;
	return false;
}

int rst_caps_check(pid_t pid, const struct ps_client *c, char *why, size_t whylen)
{
	struct caps_of co;
	int ret;

	co.n = ps_client_caps(c, &co.caps);
	ret = rst_fd_each(pid, check_kind, &co, why, whylen);
	for (size_t i = 0; !ret && rst_res_kinds[i]; i++) {
		const struct rst_res_ops *r = rst_res_kinds[i];

		if (!r->cap || !r->in_use || can_restore_res(r, co.caps, co.n) || !r->in_use(pid))
			continue;
		snprintf(why, whylen,
			 "pid %d has %s (%s version %u), which the target cannot restore; upgrade "
			 "haul on the target",
			 (int)pid, r->name, r->cap, r->version);
		ret = -EOPNOTSUPP;
	}
	return ret;
}
