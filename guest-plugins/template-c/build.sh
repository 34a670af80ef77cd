#!/usr/bin/env bash
# Builds {{NAME}}.wasm, a Runnel {{ROLE}} plugin, from app.c. Idempotent: what is missing
# is installed on first use —
#  - clang 14, wasm-ld, wasi-libc and the wasm32 compiler runtime: Debian packages
#    clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (as root or through sudo; or set
#    WASI_CC to a clang that targets wasm32-wasi with a sysroot, such as wasi-sdk's);
#  - wit-bindgen 0.61.0 (the C bindings) and wasm-tools 1.258.3 (wraps the module into a
#    component): `cargo install`, into ~/.cache/runnel/tools;
#  - the WASI preview1 reactor adapter of wasmtime 48.0.8 (from the crates.io package
#    wasi-preview1-component-adapter-provider, checked against its SHA-256).
# The steps it runs, to do them by hand:
#   wit-bindgen c --world {{ROLE}}-plugin wit --out-dir gen
#   clang-14 --target=wasm32-wasi -mexec-model=reactor -O2 -msimd128 -Igen -I. \
#       app.c gen/{{ROLE}}_plugin.c gen/{{ROLE}}_plugin_component_type.o -o gen/core.wasm
#   wasm-tools component new gen/core.wasm \
#       --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o {{NAME}}.wasm
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="${RUNNEL_TOOLS:-$HOME/.cache/runnel/tools}"
WIT_BINDGEN=0.61.0
WASM_TOOLS=1.258.3
ADAPTER=48.0.8
ADAPTER_SHA256=d3a1674fffec103c1d4367d4417a3bd5423cde3cfd56ff3b326b5fc72c0a8ebd
DEBIAN_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)

# Installs into a directory beside, then renames it into place: a build running at the
# same time never sees half an installation.
install_into() { # DIR COMMAND... (the command installs into $tmp)
    local dir=$1
    shift
    [ -d "$dir" ] && return
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    "$@"
    mkdir -p "$(dirname "$dir")"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
}

# One installer at a time (builds may run side by side, as the tests run them): apt holds
# a lock that a second apt-get would fail on, and two `cargo install`s would build twice.
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.install-c.lock"
flock 9

CC=${WASI_CC:-clang-14}
if [ -z "${WASI_CC:-}" ] && ! dpkg -s "${DEBIAN_PACKAGES[@]}" >/dev/null 2>&1; then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo -n true 2>/dev/null || {
            echo "build.sh: needs ${DEBIAN_PACKAGES[*]} (Debian); install them or set WASI_CC" >&2
            exit 1
        }
        as_root=(sudo -n)
    fi
    echo "installing ${DEBIAN_PACKAGES[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt=("${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -q)
    "${apt[@]}" install "${DEBIAN_PACKAGES[@]}" >/dev/null || {
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install "${DEBIAN_PACKAGES[@]}" >/dev/null
    }
fi

cargo_install() { # CRATE VERSION FEATURE
    echo "installing $1 $2 into $TOOLS (cargo install, a few minutes once)" >&2
    cargo install --quiet --locked --root "$tmp" "$1" --version "=$2" --no-default-features --features "$3"
}
install_into "$TOOLS/wit-bindgen-$WIT_BINDGEN" cargo_install wit-bindgen-cli "$WIT_BINDGEN" c
install_into "$TOOLS/wasm-tools-$WASM_TOOLS" cargo_install wasm-tools "$WASM_TOOLS" component

fetch_adapter() {
    echo "fetching the WASI preview1 adapter of wasmtime $ADAPTER" >&2
    local crate=wasi-preview1-component-adapter-provider
    mkdir -p "$tmp"
    curl -sSfL -o "$tmp/adapter.crate" "https://static.crates.io/crates/$crate/$crate-$ADAPTER.crate"
    echo "$ADAPTER_SHA256  $tmp/adapter.crate" | sha256sum --check --quiet
    tar -xzf "$tmp/adapter.crate" -C "$tmp" --strip-components=2 \
        "$crate-$ADAPTER/artefacts/wasi_snapshot_preview1.reactor.wasm"
    rm "$tmp/adapter.crate"
}
install_into "$TOOLS/wasi-adapter-$ADAPTER" fetch_adapter
flock -u 9

mkdir -p gen
"$TOOLS/wit-bindgen-$WIT_BINDGEN/bin/wit-bindgen" c --world {{ROLE}}-plugin wit --out-dir gen >/dev/null
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -msimd128 -Wall -Wextra -Wno-unused-parameter \
    -Wno-unused-function -Igen -I. \
    app.c gen/{{ROLE}}_plugin.c gen/{{ROLE}}_plugin_component_type.o -o gen/core.wasm
"$TOOLS/wasm-tools-$WASM_TOOLS/bin/wasm-tools" component new gen/core.wasm \
    --adapt "wasi_snapshot_preview1=$TOOLS/wasi-adapter-$ADAPTER/wasi_snapshot_preview1.reactor.wasm" \
    -o {{NAME}}.wasm
echo "built {{NAME}}.wasm; try it: runnel plugin test {{NAME}}.wasm {{TRY}}" >&2
