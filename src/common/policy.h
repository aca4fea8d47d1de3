/*
 * policy.h - every tunable constant of haul, each with the reason for its value.
 * Owners add their constants here, in their own section.
 */
#ifndef HAUL_COMMON_POLICY_H
#define HAUL_COMMON_POLICY_H

#define HAUL_PAGE_SIZE 4096UL
#define HAUL_PAGE_SHIFT 12

/* ---- wire (owned by the page server) ---------------------------------------- */
/* Largest protobuf message in a frame: a Layout of ~10k VMAs fits; checked before allocating. */
#define WIRE_MAX_MSG (1u << 20)
/* Largest raw payload in a frame: 1024 pages; bounds the receive buffer per connection. */
#define WIRE_MAX_PAYLOAD (4u << 20)
/* Frames before authentication are tiny; anything larger is a confused or hostile peer. */
#define WIRE_MAX_PREAUTH 4096
/* Pages per PAGES frame the client builds: 256 KiB batches saturate loopback TCP (KERNEL.md). */
#define WIRE_BATCH_PAGES 64
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
/* Most streams one session may declare. */
#define PS_MAX_STREAMS 64
/* Pages per arena chunk of the memory page store (64 MiB): few mmaps for GiBs. */
#define PSTORE_CHUNK_PAGES 16384

#endif
