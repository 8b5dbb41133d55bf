#!/bin/bash
# What a current docker build gives: --network=none leaves only the
# loopback, up (runc brings it up, so ping 127.0.0.1 answers); the
# sandbox mode has docker's default capability set (a80425fb); insecure
# has every capability the builder has, more than the default set.
set -e
[ "$(cat "$ROOTFS/none-links")" = lo ] || { echo "none-links: $(cat "$ROOTFS/none-links"), want lo"; exit 1; }
[ "$(cat "$ROOTFS/none-ping")" = pong ] || { echo "no ping on lo"; exit 1; }
[ "$(cat "$ROOTFS/sandbox-caps")" = "CapEff:	00000000a80425fb" ] || { echo "sandbox-caps: $(cat "$ROOTFS/sandbox-caps")"; exit 1; }
insecure=$(cut -f2 "$ROOTFS/insecure-caps")
[ $((16#$insecure & 16#a80425fb)) = $((16#a80425fb)) ] && [ "$insecure" != 00000000a80425fb ] \
  || { echo "insecure-caps: $insecure, want more than the default set"; exit 1; }
