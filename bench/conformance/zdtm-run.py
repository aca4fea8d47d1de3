#!/usr/bin/env python3
# zdtm-run.py - haul's conformance runner on CRIU's zdtm "static" suite.
#
# Each zdtm static test is a small program that sets up some kernel state
# (a mapping, a lock, a socket, a timer...), daemonizes, writes its pid file,
# waits for SIGTERM and then checks that state, writing PASS or FAIL to its out
# file.  This runner starts each test the way CRIU's test/zdtm.py does in the
# host flavour (`make -C DIR NAME.pid` with the same environment, the test's
# .hook and .checkskip, its .desc flags), and:
#   1. baseline: SIGTERM at once; a test that does not PASS with no checkpoint
#      at all is excluded ("does not pass here") and says nothing about haul;
#   2. checkpoint + restore: `haul checkpoint PID --images DIR` then
#      `haul restore --images DIR --detach`, SIGTERM, and the verdict:
#        PASS     the restored test found its state intact;
#        FAIL     haul said it succeeded and the test found its state wrong
#                 (a silent wrong restore: the one verdict that must be zero);
#        REFUSED  haul refused before touching the source (its message is
#                 kept) and the source still passes its own check;
#        ERROR    haul failed after touching the source (a lost or damaged
#                 workload), or the test did not end within the time bound;
#   3. migrate (a sample): two network namespaces on one bridge (198.18.0.0/15
#      test addresses), `haul pageserver` in the target one, the test started
#      and `haul migrate` run in the source one; same verdicts.
# With --tool criu the same steps use `criu dump`/`criu restore` (as zdtm.py
# calls them) to give CRIU's column on the same machine.
#
# The zdtm tests are CRIU's code: nothing of them lives in this repository.
# Build them outside it and pass the directory (see bench/RESULTS.md).
# Every name the runner makes (netns, veth, bridge, cgroup, temp dir) holds its
# pid; everything is removed at the end, even on failure or ^C.
import argparse
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Resource groups: first match wins.  Kept coarse, so that a group's counts
# can be compared between runs and with CRIU's.
GROUPS = [
    ("tasks", r"pidfd|^stopped|^dumpable|^xids|^pstree|^busyloop|^time$|^zombie|^pid"),
    ("sockets", r"^scm|sock"),
    ("memory", r"uffd|^maps|^cow|mem|mmap|^shm-|^shmemfd"),
    ("namespaces", r"(^|_)(ns|netns|mntns|utsname|uts|ipcns|pidns|userns|cgroupns|timens)|"
     r"ns$|^(uns|sysctl|mnt_ext|unshare|helper_zombie_child)"),
    ("mounts", r"mnt|mount|bind|overmount|tmpfs|devpts|autofs|binfmt|overlay|sysfs|"
     r"^(rfs|fs|mountpoints|fuse|s390|ghost_on_rofs)"),
    ("cgroups", r"cgroup"),
    ("sockets", r"sock|sk-|^(tun|tcp|udp|unix|packet|netlink|net|ipv|icmp|bridge|macvlan|"
     r"vxlan|veth|sit|conntrack|route|socket|cmsg|nft|ip)"),
    ("ipc", r"sem|msgque|^shm|ipc|^mq"),
    ("signals-timers", r"sig|timer|itimer|^(clock|alarm|restart_sync|posix|rtc|timens)"),
    ("events", r"epoll|inotify|fanotify|eventfd|signalfd|aio|io_uring|uring|fsnotify"),
    ("locks", r"lock|flock|lease"),
    ("files", r"file|fd|fifo|pipe|unlink|link|write|^(del_|dev|chroot|cwd|deleted|"
     r"ghost|fanotify|mknod|opath|sk_|umask|vt|tty|pty|console|memfd|fifo|rmdir|"
     r"cow|stopped|dup|maps_file|chmod|xattr|tempfile|fs)"),
    ("memory", r"map|mem|mprotect|mlock|madvise|huge|thp|vdso|vsx|shmem|brk|mmx|"
     r"^(mtime_mmap|vma|pages|unbindable|grow|sbrk|self|stack|uffd|userfaultfd|"
     r"remap|zero|guard)"),
    ("cpu-regs", r"fpu|sse|avx|xsave|pkey|mxcsr|^(arm|ppc|s390|x86|seccomp_noop)"),
    ("creds-security", r"cap|cred|uid|gid|group|seccomp|apparmor|selinux|lsm|"
     r"securebits|prctl|pdeath|personality|no_new_privs|keyring"),
    ("tasks", r"pid|pthread|thread|zombie|fork|clone|session|pgrp|sid|child|task|"
     r"futex|rseq|sched|rlimit|env|cmdline|exec|vfork|ptrace|proc|stop|poll|"
     r"^(loginuid|oom|cpuset|comm|wait|sleep|utsname|caps)"),
]


def group_of(name):
    for g, rx in GROUPS:
        if re.search(rx, name):
            return g
    return "other"


def read_desc(path):
    """A zdtm .desc is a Python dict literal; an empty or missing one is {}."""
    try:
        with open(path) as f:
            txt = f.read().strip()
    except OSError:
        return {}
    if not txt:
        return {}
    try:
        return eval(txt, {"__builtins__": {}}, {})
    except Exception:
        return {"_bad": txt}


def flag(desc, f):
    return f in desc.get("flags", "").split()


def tail_words(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def alive(pid):
    """A zombie is gone: this VM's init reaps orphans only every 1-2 s."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rfind(")") + 2] != "Z"


def wait_gone(pid, tmo):
    end = time.time() + tmo
    while time.time() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rfind(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def kill_tree(pid):
    if not pid or pid <= 1:
        return
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class Runner:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.realpath(a.zdtm)
        self.tmp = tempfile.mkdtemp(prefix="haul-zdtm-%d." % os.getpid())
        self.tag = "hz%d" % os.getpid()
        self.cg = None
        self.ps = None
        self.netns = None
        self.rows = []
        self.log = open(os.path.join(a.out, "run.log"), "w")
        self.test_cgroups = self.zdtm_cgroups()

    @staticmethod
    def zdtm_cgroups():
        """The cgroups zdtm tests make (zdtmtst...), in every mounted hierarchy."""
        found = set()
        for root in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else []:
            base = os.path.join("/sys/fs/cgroup", root)
            for top in [base] + ([] if not os.path.isdir(base) else
                                 [os.path.join(base, d) for d in os.listdir(base)]):
                if os.path.basename(top).startswith("zdtmtst") and os.path.isdir(top):
                    found.add(top)
        return found

    # --- environment ---------------------------------------------------
    def setup_cgroup(self):
        """A cgroup2 directory per run, so that a test's children die with it."""
        for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            if os.path.exists(os.path.join(root, "cgroup.procs")) and \
                    os.path.exists(os.path.join(root, "cgroup.subtree_control")):
                d = os.path.join(root, "haul-zdtm-%d" % os.getpid())
                try:
                    os.mkdir(d)
                except OSError:
                    continue
                self.cg = d
                return

    def cg_kill(self):
        if not self.cg:
            return
        try:
            with open(os.path.join(self.cg, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            for p in open(os.path.join(self.cg, "cgroup.procs")).read().split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass

    def setup_net(self):
        """Source and target namespaces joined by a bridge in a third one."""
        p = os.getpid()
        self.netns = ["hz%d-src" % p, "hz%d-dst" % p, "hz%d-br" % p]
        sh = """set -e
ip netns add {0}; ip netns add {1}; ip netns add {2}
ip -n {2} link add hz{p}br type bridge; ip -n {2} link set hz{p}br up
for n in 0 1; do
  ip link add hz{p}v$n type veth peer name hz{p}p$n
  ip link set hz{p}p$n netns {2}; ip -n {2} link set hz{p}p$n master hz{p}br up
done
ip link set hz{p}v0 netns {0}; ip link set hz{p}v1 netns {1}
ip -n {0} link set lo up; ip -n {1} link set lo up
ip -n {0} addr add 198.18.0.1/24 dev hz{p}v0; ip -n {0} link set hz{p}v0 up
ip -n {1} addr add 198.18.0.2/24 dev hz{p}v1; ip -n {1} link set hz{p}v1 up
""".format(*self.netns, p=p)
        subprocess.run(["sh", "-c", sh], check=True)
        self.key = os.path.join(self.tmp, "key")
        with open(self.key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(self.key, 0o600)
        self.start_pageserver()

    def start_pageserver(self):
        logf = open(os.path.join(self.tmp, "pageserver.log"), "w")
        self.ps = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + self.netns[1], self.a.haul, "pageserver",
             "--listen", "198.18.0.2:7171", "--key", self.key],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(100):
            if "listening on" in tail_words(logf.name):
                return
            if self.ps.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the page server did not start: " + tail_words(logf.name))

    def cleanup(self):
        if self.ps and self.ps.poll() is None:
            os.killpg(self.ps.pid, signal.SIGKILL)
            self.ps.wait()
        self.cg_kill()
        if self.cg:
            for _ in range(50):
                try:
                    os.rmdir(self.cg)
                    break
                except OSError:
                    time.sleep(0.1)
        for n in self.netns or []:
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)
        # cgroups the tests made and left (cgroup04, cgroup_ignore...), deepest first
        for top in self.zdtm_cgroups() - self.test_cgroups:
            for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- one test --------------------------------------------------------
    def env(self, desc):
        e = dict(os.environ, TMPDIR=os.environ.get("TMPDIR", "/tmp"))
        if not flag(desc, "suid") and not self.a.as_root:
            # the same numbers as zdtm.py (and criu's tests)
            e.update(ZDTM_UID="18943", ZDTM_GID="58467", ZDTM_GROUPS="27495 48244")
        return e

    def hook(self, name, arg):
        h = os.path.join(self.dir, name + ".hook")
        if os.access(h, os.X_OK):
            try:
                r = subprocess.run([h, arg], cwd=self.dir, stdout=self.log,
                                   stderr=subprocess.STDOUT, timeout=self.a.timeout)
            except subprocess.TimeoutExpired:
                return False
            return r.returncode == 0
        return True

    def cleanout(self, name):
        subprocess.run(["make", "--no-print-directory", "-C", self.dir, name + ".cleanout"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, name, desc, netns=None):
        """Start the test; its pid, or an error string."""
        self.cleanout(name)
        cmd = ["make", "--no-print-directory", "-C", self.dir, name + ".pid"]
        if netns:
            cmd = ["nsenter", "--net=/run/netns/" + netns] + cmd
        cg = self.cg

        def enter():
            if cg:
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write("0")
        try:
            r = subprocess.run(cmd, env=self.env(desc), stdout=self.log, stderr=subprocess.STDOUT,
                               timeout=int(desc.get("timeout", 0) or 0) + self.a.timeout,
                               preexec_fn=enter)
        except subprocess.TimeoutExpired:
            return "start timed out"
        if r.returncode:
            return "start failed"
        try:
            pid = int(open(os.path.join(self.dir, name + ".pid")).readline())
        except (OSError, ValueError):
            return "no pid file"
        if not alive(pid):
            return "died at start"
        if not self.hook(name, "--post-start"):
            return "post-start hook failed"
        return pid

    def check(self, name, pid, desc):
        """SIGTERM the test and read its verdict: (passed, detail)."""
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError as e:
            return False, "cannot signal pid %d: %s" % (pid, e.strerror)
        if not wait_gone(pid, int(desc.get("timeout", 0) or 0) + self.a.timeout):
            return False, "pid %d did not exit on SIGTERM" % pid
        out = tail_words(os.path.join(self.dir, name + ".out"))
        for _ in range(20):    # the out file is written just before exit
            if out.strip():
                break
            time.sleep(0.05)
            out = tail_words(os.path.join(self.dir, name + ".out"))
        if "PASS" in out.split():
            return True, ""
        lines = [ln for ln in out.splitlines() if ln.strip()]
        # zdtm's fail() line is often empty ("FAIL: x.c:12:  (errno...)"): the
        # test's own message is the line before it
        return False, (" / ".join(lines[-2:]) if lines else "no out file")[:400]

    def finish(self, name, pids):
        for p in pids:
            kill_tree(p)
        self.cg_kill()
        self.hook(name, "--clean")
        self.umount_under()
        self.cleanout(name)

    def umount_under(self):
        """Tests that mount (cgroup04, cgroup_ignore...) may leave their mounts."""
        with open("/proc/mounts") as f:
            mnts = [ln.split()[1] for ln in f]
        for m in sorted(set(mnts), key=len, reverse=True):
            if m.startswith(self.dir + "/"):
                subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)

    def tool(self, args, tmo):
        """Run haul/criu: (rc, last lines of its output)."""
        try:
            r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=tmo, errors="replace")
        except subprocess.TimeoutExpired as e:
            return 124, "timed out after %d s" % tmo, (e.output or "")
        out = r.stdout
        self.log.write("$ %s\n%s[rc %d]\n" % (" ".join(args), out, r.returncode))
        self.log.flush()
        msg = [ln for ln in out.splitlines() if ln.strip()]
        errs = [ln for ln in msg if re.search(r"refus|cannot|error|fail|not supported|"
                                              r"unsupported|Error", ln)]
        last = (errs or msg or [""])[-1][:300]
        if r.returncode and not last:
            last = "exit %d with no message" % r.returncode
        return r.returncode, last, out

    def cr(self, name, pid, desc):
        """Checkpoint and restore; (verdict, message)."""
        img = os.path.join(self.tmp, "img-" + name)
        shutil.rmtree(img, ignore_errors=True)
        os.mkdir(img)
        os.chmod(img, 0o777)
        if not self.hook(name, "--pre-dump"):
            return "ERROR", "pre-dump hook failed", [pid]
        pidfile = os.path.join(self.dir, name + ".pid")
        if self.a.tool == "criu":
            copts = desc.get("opts", "").split() + ["--pidfile", pidfile]
            dargs = [self.a.criu, "dump", "-o", "dump.log", "-D", img, "-v4", "--tree",
                     str(pid)] + copts + desc.get("dopts", "").split() + ["--timeout", "10"]
        else:
            dargs = [self.a.haul, "checkpoint", str(pid), "--images", img]
        rc, msg, _ = self.tool(dargs, self.a.timeout)
        if rc:
            if self.a.tool == "criu":
                msg = self.criu_log(img, "dump.log") or msg
            if not alive(pid):
                return "ERROR", "checkpoint failed and the source is gone: " + msg, [pid]
            ok, why = self.check(name, pid, desc)
            if not ok:
                return "ERROR", "refused (%s) but the source then failed: %s" % (msg, why), [pid]
            return "REFUSED", msg, [pid]
        if not wait_gone(pid, 5):
            kill_tree(pid)
        if self.a.tool == "criu":
            # criu restores the same pid: wait for init to reap the zombie
            for _ in range(200):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.05)
            # as zdtm.py does: criu restore writes the new pid there
            os.unlink(pidfile)
            rargs = [self.a.criu, "restore", "-o", "restore.log", "-D", img, "-v4"] + \
                desc.get("opts", "").split() + ["--pidfile", pidfile] + \
                desc.get("ropts", "").split() + ["--restore-detached"]
        else:
            rargs = [self.a.haul, "restore", "--images", img, "--detach"]
        rc, msg, out = self.tool(rargs, self.a.timeout)
        if rc:
            if self.a.tool == "criu":
                msg = self.criu_log(img, "restore.log") or msg
            return "ERROR", "checkpointed, then restore failed: " + msg, []
        try:
            if self.a.tool == "criu":
                npid = int(open(pidfile).readline())
            else:
                npid = int(out.split()[-1])
        except (OSError, ValueError, IndexError):
            return "ERROR", "restore printed no pid: " + msg, []
        if not self.hook(name, "--post-restore"):
            return "ERROR", "post-restore hook failed", [npid]
        ok, why = self.check(name, npid, desc)
        shutil.rmtree(img, ignore_errors=True)
        return ("PASS", "", [npid]) if ok else ("FAIL", why, [npid])

    def criu_log(self, img, log):
        ln = [x for x in tail_words(os.path.join(img, log)).splitlines()
              if "Error" in x and "for self" not in x]
        return ln[0][:300] if ln else ""

    def migrate(self, name, pid, desc):
        js = os.path.join(self.tmp, "mig-%s.json" % name)
        if self.ps.poll() is not None:
            self.start_pageserver()
        args = ["nsenter", "--net=/run/netns/" + self.netns[0], self.a.haul, "migrate", str(pid),
                "--to", "198.18.0.2:7171", "--key", self.key, "--json", js, "--quiet"]
        rc, msg, _ = self.tool(args, self.a.timeout * 2)
        if rc == 1:
            if not alive(pid):
                return "ERROR", "not migrated and the source is gone: " + msg, [pid]
            ok, why = self.check(name, pid, desc)
            if not ok:
                return "ERROR", "refused (%s) but the source then failed: %s" % (msg, why), [pid]
            return "REFUSED", msg, [pid]
        if rc:
            return "ERROR", "migrate exit %d: %s" % (rc, msg), [pid]
        m = re.search(r'"target_pid": (\d+)', tail_words(js))
        if not m:
            return "ERROR", "migrated, but no target pid in " + js, [pid]
        npid = int(m.group(1))
        if not wait_gone(pid, 5):
            return "ERROR", "migrated, but the source pid %d still runs" % pid, [pid, npid]
        if not self.hook(name, "--post-restore"):
            return "ERROR", "post-restore hook failed", [npid]
        ok, why = self.check(name, npid, desc)
        return ("PASS", "", [npid]) if ok else ("FAIL", why, [npid])

    # --- the host's firewall, as each test found it ----------------------
    # Tests such as socket-tcp-closed add a DROP rule for their port in the
    # host's namespace and remove it only at their end; one that is refused
    # or fails leaves it, and a later test on the same port (the nfconntrack
    # ones) hangs.  So the rulesets are saved before each test and put back.
    FIREWALLS = (["nft", "-s", "list", "ruleset"], ["iptables-legacy-save"],
                 ["ip6tables-legacy-save"])
    RESTORE = {"nft": None, "iptables-legacy-save": "iptables-legacy-restore",
               "ip6tables-legacy-save": "ip6tables-legacy-restore"}

    def firewall(self):
        snap = []
        for cmd in self.FIREWALLS:
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, timeout=30)
                snap.append(r.stdout if r.returncode == 0 else None)
            except (OSError, subprocess.TimeoutExpired):
                snap.append(None)
        return snap

    def firewall_back(self, name, before):
        after = self.firewall()
        for cmd, b, a in zip(self.FIREWALLS, before, after):
            if b is None or a is None or self.strip(a) == self.strip(b):
                continue
            print("%s: left %s rules in the host's namespace: put back as they were" %
                  (name, cmd[0]), file=self.log, flush=True)
            if cmd[0] == "nft":
                subprocess.run(["nft", "-f", "-"], input="flush ruleset\n" + b, text=True,
                               stdout=self.log, stderr=subprocess.STDOUT)
            else:
                subprocess.run([self.RESTORE[cmd[0]]], input=b, text=True,
                               stdout=self.log, stderr=subprocess.STDOUT)

    @staticmethod
    def strip(save):
        # iptables-save's comments and counters change on their own
        return [ln.split("[")[0] for ln in save.splitlines() if not ln.startswith("#")]

    def run_one(self, name, desc, mode):
        fw = self.firewall()
        try:
            return self.run_one_fw(name, desc, mode)
        finally:
            self.firewall_back(name, fw)

    def run_one_fw(self, name, desc, mode):
        netns = self.netns[0] if mode == "migrate" else None
        pid = self.start(name, desc, netns)
        if isinstance(pid, str):
            self.finish(name, [])
            return "ERROR", "test " + pid + " (it passed without checkpoint)"
        pids = [pid]
        try:
            if mode == "migrate":
                v, msg, pids = self.migrate(name, pid, desc)
            else:
                v, msg, pids = self.cr(name, pid, desc)
        finally:
            self.finish(name, pids + [pid])
        return v, msg

    def baseline(self, name, desc):
        fw = self.firewall()
        try:
            return self.baseline_fw(name, desc)
        finally:
            self.firewall_back(name, fw)

    def baseline_fw(self, name, desc):
        pid = self.start(name, desc)
        if isinstance(pid, str):
            self.finish(name, [])
            return False, pid
        try:
            return self.check(name, pid, desc)
        finally:
            self.finish(name, [pid])

    # --- the suite -------------------------------------------------------
    def tests(self):
        excl = {"route_rules", "criu-rtc.so"}
        out = []
        for f in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, f)
            st = os.lstat(p)
            if not (os.path.isfile(p) and not os.path.islink(p) and st.st_mode & 0o100):
                continue
            if "." in f or f in excl:
                continue
            if self.a.filter and not re.search(self.a.filter, f):
                continue
            out.append(f)
        return out

    def skip_reason(self, name, desc):
        if "_bad" in desc:
            return "unreadable .desc"
        if desc.get("arch", "x86_64") != os.uname().machine:
            return "arch " + desc["arch"]
        if flag(desc, "noauto"):
            return "zdtm: manual run only"
        if "h" not in desc.get("flavor", "h ns uns").split():
            return "zdtm: no host flavour (%s)" % desc.get("flavor")
        chs = os.path.join(self.dir, name + ".checkskip")
        if os.access(chs, os.X_OK) and subprocess.run(
                [chs], cwd=self.dir, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode:
            return "zdtm: checkskip"
        return None

    def emit(self, w, name, mode, verdict, msg):
        row = [name, group_of(name), mode, verdict, msg.replace("\n", " ")]
        w.writerow(row)
        self.rows.append(row)
        print("%-28s %-14s %-8s %-8s %s" % tuple(row), flush=True)

    def run(self):
        self.setup_cgroup()
        if self.a.migrate:
            self.setup_net()
        # zdtm.py lets the tests, which drop to uid 18943, write their files here
        os.chmod(self.dir, os.stat(self.dir).st_mode | 0o333)
        names = self.tests()
        passed = []
        with open(os.path.join(self.a.out, "zdtm.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["test", "group", "mode", "verdict", "message"])
            for n in names:
                desc = read_desc(os.path.join(self.dir, n + ".desc"))
                why = self.skip_reason(n, desc)
                if why:
                    self.emit(w, n, "-", "SKIPPED", why)
                    continue
                ok, why = self.baseline(n, desc)
                if not ok:
                    self.emit(w, n, "-", "EXCLUDED", "does not pass here: " + why)
                    continue
                v, msg = self.run_one(n, desc, "cr")
                passed.append((n, desc, v))
                if v == "REFUSED" and flag(desc, "crfail"):
                    msg = "(zdtm expects a refusal) " + msg
                self.emit(w, n, "cr", v, msg)
                f.flush()
            if self.a.migrate and passed:
                for n, desc in self.sample(passed):
                    v, msg = self.run_one(n, desc, "migrate")
                    self.emit(w, n, "migrate", v, msg)
                    f.flush()
        self.summary()

    def sample(self, passed):
        """Up to --migrate tests: those that passed checkpoint/restore first (does the
        live path keep what the image path keeps?), then others spread evenly."""
        first = [(n, d) for n, d, v in passed if v == "PASS"][:self.a.migrate]
        rest = [(n, d) for n, d, v in passed if v != "PASS"]
        left = self.a.migrate - len(first)
        if left > 0 and rest:
            first += rest[::max(1, len(rest) // left)][:left]
        return first

    def summary(self):
        verdicts = ["PASS", "FAIL", "REFUSED", "ERROR"]
        for mode in ("cr", "migrate"):
            per = {}
            for n, g, m, v, _ in self.rows:
                if m == mode:
                    per.setdefault(g, dict.fromkeys(verdicts, 0))[v] += 1
            if not per:
                continue
            lines = ["| group (%s, %s) | run | %s |" % (self.a.tool, mode, " | ".join(verdicts)),
                     "|---|---:|" + "---:|" * len(verdicts)]
            tot = dict.fromkeys(verdicts, 0)
            for g in sorted(per):
                c = per[g]
                lines.append("| %s | %d | %s |" % (g, sum(c.values()),
                                                   " | ".join(str(c[v]) for v in verdicts)))
                for v in verdicts:
                    tot[v] += c[v]
            lines.append("| **all** | %d | %s |" % (sum(tot.values()),
                                                   " | ".join(str(tot[v]) for v in verdicts)))
            sk = sum(1 for r in self.rows if r[3] == "SKIPPED")
            ex = sum(1 for r in self.rows if r[3] == "EXCLUDED")
            if mode == "cr":
                lines.append("")
                lines.append("%d tests skipped (zdtm: not host flavour, manual, other arch, "
                             "checkskip); %d excluded (do not pass here without a checkpoint)."
                             % (sk, ex))
            txt = "\n".join(lines) + "\n"
            with open(os.path.join(self.a.out, "summary-%s.md" % mode), "w") as f:
                f.write(txt)
            print("\n" + txt)


def table(paths):
    """Per-group counts of one or more runs' zdtm.csv, side by side (markdown)."""
    verdicts = ["PASS", "FAIL", "REFUSED", "ERROR"]
    runs = []
    for p in paths:
        per = {}
        with open(p) as f:
            for r in csv.DictReader(f):
                if r["mode"] != "cr":
                    continue
                c = per.setdefault(group_of(r["test"]), dict.fromkeys(verdicts, 0))
                c[r["verdict"]] += 1
        runs.append(per)
    groups = sorted(set(g for per in runs for g in per))
    head = "| group |" + "".join(" %s: run | PASS | FAIL | REFUSED | ERROR |" % os.path.basename(
        os.path.dirname(os.path.abspath(p))) for p in paths)
    print(head)
    print("|---|" + "---:|" * (5 * len(paths)))
    for g in groups + ["**all**"]:
        cells = []
        for per in runs:
            if g == "**all**":
                c = {v: sum(x[v] for x in per.values()) for v in verdicts}
            else:
                c = per.get(g, dict.fromkeys(verdicts, 0))
            cells.append("%d | %s" % (sum(c.values()), " | ".join(str(c[v]) for v in verdicts)))
        print("| %s | %s |" % (g, " | ".join(cells)))


def main():
    here = os.path.dirname(os.path.realpath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description="run CRIU's zdtm static tests through haul")
    ap.add_argument("zdtm", help="an already built test/zdtm/static directory")
    ap.add_argument("--haul", default=os.path.join(repo, "build", "haul"))
    ap.add_argument("--tool", choices=["haul", "criu"], default="haul")
    ap.add_argument("--criu", default="criu", help="criu binary for --tool criu")
    ap.add_argument("--out", default=os.path.join(repo, "bench", "results", "conformance"))
    ap.add_argument("--filter", help="only tests whose name matches this regex")
    ap.add_argument("--migrate", type=int, default=20,
                    help="migrate this many passing tests between two netns (0: none)")
    ap.add_argument("--as-root", action="store_true",
                    help="do not drop the tests to uid 18943 (see bench/RESULTS.md: without "
                    "CAP_SYS_RESOURCE neither haul nor criu can read another uid's rlimits)")
    ap.add_argument("--timeout", type=int, default=30, help="seconds per step")
    ap.add_argument("--table", nargs="+", metavar="CSV",
                    help="only print per-group counts of these zdtm.csv files side by side")
    if "--table" in sys.argv:
        table(sys.argv[sys.argv.index("--table") + 1:])
        return
    a = ap.parse_args()
    if os.getuid():
        sys.exit("zdtm-run: run as root (namespaces, cgroups, ptrace)")
    if not os.path.exists(os.path.join(a.zdtm, "Makefile")) or \
            not os.path.exists(os.path.join(a.zdtm, "..", "lib", "libzdtmtst.a")):
        sys.exit("zdtm-run: %s is not a built zdtm static directory; build it with "
                 "make -C test/zdtm/lib && make -C test/zdtm/static" % a.zdtm)
    if a.tool == "criu":
        a.migrate = 0
    elif not os.access(a.haul, os.X_OK):
        sys.exit("zdtm-run: no haul binary at %s; run make all first" % a.haul)
    a.haul = os.path.realpath(a.haul)
    os.makedirs(a.out, exist_ok=True)
    r = Runner(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        r.run()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        r.cleanup()


if __name__ == "__main__":
    main()
