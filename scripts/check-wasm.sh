#!/usr/bin/env bash
# Proves that billing-core compiles for wasm32-unknown-unknown: the pricing page will run the very same core in
# the browser. Uses the rustup target where it can be installed (an ordinary laptop: `rustup target add`);
# otherwise Debian's rustc-web with its matching standard-library source and -Zbuild-std (these machines, where
# rustup cannot download). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-unknown-unknown
# TALLY_WASM_ROUTE=debian skips rustup's target, to exercise the route a machine without it takes.
if [ "${TALLY_WASM_ROUTE:-}" != debian ] && { rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || rustup target add "$target" >/dev/null 2>&1; }; then
  echo "check-wasm: building billing-core for $target with rustup's toolchain"
  cargo build --locked -p billing-core --lib --target "$target" --target-dir target/wasm
  exit 0
fi

# The Debian route. rustc-web and rust-web-src must be the same version: -Zbuild-std compiles that exact source.
if ! dpkg -s rustc-web rust-web-src >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "check-wasm: cannot install the $target target (rustup target add failed, and no apt as root)" >&2
    exit 1
  fi
  echo "check-wasm: installing Debian's rustc-web and its standard-library source"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src >/dev/null
fi
compiler=$(dpkg-query -W -f '${Version}' rustc-web)
source_version=$(dpkg-query -W -f '${Version}' rust-web-src)
if [ "$compiler" != "$source_version" ]; then
  echo "check-wasm: rustc-web $compiler and rust-web-src $source_version differ; -Zbuild-std needs them equal" >&2
  exit 1
fi
rustup toolchain list | grep -q '^debian' || rustup toolchain link debian /usr
echo "check-wasm: building billing-core for $target with Debian's rustc $(rustc +debian -V | cut -d' ' -f2) and -Zbuild-std"
# RUSTC_BOOTSTRAP only for this one build: -Zbuild-std is unstable, and the host build must never see it.
RUSTC_BOOTSTRAP=1 cargo +debian build --locked -p billing-core --lib --target "$target" \
  -Zbuild-std=std,panic_abort --target-dir target/wasm
