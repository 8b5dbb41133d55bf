#!/usr/bin/env bash
# The README's main job: builds the FROM-scratch example (a static busybox
# plus files and metadata) into a docker-archive and an OCI layout, with no
# registry, then reads both back with skopeo. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(busybox-static skopeo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --locked --release
out=${OUT:-out}
mkdir -p "$out"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
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
