/*
 * policy.h - every tunable constant of haul, each with the reason for its value.
 * Owners add their constants here, in their own section.
 */
#ifndef HAUL_COMMON_POLICY_H
#define HAUL_COMMON_POLICY_H

#define HAUL_PAGE_SIZE	4096UL
#define HAUL_PAGE_SHIFT 12

/* ---- wire (owned by the page server) ---------------------------------------- */
/* Largest protobuf message in a frame: a Layout of ~10k VMAs fits; checked before allocating. */
#define WIRE_MAX_MSG (1u << 20)
/* Largest raw payload in a frame: 1024 pages; bounds the receive buffer per connection. */
#define WIRE_MAX_PAYLOAD (4u << 20)
/* Largest file without an ELF build-id whose bytes identify it (vma_ident.c: XXH3 read on
 * both sides, ~10-40 ms at this size); a larger one is judged by its size and mtime. */
#define HAUL_IDENT_HASH_MAX (64ULL << 20)
/* Largest State sent in parts (State.total): a few deleted files of up to 64 MiB each
 * (RST_DELETED_FILE_MAX); bounds what one session makes the server hold at once. */
#define WIRE_MAX_STATE (256u << 20)
/* Frames before authentication are tiny; anything larger is a confused or hostile peer. */
#define WIRE_MAX_PREAUTH 4096
/* Pages per PAGES frame the client builds: 1 MiB, few frames and thread handoffs per byte. */
#define WIRE_BATCH_PAGES 256
/* Pages per LZ4 block: small enough to decide per 64 KiB whether compression pays. */
#define WIRE_LZ4_PAGES 16
/* LZ4 is kept only when it saves at least 1/8 of the bytes; else raw is cheaper to receive. */
#define WIRE_LZ4_MIN_SAVING 8
/* Most pages one PageReq may ask for (one PageReply payload). */
#define WIRE_MAX_REQ_PAGES (WIRE_MAX_PAYLOAD / 4096)
/* Default stall timeout: a frame must complete, and a peer authenticate, within this. */
#define PS_STALL_TIMEOUT_MS 10000
/* Most concurrent connections the server accepts; more are refused at accept. */
#define PS_MAX_CONNS 256
/* An authenticated connection silent this long is closed: 256 idle key holders would
 * otherwise lock every other client out.  A pre-copy round is never this quiet. */
#define PS_IDLE_TIMEOUT_MS 60000
/* Most connections from one address: one migration's streams (PS_MAX_STREAMS) fit
 * twice, and one host cannot take the whole table. */
#define PS_MAX_CONNS_PER_PEER 128
/* Most streams one session may declare. */
#define PS_MAX_STREAMS 64
/* Pages per arena chunk of the memory page store (64 MiB): few mmaps for GiBs. */
#define PSTORE_CHUNK_PAGES 16384

/* ---- tracker (owned by the tracker) ------------------------------------------ */
/* Bytes one PAGEMAP_SCAN call may walk: a clean full walk costs ~1.6 ms/GiB, so 64 MiB
 * holds the target's mmap_lock ~0.1 ms; a 4 GiB walk in one call held it 64-100 ms. */
#define TRK_SCAN_SLICE_BYTES (64ULL << 20)
/* Pages one call may report and re-protect (max_pages): write-protecting costs 16-25 ms
 * per populated GiB, so 8192 pages (32 MiB) keep a dense slice under ~1 ms. */
#define TRK_SCAN_SLICE_PAGES 8192
/* The final round's walk (the process frozen, inside the downtime) is split across threads,
 * each taking at least this much: one thread walks ~1 ms per GiB (15 ms for 16 GiB on a
 * 16-core host), two halve it on 2 cores; a part much smaller costs more to start. */
#define TRK_SCAN_PAR_PART_BYTES (512ULL << 20)
/* ... and at most this many threads (or the CPUs haul may run on, if fewer). */
#define TRK_SCAN_PAR_MAX 8
/* Detaching unregisters in slices this many times smaller (16 MiB): each holds the target's
 * mmap_lock for writing; the close of the uffd unregistered 1 GiB in one 117 ms hold. */
#define TRK_UNREG_SLICE_DIV 4

/* ---- migrate (owned by haul migrate) ----------------------------------------- */
/* Parent of the cgroups haul makes (<mount>/haul/mig-PID, <mount>/haul/NAME for haul run). */
#define HAUL_CG_PARENT "haul"
/* Smallest quota the kernel takes (1 ms); deeper throttles stretch the period instead. */
#define HAUL_MIG_THROTTLE_MIN_QUOTA_US 1000
/* Longest period the kernel takes (1 s); 99% of one CPU needs 100 ms. */
#define HAUL_MIG_THROTTLE_MAX_PERIOD_US 1000000
/* First throttle step and each further step, as QEMU's auto-converge (20%, +10%). */
#define HAUL_MIG_THROTTLE_INITIAL 20
#define HAUL_MIG_THROTTLE_STEP	  10
/* The most CPU auto-converge takes away; 99% leaves the workload alive. */
#define HAUL_MIG_THROTTLE_MAX 99
/* A round "shrinks" when it is below this percentage of the previous one; slower
 * shrinking (dirty rate above ~half the bandwidth, QEMU's auto-converge trigger) takes
 * many rounds, so it is throttled (measured: 1 GiB at 256 MiB/s over ~200 MB/s took 20
 * rounds shrinking ~25% each without it). */
#define HAUL_MIG_SHRINK_PCT 50
/* Rounds that shrink slower than that but steadily, by a ratio under
 * HAUL_MIG_CONVERGE_PCT, are left unthrottled when the dirty rate and the link say they
 * reach the downtime target within HAUL_MIG_CONVERGE_ROUNDS more rounds: a writer paced
 * by time (a server's clients) loses nothing to a throttle's stalls but catches up after
 * them (measured: 1 GiB at 64 MiB/s over 1 Gbit/s shrank 0.50-0.57 a round; the throttle
 * it got, up to 97%, stalled it 24 ms at a time and its rate did not fall). */
#define HAUL_MIG_CONVERGE_PCT	 70
#define HAUL_MIG_CONVERGE_ROUNDS 10
/* Default downtime target: the benchmarks' goal, well under a TCP client's 200 ms RTO. */
#define HAUL_MIG_DOWNTIME_MS 25
/* When the data left costs under this, or under this percentage of the fixed costs,
 * more rounds cannot lower the downtime much: switch over even if the fixed costs
 * alone exceed --downtime (rather than throttle a hot set for nothing). */
#define HAUL_MIG_FLOOR_MS  1
#define HAUL_MIG_FLOOR_PCT 10
/* TCP sockets verified one lookup each at the freeze; more are read again (netsock.c) */
#define HAUL_NET_LOOKUP_MAX 128
/* a round that finds this share of what a longer or unthrottled one found: a hot set,
 * switched for when its expected downtime is at most HAUL_MIG_HOT_OVER_PCT over the
 * target: throttling it would buy no more than that, at the cost of stalls (converge.c) */
#define HAUL_MIG_HOT_PCT      75
#define HAUL_MIG_HOT_OVER_PCT 25
/* Attempts at migrating a tree whose shape changes during pre-copy (a fork, an exit):
 * each starts over; a tree that forks at every attempt is refused, naming the pid. */
#define HAUL_MIG_TREE_TRIES 3
/* Default --precopy-nice (0: off).  Measured (bench/RESULTS.md "Stalls", the
 * --precopy-nice A/B): nice 10 shortened a 1 ms ticker's largest gap before the freeze
 * (11.2 -> 6.9 ms) but not Redis's clients' max or stall (10.6 -> 10.1 ms, worst 31 -> 128),
 * and with other CPU-bound work on the host pre-copy took up to 6x longer (18.7 s against
 * ~3 s at 1 GiB): an opt-in. */
#define HAUL_MIG_PRECOPY_NICE 0
/* Default most pre-copy rounds before switching over regardless (then reported). */
#define HAUL_MIG_MAX_ROUNDS 30
/* Estimated fixed switchover cost before any is measured: freeze ~0.1 ms, seize+dump
 * ~3 ms, restore of a small process 3-11 ms (seen on a 2-core VM), plus a round trip. */
#define HAUL_MIG_FIXED_MS 12
/* Pages read from the process per process_vm_readv batch: 4 MiB (1-16 MiB is fastest). */
#define HAUL_MIG_READ_PAGES 1024
/* How long the freezer may take to stop the workload before we give up and thaw. */
#define HAUL_MIG_FREEZE_TIMEOUT_MS 2000
/* Default per-reply timeout towards the page server: a dead link fails within this. */
#define HAUL_MIG_REPLY_TIMEOUT_MS 10000
/* haul migrate --container: runc restore on the target is killed (and refused) past this,
 * under the source's reply timeout: a hung restore is a refusal, not an in-doubt switch */
#define HAUL_CTR_RESTORE_TIMEOUT_MS 8000
/* any other runc command haul runs (state, kill, delete) */
#define HAUL_CTR_RUNC_TIMEOUT_MS 30000
/* Retries (10 ms apart) to remove a cgroup while a dead process leaves it: init reaps
 * orphans only every 1-2 s on some VMs (DESIGN.md "Kernel facts"). */
#define HAUL_MIG_RMDIR_TRIES 300
/* The stall probe samples every thread's schedstat this often during pre-copy: a client
 * polling at 1 ms notices stalls of a few ms; each sample of one thread costs ~10 us. */
#define HAUL_STALL_PERIOD_US 2000
/* ... and lists the threads again every this many samples (new threads join late). */
#define HAUL_STALL_RELIST 25
/* ... at SCHED_FIFO while a sample costs at most this on average (10% of the period): a few
 * threads take tens of us; a workload of hundreds would make a FIFO sampler a CPU hog. */
#define HAUL_STALL_FIFO_MAX_US 200
/* ... and names in the debug log, with its start and end on haul's clock, every stall at
 * least this long: the rounds' phases are logged on the same clock, to tell which it was. */
#define HAUL_STALL_LOG_MS 10
/* The throttle's cpu.max period is chosen so that no throttled stretch exceeds this: a
 * deeper throttle then shows as a slowdown, not as stalls (a 20 ms period stalled up to
 * 19 ms, a 99% throttle 99 ms). */
#define HAUL_MIG_THROTTLE_STALL_US 4000
/* A throttle deeper than cpu.max can make with such stretches (its quota is at least 1 ms)
 * is a duty cycle of the cgroup2 freezer (duty.c): frozen this long, which leaves ~1 ms of
 * the 4 ms for the thaw's lag, ... */
#define HAUL_MIG_DUTY_FROZEN_US 3000
/* ... then running at least this long (80% with 3 ms frozen; deeper throttles freeze longer,
 * up to the downtime target).  On the loaded 2-core host a thawed thread that waits for a
 * CPU misses a shorter window and waits a cycle more: 3 ms frozen with 125 us running gave a
 * 1 ms heartbeat 68 gaps over 5 ms a second, 250-333 us windows 14-452 ms gaps under load,
 * 750 us windows 7.6-7.7 ms (bench/throttle_bench.c, bench/RESULTS.md "Stalls"). */
#define HAUL_MIG_DUTY_MIN_RUN_US 750
/* ... and a running window in which the workload waited for a CPU (its main thread still
 * runnable at the end, its cgroup's cpu.stat usage under a quarter of the window) runs on for
 * another window, at most this many times: a missed window made two stretches one stop
 * (bench/RESULTS.md: 26.6 and 28.9 ms gaps from 14 ms stretches). */
#define HAUL_MIG_DUTY_EXTEND_MAX 3
/* ... and its thread's SCHED_FIFO priority: above the tracker's scan boost (10), whose slices
 * would delay a thaw, below the kernel's interrupt threads (50).  It runs tens of us a cycle. */
#define HAUL_MIG_DUTY_PRIO 20
/* ... and after the lift, the least the workload runs before the switchover freezes it:
 * a 1 ms ticker's next tick, so that the last frozen stretch and the stop are two gaps. */
#define HAUL_MIG_DUTY_LIFT_RUN_US 2000
/*
 * A throttled round whose last expected downtime was within this many times
 * the target waits for the duty cycle's next frozen stretch, holds it, and
 * scans in it (mig_precopy.c): if what it found fits the target, that
 * stretch becomes the switchover's stop.  The wait is at most one cycle
 * (HAUL_MIG_HOLD_WAIT_MS covers the longest, the target's stretch).
 */
#define HAUL_MIG_HOLD_NEAR    3
#define HAUL_MIG_HOLD_WAIT_MS 200
/* Post-copy prefetch (pc_hot.c): each of the two windows in which the tracker watches the
 * process's writes before the freeze; 100 ms sees a 64 MiB/s writer's 1600 pages. */
#define HAUL_PC_HOT_WINDOW_MS 100
/* ... the share of the second window's pages that must repeat the first's for its
 * writes to count as predictable (a uniform random writer over 1 GiB repeats ~1%). */
#define HAUL_PC_HOT_REPEAT_PCT 50
/* ... and the most pages sent so: the freeze re-reads them to find the ones written since
 * (8 MiB: ~2-3 ms of the stop on the 2-core VM). */
#define HAUL_PC_HOT_MAX_PAGES 2048
/* The live progress line on a terminal is redrawn at most this often during a round. */
#define HAUL_MIG_PROGRESS_MS 250
/* Re-read cgroup.events this often while waiting to freeze (its events are rate-limited). */
#define HAUL_FREEZE_REREAD_MS 1
/* v1 freezer.state poll period. */
#define HAUL_FREEZE_V1_POLL_US 100
/* How long every thread may take to reach the group-stop that holds it while haul injects
 * system calls (injlog.c); a thread in uninterruptible sleep makes us give up. */
#define HAUL_INJ_STOP_TIMEOUT_MS 2000
/* How long haul's survivor waits for the kernel to detach a dead haul's tracees. */
#define HAUL_INJ_DETACH_WAIT_MS 5000
/* How long haul waits for another haul (or a dead one's survivor) to let go of a process it
 * holds for injection (injlog.c's per-pid lock) before it refuses to touch it. */
#define HAUL_INJ_LOCK_TIMEOUT_MS 5000
/* Connections queued on a listener at the stop cannot be restored into an accept queue: the
 * program runs this long to accept them (the network lock keeps new ones out), at most this
 * many times, before the dump refuses the listener by name (sock_drain.c). */
#define RST_ACCEPT_DRAIN_MS    1000
#define RST_ACCEPT_DRAIN_TRIES 3

/* ---- switch (network lock, --move-address, --on-switch) --------------------- */

/* An --on-switch hook runs inside the downtime: a stuck one must not hold the process for long. */
#define HAUL_SWITCH_HOOK_TIMEOUT_MS 10000

#endif
