#!/bin/bash
# What a current docker build gives (dockerfile frontend >= 1.12): the
# triggers of stage recorder fire in the last stage and bring in stages
# producer and other-producer; OnBuild does not carry over to the result.
set -e
die() { echo "$*"; exit 1; }
want() { [ "$(cat "$ROOTFS/$1")" = "$2" ] || die "/$1: $(cat "$ROOTFS/$1" 2>&1), want $2"; }
want from-name made
want from-index/o other
[ "$(stat -c %a:%u:%g "$ROOTFS/from-name")" = 644:0:0 ] || die "/from-name: $(stat -c %a:%u:%g "$ROOTFS/from-name")"
[ -d "$ROOTFS/from-index" ] || die "/from-index: not a directory"
[ "$(printf 'made\nother\n')" = "$(cat "$ROOTFS/both")" ] || die "/both: $(cat "$ROOTFS/both")"
[ "$(printf 'made\nother\n')" = "$(cat "$ROOTFS/final")" ] || die "/final: $(cat "$ROOTFS/final")"
[ ! -e "$ROOTFS/made" ] && [ ! -e "$ROOTFS/other" ] || die "a producer's own files leaked into the result"
jq -e '(.config.OnBuild // []) | length == 0' "$CONFIG" >/dev/null || die "config OnBuild: $(jq -c .config.OnBuild "$CONFIG")"
