#!/bin/bash
# What current docker (BuildKit's COPY --parents through the copier's
# include patterns) gives for this Dockerfile: see its comment.
set -e
got=$(cd "$ROOTFS" && find p q r s t u -printf '%p %y\n' | sort)
want=$(printf '%s\n' 'p d' 'p/x d' 'p/x/a.txt f' 'p/y d' 'p/y/a.txt f' \
    'q d' 'q/y d' 'q/y/b.txt f' \
    'r d' 'r/src d' 'r/src/a.txt f' 'r/src/x d' 'r/src/x/b.txt f' 'r/src/x/y d' 'r/src/x/y/c.txt f' \
    's d' 's/bin d' 's/bin/tool f' \
    't d' 't/x d' 't/x/b.txt f' 't/x/y d' 't/x/y/d.md f' \
    'u d' 'u/lib d' 'u/lib/l.so f' 'u/lib/deep d' 'u/lib/deep/m.so f' | sort)
[ "$got" = "$want" ] || { echo "copied: $got"; echo "want: $want"; exit 1; }
[ "$(cat "$ROOTFS/r/src/x/y/c.txt")" = src/x/y/c.txt ]
[ "$(cat "$ROOTFS/s/bin/tool")" = app/bin/tool ]
