#!/usr/bin/env bash
# End to end, cold, in one hyperfine run: a Dockerfile built
# and pushed by smelt, by BuildKit (`docker build` in Debian's docker.io,
# a daemon this script starts on a private socket) and by buildah
# (`buildah build --isolation chroot --layers`), all FROM the same
# debootstrap'd Debian base in a registry on loopback.
#
# ./benches/compare.sh [small|stages|cache|context|image]
# small (default), bench-small: FROM debian; RUN making 2,000 files; COPY of
# 500 context files (64..4095 bytes, fixed seed); RUN deleting some; ENV,
# WORKDIR, CMD.
# stages: three independent stages FROM debian, each a 2-second RUN, and a
# final stage copying from all three (buildah gets --jobs 2; BuildKit and
# smelt run independent stages at once by themselves).
# cache: bench-small with the layer cache (`--cache --cache-copy-layers`):
# smelt cold (a new cache repository each run, so it fills it), smelt warm
# on an empty runner (no local state; the cache repository was filled by
# one build before the series), the same warm build on a base 10x the
# size, and buildah cold. Then the changed-file rebuild (a prepare step
# rewrites one context file, so the COPY and the RUN after it miss):
# smelt on an empty runner (registry cache only) and on a persistent one
# (`--cache-dir`, where the base stays unpacked between builds), BuildKit
# on a persistent runner (its local cache) and an empty one (pruned, its
# inline cache pulled with `--cache-from`), buildah with its local layers.
# Then a cache-mount build on an empty runner: a RUN whose cache mount
# holds 200 MB that take a while to make (stand-in for a package
# manager's or compiler's cache: 200 files of 1 MiB of gzip -1 output,
# about 10 s of CPU here), made again unless the mount already holds
# them; the RUN always runs (a build arg per run). smelt restores the
# mount from the cache repository; BuildKit (pruned) and buildah (its
# cache-mount directory removed) make it again.
# context: reading and hashing a 50,000-file context (500 directories of
# 100 files, 64..4095 bytes, fixed seed; `FROM scratch`, `COPY tree/
# /tree/`): BuildKit, buildah and smelt from the directory, smelt from a
# tar.gz (`tar://`) and from S3 (`s3://`, moto on loopback), all cold and
# pushed; then smelt warm from each (`--cache --cache-copy-layers`, the
# cache filled before the series): read, hash every file (the COPY key),
# find the layer in the cache, push nothing new. Prints files/s and MB/s
# (context bytes over the mean time) and smelt's own fetch figures.
#
# image: bench-small built by the executor image (`scripts/build-images.sh`)
# in place under podman (`podman run --network host`, the context mounted
# at /workspace, as a CI job runs it; vfs storage; the container removed
# in the next run's prepare step), next to the same static musl binary
# and the glibc release binary in chroot mode, BuildKit and buildah; each
# cold, then warm from a registry cache on an empty runner (smelt:
# `--cache --cache-copy-layers`, the cache repository filled by one build
# before the series; BuildKit: an inline cache, `--cache-from` the image
# one build pushed, after its prune; buildah: `--cache-to`/`--cache-from`
# a registry repository, after its `rmi -af`).
#
# Cold means: every builder starts with no image and no cache. Each one's
# prepare step empties its store (BuildKit: image and builder prune;
# buildah: rmi -af; smelt keeps nothing between builds), so deletions stay
# out of the timed window (see ../shared/bench/README.md about this disk).
# Each run pushes to a repository of its own. Peak RSS: one
# `/usr/bin/time -v` run each, after the timed series.
#
# Needs root and Debian's packages (installed here): docker-registry,
# debootstrap, buildah, docker.io, hyperfine, skopeo, time, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-small}
runs=${RUNS:-5}
state=${BENCH_STATE:-/var/tmp/smelt-compare}
suite=${DEBIAN_SUITE:-bookworm}

. scripts/lib.sh
install_missing docker-registry debootstrap buildah docker.io hyperfine skopeo time curl python3

cargo build --locked --release -q
smelt=$PWD/target/release/smelt
mkdir -p "$state"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_registry "$work/registry"
pids+=("$REGISTRY_PID")
reg=$REGISTRY

# the Debian base: debootstrap once (kept in $state), pushed by smelt
rootfs=$state/debian-$suite
if [ ! -x "$rootfs/bin/sh" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase "$suite" "$rootfs.tmp" "${mirror:-http://deb.debian.org/debian}" >"$state/debootstrap.log"
  mv "$rootfs.tmp" "$rootfs"
fi
tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$work/rootfs.tar" .
mkdir -p "$work/base"
mv "$work/rootfs.tar" "$work/base/"
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$work/base/Dockerfile"
"$smelt" build -c "$work/base" -v error -d "$reg/debian:$suite" >/dev/null
base=$reg/debian:$suite

# bench-small
ctx=$work/small
mkdir -p "$ctx/ctx"
python3 - "$ctx/ctx" <<'PY'
import os, random, sys
random.seed(42)
for i in range(500):
    n = random.randint(64, 4095)
    with open(os.path.join(sys.argv[1], "file-%03d.txt" % i), "wb") as f:
        f.write(bytes(random.getrandbits(8) for _ in range(n)))
PY
if [ "$bench" = context ]; then
ctx=$work/ctx50k
mkdir -p "$ctx/tree"
python3 - "$ctx/tree" <<'PY'
import os, random, sys
random.seed(42)
for d in range(500):
    os.mkdir(os.path.join(sys.argv[1], "d%03d" % d))
    for i in range(100):
        with open(os.path.join(sys.argv[1], "d%03d" % d, "f%03d.txt" % i), "wb") as f:
            f.write(random.randbytes(random.randint(64, 4095)))
PY
printf 'FROM scratch\nCOPY tree/ /tree/\n' > "$ctx/Dockerfile"
tar -C "$ctx" -czf "$work/ctx50k.tar.gz" .
ctx_bytes=$(du -sb --apparent-size "$ctx/tree" | cut -f1)
# S3: moto on loopback (the test command's pinned install)
install_emulators "${SMELT_EMULATORS:-$PWD/target/emulators}"
s3_port=$((40000 + RANDOM % 20000))
"${SMELT_EMULATORS:-$PWD/target/emulators}/venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$s3_port/" >/dev/null && break; sleep 0.2; done
curl -sSf -X PUT "http://127.0.0.1:$s3_port/bench" >/dev/null
curl -sSf -T "$work/ctx50k.tar.gz" "http://127.0.0.1:$s3_port/bench/ctx50k.tar.gz" >/dev/null
s3_env="S3_ENDPOINT=http://127.0.0.1:$s3_port S3_FORCE_PATH_STYLE=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench"
elif [ "$bench" = stages ]; then
cat > "$ctx/Dockerfile" <<DF
FROM $base AS one
RUN sleep 2 && echo one > /one
FROM $base AS two
RUN sleep 2 && echo two > /two
FROM $base AS three
RUN sleep 2 && echo three > /three
FROM $base
COPY --from=one /one /
COPY --from=two /two /
COPY --from=three /three /
DF
else
cat > "$ctx/Dockerfile" <<DF
FROM $base
RUN mkdir -p /data/gen && for i in \$(seq 1 2000); do echo "generated file \$i" > /data/gen/f\$i.txt; done
COPY ctx/ /data/ctx/
RUN rm -f /data/gen/f1*.txt /data/ctx/file-0[0-4]*.txt && ls /data/gen | wc -l > /data/count
ENV APP_HOME=/data BENCH=1
WORKDIR /data
CMD ["ls", "-l", "/data"]
DF
fi

# the BuildKit reference on a private socket
sock=unix:///var/run/smelt-compare-docker.sock
docker_() { DOCKER_HOST=$sock DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }
if ! docker_ version >/dev/null 2>&1; then
  setsid --fork /usr/sbin/dockerd --host "$sock" --data-root "$state/docker" \
    --exec-root /var/run/smelt-compare-docker --pidfile /var/run/smelt-compare-docker.pid \
    --iptables=false --bridge=none --ip-forward=false >"$state/dockerd.log" 2>&1 </dev/null
  for _ in $(seq 150); do docker_ version >/dev/null 2>&1 && break; sleep 0.2; done
fi
buildah_store=(--root "$state/buildah" --runroot /run/smelt-compare-buildah)

# each run gets a repository of its own
make_counter "$work/next"
cat > "$work/docker-build" <<SH
#!/bin/sh
set -e
export DOCKER_HOST=$sock DOCKER_BUILDKIT=1
tag=$reg/buildkit-\$($work/next):1
/usr/bin/docker build -q --network host -t "\$tag" $ctx >/dev/null
/usr/bin/docker push -q "\$tag" >/dev/null
SH
cat > "$work/docker-reset" <<SH
#!/bin/sh
export DOCKER_HOST=$sock
/usr/bin/docker image prune -af >/dev/null 2>&1 || true
/usr/bin/docker builder prune -af >/dev/null 2>&1 || true
SH
cat > "$work/buildah-build" <<SH
#!/bin/sh
set -e
tag=$reg/buildah-\$($work/next):1
buildah ${buildah_store[*]} build -q --isolation chroot --layers --jobs 2 --tls-verify=false -t "\$tag" $ctx >/dev/null
buildah ${buildah_store[*]} push -q --tls-verify=false "\$tag" "docker://\$tag"
SH
cat > "$work/buildah-reset" <<SH
#!/bin/sh
buildah ${buildah_store[*]} rm -a >/dev/null 2>&1 || true
buildah ${buildah_store[*]} rmi -af >/dev/null 2>&1 || true
SH
cat > "$work/smelt-build" <<SH
#!/bin/sh
set -e
$smelt build -c $ctx -v error -d $reg/smelt-\$($work/next):1 >/dev/null
SH
chmod +x "$work"/docker-build "$work"/docker-reset "$work"/buildah-build "$work"/buildah-reset "$work"/smelt-build

out=${OUT:-$work}
if [ "$bench" = context ]; then
for kind in dir targz s3; do
  case $kind in
    dir) src=$ctx; pre= ;;
    targz) src=tar://$work/ctx50k.tar.gz; pre= ;;
    s3) src=s3://bench/ctx50k.tar.gz; pre="env $s3_env" ;;
  esac
  cat > "$work/smelt-$kind" <<SH
#!/bin/sh
set -e
$pre $smelt build -c $src -f Dockerfile -v \${LOG:-error} -d $reg/smelt-$kind-\$($work/next):1 >/dev/null
SH
  cat > "$work/smelt-warm-$kind" <<SH
#!/bin/sh
set -e
$pre $smelt build -c $src -f Dockerfile -v \${LOG:-error} --cache --cache-copy-layers --cache-repo $reg/cache-ctx -d $reg/smelt-warm-$kind-\$($work/next):1 >/dev/null
SH
  chmod +x "$work/smelt-$kind" "$work/smelt-warm-$kind"
done
"$work/smelt-warm-dir" # fills cache-ctx
hyperfine --runs "$runs" --warmup 1 --export-markdown "$out/compare.md" --export-json "$out/compare.json" \
  --prepare "$work/docker-reset" -n buildkit-dir "$work/docker-build" \
  --prepare "$work/buildah-reset" -n buildah-dir "$work/buildah-build" \
  --prepare true -n smelt-dir "$work/smelt-dir" \
  --prepare true -n smelt-targz "$work/smelt-targz" \
  --prepare true -n smelt-s3 "$work/smelt-s3" \
  --prepare true -n smelt-warm-dir "$work/smelt-warm-dir" \
  --prepare true -n smelt-warm-targz "$work/smelt-warm-targz" \
  --prepare true -n smelt-warm-s3 "$work/smelt-warm-s3"
cat "$out/compare.md"
echo "context: 50000 files, $ctx_bytes bytes; tar.gz $(stat -c %s "$work/ctx50k.tar.gz") bytes"
python3 - "$out/compare.json" "$ctx_bytes" <<'PY'
import json, sys
bytes_ = int(sys.argv[2])
for r in json.load(open(sys.argv[1]))["results"]:
    m = r["mean"]
    print(f"  {r['command']:18} {m:7.3f} s  {50000 / m:9.0f} files/s  {bytes_ / m / 1e6:7.1f} MB/s")
PY
echo "smelt's fetch figures (one run each, -v info):"
for kind in targz s3; do LOG=info "$work/smelt-warm-$kind" 2>&1 | grep -E "context (tar|s3)://" | sed 's/^/  /'; done
echo "peak RSS (one run each, /usr/bin/time -v):"
for b in smelt-dir smelt-s3 smelt-warm-s3; do
  kb=$(/usr/bin/time -v "$work/$b" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}')
  echo "  $b: $kb kB"
done
exit 0
fi
if [ "$bench" = image ]; then
scripts/build-images.sh >/dev/null
musl=$PWD/target/x86_64-unknown-linux-musl/release/smelt
podman_=(podman --root "$state/podman/root" --runroot /run/smelt-compare-podman
  --storage-driver vfs --cgroup-manager cgroupfs --runtime runc --events-backend file)
"${podman_[@]}" load -q -i target/images/executor.tar >/dev/null
executor=localhost/smelt/executor:latest
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
run_image="${podman_[*]} run --network host --ulimit=nofile=$nofile:$nofile --ulimit=nproc=$nproc:$nproc -v $ctx:/workspace $executor"
# the container (its root now holds the built image's files) is removed by
# the next run's prepare step, outside the timed window, as the other
# builders' stores are emptied
cat > "$work/podman-reset" <<SH
#!/bin/sh
${podman_[*]} rm -af >/dev/null 2>&1 || true
SH
chmod +x "$work/podman-reset"
for v in glibc musl image; do
  case $v in
    glibc) cmd="$smelt build -c $ctx -v error" ;;
    musl) cmd="$musl build -c $ctx -v error" ;;
    image) cmd="$run_image --context dir:///workspace -v error" ;;
  esac
  cat > "$work/smelt-$v-cold" <<SH
#!/bin/sh
set -e
$cmd -d $reg/smelt-$v-\$($work/next):1 >/dev/null 2>&1
SH
  cat > "$work/smelt-$v-warm" <<SH
#!/bin/sh
set -e
$cmd --cache --cache-copy-layers --cache-repo $reg/cache-$v -d $reg/smelt-$v-warm-\$($work/next):1 >/dev/null 2>&1
SH
  chmod +x "$work/smelt-$v-cold" "$work/smelt-$v-warm"
  "$work/smelt-$v-warm" # fills cache-$v
done
cat > "$work/docker-warm" <<SH
#!/bin/sh
set -e
export DOCKER_HOST=$sock DOCKER_BUILDKIT=1
tag=$reg/buildkit-warm-\$($work/next):1
/usr/bin/docker build -q --network host --cache-from $reg/buildkit-cache:1 -t "\$tag" $ctx >/dev/null
/usr/bin/docker push -q "\$tag" >/dev/null
SH
cat > "$work/buildah-warm" <<SH
#!/bin/sh
set -e
tag=$reg/buildah-warm-\$($work/next):1
buildah ${buildah_store[*]} build -q --isolation chroot --layers --tls-verify=false --cache-from $reg/buildah-cache --cache-to $reg/buildah-cache -t "\$tag" $ctx >/dev/null
buildah ${buildah_store[*]} push -q --tls-verify=false "\$tag" "docker://\$tag"
SH
chmod +x "$work/docker-warm" "$work/buildah-warm"
# fill BuildKit's inline cache and buildah's cache repository
"$work/docker-reset"
DOCKER_HOST=$sock DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t "$reg/buildkit-cache:1" "$ctx" >/dev/null
DOCKER_HOST=$sock /usr/bin/docker push -q "$reg/buildkit-cache:1" >/dev/null
"$work/buildah-reset"
"$work/buildah-warm"
hyperfine --runs "$runs" --warmup 1 --export-markdown "$out/compare.md" \
  --prepare "$work/docker-reset" -n buildkit "$work/docker-build" \
  --prepare "$work/buildah-reset" -n buildah "$work/buildah-build" \
  --prepare true -n smelt "$work/smelt-glibc-cold" \
  --prepare true -n smelt-musl "$work/smelt-musl-cold" \
  --prepare "$work/podman-reset" -n smelt-image "$work/smelt-image-cold" \
  --prepare "$work/docker-reset" -n buildkit-warm "$work/docker-warm" \
  --prepare "$work/buildah-reset" -n buildah-warm "$work/buildah-warm" \
  --prepare true -n smelt-warm "$work/smelt-glibc-warm" \
  --prepare true -n smelt-musl-warm "$work/smelt-musl-warm" \
  --prepare "$work/podman-reset" -n smelt-image-warm "$work/smelt-image-warm"
cat "$out/compare.md"
echo "peak RSS (one run each, /usr/bin/time -v; the image's is podman's, not the build's):"
for b in smelt-glibc-cold smelt-musl-cold smelt-glibc-warm smelt-musl-warm; do
  kb=$(/usr/bin/time -v "$work/$b" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}')
  echo "  $b: $kb kB"
done
exit 0
fi
if [ "$bench" = cache ]; then
cat > "$work/smelt-cold" <<SH
#!/bin/sh
set -e
n=\$($work/next)
$smelt build -c $ctx -v error --cache --cache-copy-layers --cache-repo $reg/cache-\$n -d $reg/smelt-\$n:1 >/dev/null
SH
cat > "$work/smelt-warm" <<SH
#!/bin/sh
set -e
$smelt build -c $ctx -v error --cache --cache-copy-layers --cache-repo $reg/cache-warm -d $reg/smelt-warm-\$($work/next):1 >/dev/null
SH
# the same build on a base 10x the size (the Debian base plus 1 GiB of
# random bytes in a layer of its own): a warm build should not notice
mkdir -p "$work/big" "$work/small-big"
head -c 1073741824 /dev/urandom > "$work/big/blob"
printf 'FROM %s\nCOPY blob /blob\n' "$base" > "$work/big/Dockerfile"
"$smelt" build -c "$work/big" -v error -d "$reg/debian-big:1" >/dev/null
rm -f "$work/big/blob"
cp -r "$ctx/ctx" "$work/small-big/ctx"
sed "s|^FROM .*|FROM $reg/debian-big:1|" "$ctx/Dockerfile" > "$work/small-big/Dockerfile"
cat > "$work/smelt-warm-big" <<SH
#!/bin/sh
set -e
$smelt build -c $work/small-big -v error --cache --cache-copy-layers --cache-repo $reg/cache-warm-big -d $reg/smelt-warm-big-\$($work/next):1 >/dev/null
SH
# the changed-file rebuild: a copy of bench-small whose file-000.txt a
# prepare step rewrites before each run
changed=$work/changed
cp -r "$ctx" "$changed"
change="sh -c 'head -c 2048 /dev/urandom > $changed/ctx/file-000.txt'"
cat > "$work/smelt-changed" <<SH
#!/bin/sh
set -e
$smelt build -c $changed -v error --cache --cache-copy-layers --cache-repo $reg/cache-changed \$SMELT_EXTRA -d $reg/smelt-changed-\$($work/next):1 >/dev/null
SH
cat > "$work/docker-changed" <<SH
#!/bin/sh
set -e
export DOCKER_HOST=$sock DOCKER_BUILDKIT=1
tag=$reg/buildkit-changed-\$($work/next):1
/usr/bin/docker build -q --network host --build-arg BUILDKIT_INLINE_CACHE=1 \$DOCKER_EXTRA -t "\$tag" $changed >/dev/null 2>$state/docker-changed.log
/usr/bin/docker push -q "\$tag" >/dev/null 2>>$state/docker-changed.log
echo "\$tag" > $work/docker-changed.last
SH
cat > "$work/docker-changed-empty" <<SH
#!/bin/sh
DOCKER_EXTRA="--cache-from \$(cat $work/docker-changed.last)" exec $work/docker-changed
SH
cat > "$work/buildah-changed" <<SH
#!/bin/sh
set -e
tag=$reg/buildah-changed-\$($work/next):1
buildah ${buildah_store[*]} build -q --isolation chroot --layers --tls-verify=false -t "\$tag" $changed >/dev/null
buildah ${buildah_store[*]} push -q --tls-verify=false "\$tag" "docker://\$tag"
SH
# the cache-mount build
cm=$work/cachemount
mkdir -p "$cm"
cat > "$cm/Dockerfile" <<DF
FROM $base
ARG RUN_ID
RUN --mount=type=cache,id=bench,target=/var/cache/bench \\
    if [ ! -f /var/cache/bench/done ]; then \\
      for i in \$(seq 200); do seq 1 600000 | gzip -1 | head -c 1048576 > /var/cache/bench/f\$i; done; \\
      touch /var/cache/bench/done; \\
    fi; du -sm /var/cache/bench > /cache-size; echo \$RUN_ID > /run-id
DF
cat > "$work/smelt-cachemount" <<SH
#!/bin/sh
set -e
n=\$($work/next)
$smelt build -c $cm -v error --cache --cache-repo $reg/cache-cm --kaniko-dir $work/kaniko-\$n \\
  --build-arg RUN_ID=\$n -d $reg/smelt-cm-\$n:1 >/dev/null
SH
cat > "$work/docker-cachemount" <<SH
#!/bin/sh
set -e
export DOCKER_HOST=$sock DOCKER_BUILDKIT=1
tag=$reg/buildkit-cm-\$($work/next):1
/usr/bin/docker build -q --network host --build-arg RUN_ID=\$tag -t "\$tag" $cm >/dev/null
/usr/bin/docker push -q "\$tag" >/dev/null
SH
cat > "$work/buildah-cachemount" <<SH
#!/bin/sh
set -e
tag=$reg/buildah-cm-\$($work/next):1
buildah ${buildah_store[*]} build -q --isolation chroot --layers --tls-verify=false --build-arg RUN_ID=\$tag -t "\$tag" $cm >/dev/null
buildah ${buildah_store[*]} push -q --tls-verify=false "\$tag" "docker://\$tag"
SH
cat > "$work/buildah-cm-reset" <<SH
#!/bin/sh
$work/buildah-reset
rm -rf /var/tmp/buildah-cache /var/tmp/buildah-cache-* 2>/dev/null || true
SH
chmod +x "$work/smelt-cold" "$work/smelt-warm" "$work/smelt-warm-big" "$work"/*-changed* "$work"/*-cachemount "$work/buildah-cm-reset"
"$work/smelt-warm" # fills cache-warm
"$work/smelt-warm-big" # fills cache-warm-big
"$work/smelt-changed" # fills cache-changed
SMELT_EXTRA="--cache-dir $work/bases" "$work/smelt-changed" # keeps the base unpacked
"$work/docker-changed" # BuildKit's local and inline cache
"$work/buildah-changed" # buildah's local layers
"$work/smelt-cachemount" # fills cache-cm and its cache mount
hyperfine --runs "$runs" --warmup 1 --export-markdown "$out/compare.md" \
  --prepare true -n smelt-cold "$work/smelt-cold" \
  --prepare true -n smelt-warm "$work/smelt-warm" \
  --prepare true -n smelt-warm-10x-base "$work/smelt-warm-big" \
  --prepare "$work/buildah-reset" -n buildah "$work/buildah-build" \
  --prepare "$change" -n smelt-changed-empty-runner "$work/smelt-changed" \
  --prepare "$change" -n smelt-changed-persistent-runner "SMELT_EXTRA='--cache-dir $work/bases' $work/smelt-changed" \
  --prepare "$change" -n buildkit-changed-persistent-runner "$work/docker-changed" \
  --prepare "$change && $work/docker-reset" -n buildkit-changed-empty-runner "$work/docker-changed-empty" \
  --prepare "$change" -n buildah-changed-persistent-runner "$work/buildah-changed" \
  --prepare true -n smelt-cachemount-empty-runner "$work/smelt-cachemount" \
  --prepare "$work/docker-reset" -n buildkit-cachemount-empty-runner "$work/docker-cachemount" \
  --prepare "$work/buildah-cm-reset" -n buildah-cachemount-empty-runner "$work/buildah-cachemount"
cat "$out/compare.md"
echo "peak RSS (one run each, /usr/bin/time -v):"
"$work/buildah-reset"
for b in smelt-cold smelt-warm buildah-build; do
  kb=$(/usr/bin/time -v "$work/$b" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}')
  echo "  $b: $kb kB"
done
exit 0
fi
hyperfine --runs "$runs" --warmup 1 --export-markdown "$out/compare.md" \
  --prepare "$work/docker-reset" -n buildkit "$work/docker-build" \
  --prepare "$work/buildah-reset" -n buildah "$work/buildah-build" \
  --prepare true -n smelt "$work/smelt-build"
cat "$out/compare.md"

echo "peak RSS (one run each, /usr/bin/time -v):"
"$work/docker-reset"; "$work/buildah-reset"
for b in smelt buildah; do
  kb=$(/usr/bin/time -v "$work/$b-build" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}')
  echo "  $b: $kb kB"
done
pid=$(cat /var/run/smelt-compare-docker.pid 2>/dev/null || true)
if [ -n "$pid" ]; then
  before=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
  "$work/docker-build"
  after=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)
  echo "  buildkit (dockerd's high-water mark, before and after one build): $before kB -> $after kB"
fi
