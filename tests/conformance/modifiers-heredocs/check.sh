#!/bin/bash
# What a current docker build (BuildKit v0.32) gives: `${P//\//-}` replaces
# every slash, `${P/\//_}` the first, and a replacement keeps its escapes
# (`${P//\//\/}` gives `\/usr\/local\/bin`, as BuildKit's lex_test has it).
# Heredoc files are 0644 root.
set -e
fail() { echo "$@"; exit 1; }
label() { jq -r --arg k "$1" '.config.Labels[$k]' "$CONFIG"; }
[ "$(label all)" = "-usr-local-bin" ] || fail "all: $(label all)"
[ "$(label first)" = "_usr/local/bin" ] || fail "first: $(label first)"
[ "$(label name)" = "a.b.c" ] || fail "name: $(label name)"
[ "$(label minor)" = "1.2" ] || fail "minor: $(label minor)"
[ "$(label esc)" = '\/usr\/local\/bin' ] || fail "esc: $(label esc)"
[ "$(jq -r .config.WorkingDir "$CONFIG")" = "/w/a-b-c" ] || fail "workdir: $(jq -r .config.WorkingDir "$CONFIG")"
chk() { # path content
  local p=$ROOTFS/$1
  [ -f "$p" ] && [ ! -L "$p" ] || fail "$1: not a file"
  [ "$(stat -c %a:%u:%g "$p")" = 644:0:0 ] || fail "$1: $(stat -c %a:%u:%g "$p"), want 644:0:0"
  cmp -s <(printf '%s' "$2") "$p" || fail "$1: content is: $(od -An -c "$p" | tr -s ' \n' ' ')"
}
chk heredoc/a.b.c $'p=/usr/local/bin \'/usr/local/bin\' "1.2.3"\nesc=$P ${V} anb\n'
chk heredoc/quoted $'p=$P \'$P\' \\$P\n'
chk heredoc/chomp $'tab=1.2.3\n'
chk heredoc/add-quoted $'$V \\$V\n'
chk heredoc/add $'1.2.3 $V\n'
