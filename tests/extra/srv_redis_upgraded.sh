#!/bin/bash
# srv_redis_upgraded.sh - srv_redis.sh with redis-server's binary, libssl and
# libcrypto deleted and replaced under it before the move (SRV_REDIS_UPGRADED):
# the same checks (16 checked clients, zero errors, the dataset identical),
# and the moved server maps the old files deleted while the new ones stay.
SRV_REDIS_UPGRADED=1 SRV_REDIS_SIZE=${SRV_REDIS_SIZE:-256M} exec bash "$(dirname "$0")/srv_redis.sh" "$@"
