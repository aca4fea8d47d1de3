/*
 * net_pattern.h - the byte streams net_server and net_client exchange: byte
 * @pos of connection @conn in direction @dir (0: server to client, 1:
 * client to server).  A byte lost, repeated or moved shows as a mismatch
 * at its position (131 is odd, so consecutive positions differ).
 */
#ifndef HAUL_TESTS_NET_PATTERN_H
#define HAUL_TESTS_NET_PATTERN_H
#include <stdint.h>

#define NET_S2C_TOTAL (1u << 20) /* bytes the server sends on each stream connection */
#define NET_C2S_TOTAL (1u << 19) /* bytes the client sends on each */
#define NET_MAX_CONN  16

static inline uint8_t net_byte(unsigned dir, unsigned conn, uint64_t pos)
{
	return (uint8_t)(pos * 131 + (pos >> 9) * 7 + conn * 17 + dir * 101);
}

#endif
