#!/usr/bin/env bash
# Push throughput: a ~200 MB image pushed to a registry on loopback by
# smelt, next to `skopeo copy` of the very same image, in one hyperfine run.
#
#   smelt-build-push   smelt build -d REG/smelt-N   (build + push)
#   smelt-build-only   smelt build --no-push         (build alone)
#   skopeo-copy        skopeo copy oci:LAYOUT docker://REG/skopeo-N (push alone)
#
# smelt's push is (build-push − build-only). Each run pushes to a new
# repository, so nothing is skipped by HEAD; nothing is deleted inside the
# timed window (see ../shared/bench/README.md on this disk after deletes).
# skopeo remembers where it saw each blob (its blob-info cache) and would
# mount instead of uploading: the cache is removed before each of its runs.
# Needs: docker-registry, skopeo, hyperfine, curl (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_missing docker-registry skopeo hyperfine curl python3
runs=${RUNS:-5}
size_mb=${SIZE_MB:-200}
cargo build --locked --release -q
smelt=$PWD/target/release/smelt

work=$(mktemp -d)
REGISTRY_PID=
trap '[ -n "$REGISTRY_PID" ] && kill $REGISTRY_PID 2>/dev/null; rm -rf "$work"' EXIT
start_registry "$work/registry"
reg=$REGISTRY

# the context: four files, half random (incompressible) and half text
ctx=$work/ctx
mkdir -p "$ctx"
per=$((size_mb / 4))
for i in 1 2 3 4; do
  { head -c $((per * 512 * 1024)) /dev/urandom
    head -c $((per * 512 * 1024 * 3 / 4)) /dev/urandom | base64 -w 100; } > "$ctx/data$i"
done
printf 'FROM scratch\nCOPY data1 /d/1\nCOPY data2 /d/2\nCOPY data3 /d/3\nCOPY data4 /d/4\n' > "$ctx/Dockerfile"
"$smelt" build -c "$ctx" --no-push --oci-layout-path "$work/layout" -v error >/dev/null
echo "image: $(du -sh "$work/layout/blobs" | cut -f1) compressed, context $(du -sh "$ctx" | cut -f1)"

# each run pushes to a repository of its own
make_counter "$work/next"
hyperfine --runs "$runs" --warmup 1 --export-markdown "${OUT:-$work}/push.md" \
  -n smelt-build-push "$smelt build -c $ctx -v error -d $reg/smelt-\$($work/next):1" \
  -n smelt-build-only "$smelt build -c $ctx -v error --no-push" \
  -n skopeo-copy --prepare "rm -f /var/lib/containers/cache/blob-info-cache-v1*" "skopeo copy -q --dest-tls-verify=false oci:$work/layout docker://$reg/skopeo-\$($work/next):1"
cat "${OUT:-$work}/push.md"

# smelt's push phase alone, from its own log timestamps ("Pushing image to"
# → "Pushed"), over the same number of runs to fresh repositories
for i in $(seq "$runs"); do
  "$smelt" build -c "$ctx" --log-timestamp --log-format text -d "$reg/phase-$i:1" 2>&1 >/dev/null |
    grep -E 'Pushing image to|Pushed ' | sed -E 's/^[A-Z]+\[([^]]+)\].*/\1/'
done | python3 -c '
import sys, datetime, statistics
ts = [datetime.datetime.fromisoformat(l.strip()[:26]) for l in sys.stdin if l.strip()]
d = [(b - a).total_seconds() for a, b in zip(ts[0::2], ts[1::2])]
print(f"smelt push phase: mean {statistics.mean(d):.3f} s, min {min(d):.3f} s, max {max(d):.3f} s over {len(d)} runs")
'
