#!/usr/bin/env bash
# Release packages for the edge. For each TARGET (x86_64, aarch64, riscv64gc; default
# all three; see scripts/targets.sh for what each is linked against):
#  1. installs its cross toolchain and rustup target when missing, builds the plugins;
#  2. precompiles the builtin plugins for it with this machine's agent (`runnel plugin
#     compile --builtins --target`; Pulley bytecode for riscv64), so the device does
#     not run Cranelift at start;
#  3. builds the agent with the `dist` profile (fat LTO, one codegen unit, stripped)
#     embedding that code;
#  4. writes dist/runnel-VERSION-TARGET[-minimal] (the binary), its .xz, and a .deb
#     (cargo-deb: the binary, the hardened systemd unit, /etc/runnel/runnel.toml).
# VARIANT=minimal builds without the compiler: the agent runs its embedded builtins and
# signed `runnel plugin compile` output only (the smallest binary; BENCHMARKS.md).
# NO_DEB=1 skips the .deb. Prints what it built, with sizes.
# Usage: scripts/package.sh [x86_64] [aarch64] [riscv64gc]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/targets.sh
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64 aarch64 riscv64gc)
VARIANT=${VARIANT:-full}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
mkdir -p dist

# The build tools (ISA-L's), the plugins, and this machine's agent (which compiles the
# builtins for the targets: a debug build is enough, Cranelift's output is the same).
isal=isal
scripts/setup.sh || isal=
scripts/build-plugins.sh
cargo build -q -p runnel --no-default-features --features "all-arch ${isal}"
NATIVE=$PWD/target/debug/runnel

if [ -z "${NO_DEB:-}" ] && ! command -v cargo-deb >/dev/null; then
    cargo install --locked cargo-deb --version '^3.6'
fi

# The cargo features of a target's build.
features_for() {
    local f=()
    [ "$VARIANT" = minimal ] || f+=(compiler)
    # ISA-L has x86-64 and aarch64 assembly; its autotools do not know riscv64gc.
    [ -n "$isal" ] && [ "$1" != riscv64gc ] && f+=(isal)
    # The x86-64 package is also what a fleet's build machine compiles plugins with.
    [ "$VARIANT" != minimal ] && [ "$1" = x86_64 ] && f+=(all-arch)
    echo "${f[*]}"
}

for target in "${TARGETS[@]}"; do
    triple=$(target_triple "$target")
    target_setup "$target"
    pre="target/precompiled/$triple"
    "$NATIVE" plugin compile --builtins --target "$(target_plugin_code "$target")" --out "$pre" >/dev/null
    features=$(features_for "$target")
    (
        target_env "$target"
        RUNNEL_PRECOMPILED_DIR="$PWD/$pre" cargo build --profile dist -p runnel \
            --no-default-features --features "$features" --target "$triple"
    )
    name="runnel-$VERSION-$target"
    [ "$VARIANT" = minimal ] && name="$name-minimal"
    cp "target/$triple/dist/runnel" "dist/$name"
    xz -9 -T1 -c "dist/$name" > "dist/$name.xz"
    if [ -z "${NO_DEB:-}" ]; then
        deb_variant=()
        [ "$VARIANT" = minimal ] && deb_variant+=(--deb-version "$VERSION-minimal")
        # The glibc build depends on the C library; the musl ones on nothing.
        [ "$triple" = "${triple%-gnu}" ] || deb_variant+=(--variant glibc)
        cargo deb -p runnel --no-build --no-strip --profile dist --target "$triple" \
            "${deb_variant[@]}" --output "dist/" >/dev/null
    fi
    printf '%-12s %-30s %10d bytes (xz %d); features: %s\n' "$target" "$triple" \
        "$(stat -c %s "dist/$name")" "$(stat -c %s "dist/$name.xz")" "${features:-none}"
done
ls -l dist/
