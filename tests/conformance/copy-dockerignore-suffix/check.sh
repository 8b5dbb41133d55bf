#!/bin/bash
# Current docker (moby/patternmatcher suffixMatch): **.bak and **gen exclude every path ending in
# .bak or gen, and what is below such a directory; the rest of the context is copied.
set -e
got=$(cd "$ROOTFS/ctx" && find . -mindepth 1 -printf '%P %y\n' | sort)
want=$(printf '%s\n' 'gen.txt f' 'keep.txt f' 'sub d' 'sub/deeper d' 'sub/deeper/kept.txt f' | sort)
[ "$got" = "$want" ] || { echo "copied: $got"; echo "want: $want"; exit 1; }
