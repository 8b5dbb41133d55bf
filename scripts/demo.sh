#!/usr/bin/env bash
# The README's main job: builds the FROM-scratch example (a static busybox
# plus files and metadata) into a docker-archive and an OCI layout, then
# reads both back with skopeo. Then, against a registry it starts on
# loopback (Debian's docker-registry), pushes that image and builds a
# second one FROM it, which pushes without downloading the base.
# Run as root on Debian; nothing outside this machine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(busybox-static skopeo docker-registry curl)
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
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
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
port=$((20000 + RANDOM % 20000))
reg=127.0.0.1:$port
cat > "$ctx/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $ctx/registry
http:
  addr: $reg
YAML
docker-registry serve "$ctx/registry.yml" >"$ctx/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fs "http://$reg/v2/" >/dev/null && break
  sleep 0.1
done

./target/release/smelt build --context "$ctx" --dockerfile Dockerfile \
  --reproducible --destination "$reg/smelt/hello:latest"
./target/release/smelt build --context examples/app \
  --build-arg "BASE=$reg/smelt/hello:latest" \
  --destination "$reg/smelt/app:latest" --digest-file "$out/app.digest"
echo "== skopeo inspect docker://$reg/smelt/app:latest"
skopeo inspect --tls-verify=false "docker://$reg/smelt/app:latest"
echo "app digest: $(cat "$out/app.digest")"
