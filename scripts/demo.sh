#!/usr/bin/env bash
# The README's main job: builds the FROM-scratch example (a static busybox
# plus files and metadata) into a docker-archive and an OCI layout, then
# reads both back with skopeo. Then, against a registry it starts on
# loopback (Debian's docker-registry), pushes that image and builds a
# second one FROM it, which pushes without downloading the base.
# Run as root on Debian; nothing outside this machine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
install_missing busybox-static skopeo docker-registry curl

cargo build --locked --release
out=${OUT:-out}
mkdir -p "$out"
ctx=$(mktemp -d)
REGISTRY_PID=
cleanup() {
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$ctx"
}
trap cleanup EXIT
cp -a examples/hello/. "$ctx/"
cp /bin/busybox "$ctx/busybox"

./target/release/smelt build \
  --context "$ctx" \
  --dockerfile Dockerfile \
  --destination example.local/smelt/hello:latest \
  --no-push \
  --reproducible \
  --tar-path "$out/hello.tar" \
  --oci-layout-path "$out/hello-oci" \
  --digest-file "$out/hello.digest"

echo "== skopeo inspect docker-archive:$out/hello.tar"
skopeo inspect "docker-archive:$out/hello.tar"
echo "== skopeo inspect oci:$out/hello-oci:latest"
skopeo inspect "oci:$out/hello-oci:latest" | head -5
echo "digest: $(cat "$out/hello.digest")"

echo "== a registry on loopback"
start_registry "$ctx/registry"
reg=$REGISTRY

./target/release/smelt build --context "$ctx" --dockerfile Dockerfile \
  --reproducible --destination "$reg/smelt/hello:latest"
./target/release/smelt build --context examples/app \
  --build-arg "BASE=$reg/smelt/hello:latest" \
  --destination "$reg/smelt/app:latest" --digest-file "$out/app.digest"
echo "== skopeo inspect docker://$reg/smelt/app:latest"
skopeo inspect --tls-verify=false "docker://$reg/smelt/app:latest"
echo "app digest: $(cat "$out/app.digest")"
