#!/bin/bash
# What a current docker build gives (see the Dockerfile's comment): the RUNs saw the mounts, and of the mount
# points only /w stays, because the RUN made /w/own in it.
set -e
die() { echo "$*"; exit 1; }
[ "$(cat "$ROOTFS/seen")" = "$(printf 'a\na')" ] || die "/seen: $(cat "$ROOTFS/seen")"
for gone in new c kept/t w/ctx; do
    [ ! -e "$ROOTFS/$gone" ] && [ ! -L "$ROOTFS/$gone" ] || die "mount stub /$gone left in the image"
done
[ -d "$ROOTFS/kept" ] && [ -z "$(ls -A "$ROOTFS/kept")" ] || die "/kept: not the empty directory the RUN made"
[ "$(ls -A "$ROOTFS/w")" = own ] || die "/w: $(ls -A "$ROOTFS/w")"
