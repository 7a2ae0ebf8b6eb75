#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs formatting,
# lint and the whole test suite in one build profile.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start for real: etcd for the etcd store.
apt_packages=(etcd-server)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# kubectl renders the manifests and drives the server in tests. Debian's package is far too
# old (1.20), so it must come with the machine (the google-cloud-sdk kubectl here).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl (1.28 or newer) is needed on PATH for the tests" >&2
  exit 1
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked

# The API, kubectl and ingest suites once more, with every server on its own real etcd
# instead of the embedded store: one suite, two stores.
echo "==> cargo test (etcd store)"
ZEN_TEST_STORE=etcd cargo test --locked --test api_protocol --test dev_kubectl --test ingest
