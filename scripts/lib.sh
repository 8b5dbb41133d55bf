# Shell helpers for the project's scripts (sourced, not run): installing
# Debian packages and starting a registry on loopback.

# install_missing PKG...: apt-get installs the packages dpkg does not have.
# Services they bring (docker.io, docker-registry) are not started: the
# scripts and tests start their own, on private sockets and loopback ports.
install_missing() {
  local missing=() p own_policy=0
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing: ${missing[*]}" >&2
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# start_registry DIR: starts Debian's docker-registry on a loopback port,
# storing in DIR, and waits for it. Sets REGISTRY (host:port) and
# REGISTRY_PID (for the caller's cleanup).
start_registry() {
  local dir=$1
  mkdir -p "$dir"
  REGISTRY=127.0.0.1:$((20000 + RANDOM % 20000))
  cat > "$dir/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/data}}
http: {addr: $REGISTRY}
YAML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do
    curl -fs "http://$REGISTRY/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "docker-registry did not start; see $dir/registry.log" >&2
  return 1
}

# make_counter FILE: writes an executable FILE that prints 0, 1, 2, ... on
# successive runs (a repository name of its own for each timed push).
make_counter() {
  local file=$1
  echo 0 > "$file.n"
  cat > "$file" <<SH
#!/bin/sh
n=\$(cat $file.n); echo \$((n + 1)) > $file.n; echo \$n
SH
  chmod +x "$file"
}

# install_emulators DIR: the object-store emulators the context tests
# start, pinned: moto (S3) and gcp-storage-emulator (GCS) with Microsoft's
# blob client (to upload to Azurite) in a venv at DIR/venv, and Azurite
# (Azure blob) from npm under DIR/node. Skipped when already there.
install_emulators() {
  local dir=$1
  if [ ! -x "$dir/venv/bin/moto_server" ] || [ ! -x "$dir/venv/bin/gcp-storage-emulator" ]; then
    echo "installing the S3 and GCS emulators into $dir/venv" >&2
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install -q --disable-pip-version-check \
      'moto[server]==5.2.5' 'gcp-storage-emulator==2026.7.19' 'azure-storage-blob==12.31.1'
  fi
  if [ ! -x "$dir/node/node_modules/.bin/azurite-blob" ]; then
    echo "installing Azurite into $dir/node" >&2
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" azurite@3.35.0 >/dev/null
  fi
}
