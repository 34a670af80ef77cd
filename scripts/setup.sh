#!/usr/bin/env bash
# Installs what building Runnel needs beside Rust, when it is missing (idempotent):
#  - the wasm32-wasip2 rustup target (the plugins; scripts/build-plugins.sh checks it too);
#  - nasm, autoconf, automake and libtool, which build ISA-L (gzip level 1 of the sinks,
#    the `isal` cargo feature, on by default) — from Debian/Ubuntu packages, as root or
#    through sudo.
# Exits 0 when everything is there; 3 when the ISA-L tools are missing and cannot be
# installed here (then build with `--no-default-features --features compiler,all-arch`: libdeflate does every gzip
# level, a little slower at level 1). The other scripts do exactly that.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: installing the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2
fi

missing=()
for tool in nasm autoconf automake libtoolize; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "setup: ${missing[*]} missing and no root to install them; building without ISA-L" >&2
        exit 3
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "setup: ${missing[*]} missing and no apt-get; building without ISA-L" >&2
    exit 3
fi
echo "setup: installing nasm autoconf automake libtool (for ISA-L)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q nasm autoconf automake libtool >/dev/null; then
    "${as_root[@]}" apt-get update -q >/dev/null || true
    "${as_root[@]}" apt-get install -y -q nasm autoconf automake libtool >/dev/null || {
        echo "setup: could not install the ISA-L build tools; building without ISA-L" >&2
        exit 3
    }
fi
