#!/bin/bash
# What current docker (BuildKit's fsutil copier with exclude patterns) gives
# for this Dockerfile: see its comment.
set -e
got=$(cd "$ROOTFS" && find app docs d -printf '%p %y\n' | sort)
want=$(printf '%s\n' 'app d' 'app/cache d' 'app/cache/keep.txt f' 'app/main.c f' 'app/sub d' \
    'app/sub/y.c f' 'app/sub/z.log f' 'docs d' 'docs/b.txt f' 'docs/notes.md f' \
    'd d' 'd/g.c f' 'd/i.c f' | sort)
[ "$got" = "$want" ] || { echo "copied: $got"; echo "want: $want"; exit 1; }
[ "$(cat "$ROOTFS/app/cache/keep.txt")" = app/cache/keep.txt ]
