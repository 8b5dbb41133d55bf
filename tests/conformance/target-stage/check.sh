#!/bin/bash
# What a current docker build (BuildKit v0.32, defaultArgs) gives: the stage
# "build" sees TARGETSTAGE=default (the last stage has no name) once declared,
# TARGETOSVERSION and BUILDOSVERSION set but empty; the last stage, built on
# "build", has its args (and not TARGETVARIANT, which no stage declared).
set -e
arch=$(jq -r .architecture "$CONFIG")
want=$'before: [] [] [unset]\nafter: [default] ['"$arch"$'] [] []'
[ "$(cat "$ROOTFS/build")" = "$want" ] || { echo "build: $(tr '\n' '|' < "$ROOTFS/build")"; exit 1; }
[ "$(cat "$ROOTFS/final")" = "final: [default] [unset]" ] || { echo "final: $(cat "$ROOTFS/final")"; exit 1; }
jq -e '.config.Labels.stage == "default"' "$CONFIG" >/dev/null || { echo "labels: $(jq -c .config.Labels "$CONFIG")"; exit 1; }
jq -e '.config.Env | map(select(startswith("TARGET"))) | length == 0' "$CONFIG" >/dev/null || { echo "env: $(jq -c .config.Env "$CONFIG")"; exit 1; }
