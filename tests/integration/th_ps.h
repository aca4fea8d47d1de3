/*
 * th_ps.h - what the page server's integration tests share (ps_server.c,
 * ps_hostile.c; th_ps.c): the real `haul pageserver` daemon on 127.0.0.1
 * (started with extra arguments, killed, its log searched), the real
 * client's sessions of known pages, and raw peers that speak the wire
 * format by hand, before and after authentication.
 */
#ifndef HAUL_TESTS_TH_PS_H
#define HAUL_TESTS_TH_PS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/wire.h"
#include "pageserver/pageserver.h"

#define PG   4096ull
#define BASE 0x7f1200000000ull

/* A `haul pageserver` of this test: its pid, port and log file. */
struct tps_daemon {
	pid_t pid;
	int port;
	char log[128];
};

/* The suite's key files and image directory (tps_setup), and the pid sessions declare. */
extern char tps_keyfile[96], tps_keyfile2[96], tps_imgdir[96];
extern int32_t tps_test_pid;

/* The suite's init and fini: key files made, everything removed. */
void tps_setup(void);
void tps_teardown(void);

/* ---- the daemon and the real client ---- */
const char *tps_haul_bin(void);
void tps_write_key(const char *path, uint8_t byte);
void tps_daemon_start(struct tps_daemon *d, int port, ...);
void tps_daemon_kill(struct tps_daemon *d, int sig);
bool tps_daemon_alive(struct tps_daemon *d);
bool tps_log_has(struct tps_daemon *d, const char *s);
void tps_gen_page(uint8_t *p, uint64_t addr, uint64_t gen);
struct ps_client_opts tps_copts(int port, unsigned nstreams, enum ps_session_kind kind);
struct haul_layout tps_one_vma(uint64_t bytes);
int tps_send_round(struct ps_client *c, uint64_t round, uint64_t bytes, uint64_t gen);
uint64_t tps_verify(struct ps_client *c, uint64_t bytes, uint64_t gen);

/* ---- raw peers (th_ps.c says what each sends) ---- */
int tps_raw_connect_from(int port, uint8_t from);
int tps_raw_connect(int port);
bool tps_closed_within(int fd, int ms);
void tps_raw_frame(int fd, uint32_t *seq, unsigned type, const ProtobufCMessage *m,
		   const void *payload, uint32_t plen);
ProtobufCMessage *tps_raw_recv(int fd, unsigned *type);
int tps_raw_auth_from(int port, uint8_t from, uint32_t *seq, unsigned *reply);
int tps_raw_auth(int port, uint32_t *seq);
void tps_raw_open(int fd, uint32_t *seq, int32_t pid, uint32_t nstreams);
void tps_raw_round_begin(int fd, uint32_t *seq, uint64_t round);
int tps_raw_session(int port, uint32_t *seq, int32_t pid);
void tps_raw_pages(int fd, uint32_t *seq, uint64_t addr, int enc, const void *p, uint32_t len);

/* A good client (a pthread): port in, 0 or -errno out. */
struct tps_good {
	int port;
	int result;
};
void *tps_good_client(void *arg);

/* ---- LIVE sessions on an authenticated connection, and the daemon's cost ---- */
bool tps_raw_open_live(int fd, uint32_t *seq, int32_t pid);
unsigned tps_raw_layout(int fd, uint32_t *seq, const struct haul_vma *v);
long tps_daemon_hwm_kb(const struct tps_daemon *d);
void tps_serves_on(struct tps_daemon *d);
int tps_live_with_layout(struct tps_daemon *d, uint32_t *seq, int32_t pid);
void tps_refused_and_serves_on(struct tps_daemon *d, int fd, unsigned type, const char *reason);

#endif
