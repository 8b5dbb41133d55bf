#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages;
# run as root), then the quality gates and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(skopeo umoci podman zstd xz-utils tar docker-registry apache2-utils busybox-static openssl curl docker.io util-linux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  # packages with services (docker.io, docker-registry) must not start them:
  # the tests start their own, on private sockets and loopback ports
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
