#!/bin/bash
# What a current docker build gives (dockerfile frontend >= 1.14, BuildKit >= 0.21):
# symbolic --chmod resolved per copied entry against its own mode (fsutil's copier with
# the BSD setmode rules: X only for directories and files with an execute bit, u/g/o copy
# a class); directories the COPY creates 0755 for a symbolic mode and the octal mode's
# permission bits for an octal one; an existing destination (/tmp) keeps 1777; owners root.
set -e
chk() { # path type(f|d) mode
  local p=$ROOTFS/$1
  if [ -L "$p" ] || { [ "$2" = d ] && [ ! -d "$p" ]; } || { [ "$2" = f ] && [ ! -f "$p" ]; }; then echo "$1: not a $2"; exit 1; fi
  [ "$(stat -c %a "$p")" = "$3" ] || { echo "$1: mode $(stat -c %a "$p"), want $3"; exit 1; }
  [ "$(stat -c %u:%g "$p")" = 0:0 ] || { echo "$1: owner $(stat -c %u:%g "$p"), want 0:0"; exit 1; }
}
chk sym                 d 755
chk sym/go-u-exec       f 777
chk sym/go-u-file       f 666
chk sym/ux-gw           f 744
chk sym/a-rX            d 755
chk sym/a-rX/t.txt      f 444
chk sym/a-rX/sub        d 555
chk sym/a-rX/sub/x.sh   f 555
chk sym/rwX             d 755
chk sym/rwX/t.txt       f 644
chk sym/rwX/sub         d 755
chk sym/rwX/sub/x.sh    f 755
chk sym/added           f 444
chk sym/setgid          d 755
chk sym/setgid/t.txt    f 2640
chk sym/setgid/sub      d 2750
chk sym/setgid/sub/x.sh f 2750
chk tmp                 d 1777
chk tmp/t.txt           f 666
chk tmp/sub             d 777
chk tmp/sub/x.sh        f 777
chk oct                 d 640
chk oct/made            d 640
chk oct/made/by         d 640
chk oct/made/by/a.txt   f 640
chk oct/tree            d 705
chk oct/tree/here       d 705
chk oct/tree/here/t.txt f 705
chk oct/tree/here/sub   d 705
chk suid                d 755
chk suid/run.sh         f 4755
grep -qx 'echo hi' "$ROOTFS/sym/go-u-exec" || { echo "sym/go-u-exec: content differs"; exit 1; }
