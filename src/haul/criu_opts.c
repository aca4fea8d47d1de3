/*
 * criu_opts.c - which options of a DUMP or RESTORE request haul implements.
 *
 * Every field of the request's options is walked through the protobuf-c
 * descriptor, so an option added to proto/criu_rpc.proto is refused until
 * it is listed here.  An option counts as set when it is present and not
 * the value that means "off" (false, 0, an empty list): runc sends
 * shell_job = false, tcp_established = false and the like on every request.  Fields
 * unknown to this proto (newer CRIUs) are refused by number.  The first
 * refusal names the option; nothing has been touched when it is made.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "haul/criu_int.h"
#include "restore/ctr.h"

enum {
	FOR_DUMP = 1,
	FOR_RESTORE = 2,
};

/* The options haul implements and for which requests; what each means is in haul-criu.1. */
static const struct {
	const char *name;
	unsigned req;
} supported[] = {
	{"images_dir_fd", FOR_DUMP | FOR_RESTORE},
	{"work_dir_fd", FOR_DUMP | FOR_RESTORE},
	{"log_file", FOR_DUMP | FOR_RESTORE},
	{"log_level", FOR_DUMP | FOR_RESTORE},
	{"notify_scripts", FOR_DUMP | FOR_RESTORE},
	{"pid", FOR_DUMP},
	{"leave_running", FOR_DUMP},
	{"root", FOR_DUMP | FOR_RESTORE},
	{"ext_mnt", FOR_DUMP | FOR_RESTORE},
	{"manage_cgroups", FOR_DUMP | FOR_RESTORE},
	{"cg_root", FOR_RESTORE},
	{"freeze_cgroup", FOR_DUMP},
	{"orphan_pts_master", FOR_DUMP | FOR_RESTORE},
	{"evasive_devices", FOR_RESTORE},
	{"rst_sibling", FOR_RESTORE},
	{"cpu_cap", FOR_DUMP | FOR_RESTORE},
	{"ghost_limit", FOR_DUMP | FOR_RESTORE},
	{"empty_ns", FOR_DUMP | FOR_RESTORE},
	{"config_file", FOR_DUMP | FOR_RESTORE},
	{"inherit_fd", FOR_RESTORE},
	{"track_mem", FOR_DUMP},
	{"parent_img", FOR_DUMP},
	{"external", FOR_DUMP},
	{"join_ns", FOR_RESTORE},
	{"tcp_established", FOR_DUMP | FOR_RESTORE},
};

/* Whether field @f of @msg holds something other than its "off" value. */
static bool field_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return *(const size_t *)(base + f->quantifier_offset) > 0;
	if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
		const void *p = *(void *const *)(base + f->offset);

		if (f->type == PROTOBUF_C_TYPE_STRING)
			return p && ((const char *)p)[0];
		return p != NULL;
	}
	if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
		return false;
	switch (f->type) {
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)(base + f->offset);
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)(base + f->offset) != 0;
	default:
		return true;
	}
}

int criu_opts_check(Haul__Criu__ReqType type, const Haul__Criu__Options *o, char *why, size_t wl)
{
	const ProtobufCMessageDescriptor *d = &haul__criu__options__descriptor;
	/* a pre-dump takes what a dump takes (it writes pages only) */
	unsigned req = type == HAUL__CRIU__REQ_TYPE__REQ_RESTORE ? FOR_RESTORE : FOR_DUMP;
	const char *rname = type == HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP ? "pre-dump"
			    : req == FOR_DUMP			       ? "dump"
								       : "restore";

	if (o->base.n_unknown_fields) {
		snprintf(why, wl,
			 "option number %u of the %s request is unknown to haul's criu entry "
			 "point (a newer criu's)",
			 o->base.unknown_fields[0].tag, rname);
		return -EOPNOTSUPP;
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		size_t k;

		if (!field_set(&o->base, f))
			continue;
		for (k = 0; k < sizeof(supported) / sizeof(supported[0]); k++)
			if (!strcmp(supported[k].name, f->name))
				break;
		if (k == sizeof(supported) / sizeof(supported[0]) || !(supported[k].req & req)) {
			snprintf(why, wl,
				 "the %s option '%s' is not supported by haul's criu entry point",
				 rname, f->name);
			return -EOPNOTSUPP;
		}
	}
	/* What the supported options may say. */
	if (o->has_manage_cgroups_mode &&
	    o->manage_cgroups_mode != HAUL__CRIU__CGROUP_MODE__CG_SOFT &&
	    o->manage_cgroups_mode != HAUL__CRIU__CGROUP_MODE__CG_DEFAULT) {
		snprintf(why, wl,
			 "manage_cgroups_mode %d is not supported: haul leaves the cgroups' "
			 "properties to the engine (soft and default only)",
			 (int)o->manage_cgroups_mode);
		return -EOPNOTSUPP;
	}
	/* runc always says the network namespace's devices are its own business */
	if (o->has_empty_ns && (o->empty_ns & ~(uint32_t)CLONE_NEWNET)) {
		snprintf(why, wl,
			 "empty_ns %#x is not supported: only the network namespace (%#x) can be "
			 "left empty",
			 o->empty_ns, CLONE_NEWNET);
		return -EOPNOTSUPP;
	}
	/*
	 * runc names /etc/criu/runc.conf on every request; CRIU ignores a
	 * missing one.  haul reads no criu configuration: one that exists
	 * would be silently ignored, so it is refused.
	 */
	if (o->config_file && o->config_file[0] && access(o->config_file, F_OK) == 0) {
		snprintf(why, wl,
			 "the criu configuration file %s exists, and haul does not read criu "
			 "configuration files: move it away (or set the container annotation "
			 "org.criu.config to \"\")",
			 o->config_file);
		return -EOPNOTSUPP;
	}
	/*
	 * runc names a network namespace path of config.json so:
	 * net[INODE]:extRootNetNS; a pid namespace path as pid[INODE]:extRootPidNS
	 * (the container joined it: pidns_ctr.c)
	 */
	for (size_t i = 0; i < o->n_external; i++) {
		if ((strncmp(o->external[i], "net[", 4) && strncmp(o->external[i], "pid[", 4)) ||
		    !strstr(o->external[i], "]:")) {
			snprintf(why, wl,
				 "the dump option external '%s' is not supported: only an external "
				 "network or PID namespace (net[INODE]:KEY, pid[INODE]:KEY) is",
				 o->external[i]);
			return -EOPNOTSUPP;
		}
	}
	/* runc names a uts or ipc namespace path of config.json so: join_ns {ns, ns_file} */
	for (size_t i = 0; i < o->n_join_ns; i++) {
		const Haul__Criu__JoinNs *j = o->join_ns[i];
		const char *ns = j->ns ? j->ns : "", *file = j->ns_file ? j->ns_file : "";
		bool extra = j->extra_opt && j->extra_opt[0];

		if (!rst_ctr_join_kind(ns) || file[0] != '/' || extra) {
			snprintf(why, wl,
				 "the restore option join_ns %s '%s'%s is not supported: only "
				 "the uts and ipc namespaces are joined, by an absolute path; "
				 "remove the %s namespace path from config.json",
				 ns, file, extra ? " with extra options" : "", ns);
			return -EOPNOTSUPP;
		}
	}
	if (req == FOR_DUMP && !(o->has_pid && o->pid > 0)) {
		snprintf(why, wl, "a dump of the caller itself (no pid) is not supported");
		return -EOPNOTSUPP;
	}
	if (req == FOR_RESTORE && !(o->root && o->root[0] == '/')) {
		snprintf(why, wl, "a restore needs the container's root (the root option)");
		return -EOPNOTSUPP;
	}
	return 0;
}
