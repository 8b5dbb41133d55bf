#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages,
# run as root; the object-store emulators from PyPI and npm), then the
# quality gates and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
install_missing skopeo umoci podman runc zstd xz-utils tar docker-registry apache2-utils \
  busybox-static openssl curl docker.io util-linux git musl-tools ca-certificates
# the static binary of the executor images (tests/it/executor_image.rs runs
# scripts/build-images.sh)
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
install_emulators "${SMELT_EMULATORS:-$PWD/target/emulators}"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
