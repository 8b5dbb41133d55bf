#!/usr/bin/env bash
# Builds smelt's kaniko-compatible images with smelt itself:
#   executor        FROM scratch, /kaniko/executor and /kaniko/warmer (one
#                   static musl binary), CA certificates, a docker config dir
#   executor:debug  the same plus Debian's static busybox under /busybox
# from images/executor/Dockerfile, each written as an OCI layout and a
# docker-archive under target/images/ (executor-oci, executor.tar,
# debug-oci, debug.tar, *.digest). Reproducible: SOURCE_DATE_EPOCH is the
# commit's time, so the same commit gives the same digests.
#
#   scripts/build-images.sh                   build, no push
#   scripts/build-images.sh --push REPO       also push REPO:VERSION,
#                                             REPO:latest, REPO:VERSION-debug
#                                             and REPO:debug
# Run as root on Debian with the Rust toolchain (rustup).
set -euo pipefail
cd "$(dirname "$0")/.."

push=
case "${1:-}" in
  --push)
    push=${2:?--push needs a repository (host/path)}
    ;;
  "") ;;
  *)
    echo "usage: $0 [--push REPO]" >&2
    exit 2
    ;;
esac

. scripts/lib.sh
# musl-gcc for the C parts (ring); the CA bundle and busybox go into the images
install_missing musl-tools binutils ca-certificates busybox-static git

triple=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  rustup target add "$triple"
fi

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --target "$triple"
bin=$target_dir/$triple/release/smelt
# static-pie: no interpreter, no shared library (glibc's ldd says
# "statically linked" for static-pie, "not a dynamic executable" without PIE)
if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
  echo "$bin is not static:" >&2
  ldd "$bin" >&2 || true
  exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source=${SMELT_SOURCE:-$(git remote get-url origin 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "note: the work tree has changes; the images are not those of $revision" >&2
fi

out=$PWD/target/images
ctx=$out/context
rm -rf "$ctx"
mkdir -p "$ctx/kaniko/.docker" "$ctx/kaniko/ssl/certs" "$ctx/etc" "$ctx/busybox"
# symbols stripped (1 MB); panics abort, there is no backtrace to name them
strip -o "$ctx/kaniko/executor" "$bin"
ln -s executor "$ctx/kaniko/warmer"
# Debian's bundle, one PEM file: rustls-native-certs reads every file in
# SSL_CERT_DIR, and a user's extra bundle mounted beside it is read too
cp /etc/ssl/certs/ca-certificates.crt "$ctx/kaniko/ssl/certs/ca-certificates.crt"
# name lookups: files first, then DNS (musl reads /etc/hosts and
# /etc/resolv.conf itself; this is for tools in a base image that look)
printf 'hosts: files dns\n' > "$ctx/etc/nsswitch.conf"
# the image's USER root by name, for runtimes that look it up
printf 'root:x:0:0:root:/root:/busybox/sh\n' > "$ctx/etc/passwd"
printf 'root:x:0:\n' > "$ctx/etc/group"
busybox=$(command -v busybox)
cp "$busybox" "$ctx/busybox/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$ctx/busybox/$applet"
done
# fixed modes whatever the umask
chmod 0755 "$ctx/kaniko/executor" "$ctx/busybox/busybox"
chmod 0644 "$ctx/kaniko/ssl/certs/ca-certificates.crt" "$ctx/etc/"*

repo=${push:-localhost/smelt/executor}
build() { # build TARGET TAG... : one image, its outputs named after TARGET
  local target=$1
  shift
  local dests=() t
  for t in "$@"; do dests+=(--destination "$repo:$t"); done
  rm -rf "$out/$target-oci" "$out/$target.tar"
  "$bin" build \
    --context "$ctx" \
    --dockerfile "$PWD/images/executor/Dockerfile" \
    --target "$target" \
    --reproducible \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --build-arg "SOURCE=$source" \
    "${dests[@]}" \
    $([ -n "$push" ] || echo --no-push) \
    --oci-layout-path "$out/$target-oci" \
    --tar-path "$out/$target.tar" \
    --digest-file "$out/$target.digest" >/dev/null
  echo "$target: $(cat "$out/$target.digest")"
}
build executor "$version" latest
build debug "$version-debug" debug
