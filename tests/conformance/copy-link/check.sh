#!/bin/bash
# What a current docker build gives (see the Dockerfile): a --link layer's
# directories replace the metadata of those below, and its paths are never
# resolved through the stage's symlinks.
set -e
fail() { echo "$*"; exit 1; }
is() { # path type mode owner
  local p=$ROOTFS/$1
  case $2 in
    d) [ -d "$p" ] && [ ! -L "$p" ] || fail "$1: not a directory" ;;
    f) [ -f "$p" ] && [ ! -L "$p" ] || fail "$1: not a file" ;;
    l) [ -L "$p" ] || fail "$1: not a symlink" ;;
  esac
  [ "$2" = l ] && return 0
  [ "$(stat -c %a "$p")" = "$3" ] || fail "$1: mode $(stat -c %a "$p"), want $3"
  [ "$(stat -c %u:%g "$p")" = "$4" ] || fail "$1: owner $(stat -c %u:%g "$p"), want $4"
}
# an existing directory takes the layer's (the copy made it: 755, root)
is app d 755 0:0
is app/a.txt f 644 0:0
# a symlink in the way becomes the layer's directory; its target is untouched
is lnk d 755 0:0
is lnk/a.txt f 644 0:0
is plain d 700 1000:1000
[ ! -e "$ROOTFS/plain/a.txt" ] || fail "plain/a.txt: written through the symlink"
# with --chmod, --link is ignored: the symlink is followed
is lnk2 l
is kept/a.txt f 640 0:0
# the directory's old contents stay (directories merge)
is kept/old f 644 0:0
is kept/t.txt f 644 0:0
is kept/sub/s.txt f 644 0:0
# --chown owns what the copy creates, its parents too
is owned d 755 1000:1000
is owned/deep d 755 1000:1000
is owned/deep/t.txt f 644 1000:1000
# relative to the working directory
is wd/rel.txt f 644 0:0
