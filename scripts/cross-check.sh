#!/usr/bin/env bash
# Cross-builds the agent for another Linux architecture and checks it under qemu-user
# against this machine's build (issue 16's first step; not in CI yet: a cross release
# build takes ~10 minutes on 2 cores). For TARGET (riscv64gc or aarch64; default
# riscv64gc): installs Debian's cross gcc and qemu-user and the rustup target when
# missing, builds `--release --no-default-features` (ISA-L's autotools do not know
# Rust's riscv64gc triple) for <TARGET>-unknown-linux-gnu, then runs the real access log
# through combined → strip-control → level-router (stdin → file sink, JSON) natively and
# under qemu — for riscv64 twice: on a CPU without the vector extension (qemu's default:
# the agent picks the Pulley interpreter by itself) and with it (`-cpu rv64,v=true`:
# Cranelift) — and compares the outputs byte for byte. Prints the CPU time of each run
# (emulated: qemu's, not a board's). Usage: scripts/cross-check.sh [riscv64gc|aarch64]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-riscv64gc}
case "$ARCH" in
    riscv64gc) GCC=riscv64-linux-gnu; PKGS="gcc-riscv64-linux-gnu libc6-dev-riscv64-cross"; QEMU=qemu-riscv64 ;;
    aarch64) GCC=aarch64-linux-gnu; PKGS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross"; QEMU=qemu-aarch64 ;;
    *) echo "cross-check: unknown target $ARCH (riscv64gc or aarch64)" >&2; exit 2 ;;
esac
TARGET=$ARCH-unknown-linux-gnu
if ! command -v "$GCC-gcc" >/dev/null || ! command -v "$QEMU" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS qemu-user >/dev/null
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
scripts/build-plugins.sh
upper=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
under=$(echo "$TARGET" | tr '-' '_')
env "CARGO_TARGET_${upper}_LINKER=$GCC-gcc" "CC_${under}=$GCC-gcc" "AR_${under}=$GCC-ar" \
    cargo build --release -p runnel --no-default-features --target "$TARGET"
scripts/build-release.sh >&2
W=target/cross-check/$ARCH
rm -rf "$W" && mkdir -p "$W"
cat > "$W/chain.toml" <<TOML
[agent]
summary_interval_secs = 0
plugin_cache = false
data_dir = "$W/data"

[plugins.access]
builtin = "combined"
[plugins.clean]
builtin = "strip-control"
[plugins.by-level]
builtin = "level-router"
[plugins.by-level.config]
routes = { alerts = ["error", "fatal"] }

[sources.in]
type = "stdin"
plugins = ["access", "clean", "by-level"]
channels = ["main"]
routes = { alerts = ["main"] }

[channels.main]
type = "memory"

[sinks.out]
type = "file"
channel = "main"
path = "$W/out.jsonl"
format = "json"
TOML
run() { # NAME COMMAND...
    local name=$1; shift
    rm -f "$W/out.jsonl"
    local start=$(date +%s.%N)
    RUNNEL_LOG=info "$@" run --config "$W/chain.toml" < tests/data/apache_access/apache_logs 2>"$W/$name.log"
    local end=$(date +%s.%N)
    mv "$W/out.jsonl" "$W/$name.jsonl"
    printf '%-34s %6d events in %6.1f s wall; %s\n' "$name" "$(wc -l < "$W/$name.jsonl")" \
        "$(echo "$end - $start" | bc)" "$(grep -o 'plugins run on Pulley' "$W/$name.log" || echo 'Cranelift')"
}
run native target/release/runnel
"$QEMU" -L "/usr/$GCC" "target/$TARGET/release/runnel" --version
if [ "$ARCH" = riscv64gc ]; then
    run "qemu $ARCH, no vector extension" "$QEMU" -L "/usr/$GCC" "target/$TARGET/release/runnel"
    run "qemu $ARCH, vector extension" "$QEMU" -cpu rv64,v=true -L "/usr/$GCC" "target/$TARGET/release/runnel"
else
    run "qemu $ARCH" "$QEMU" -L "/usr/$GCC" "target/$TARGET/release/runnel"
fi
ls -l "target/$TARGET/release/runnel" target/release/runnel | awk '{print $5, $9}'
status=0
for f in "$W"/*.jsonl; do
    [ "$f" = "$W/native.jsonl" ] && continue
    if cmp -s "$W/native.jsonl" "$f"; then echo "same output as native: $(basename "$f")"
    else echo "DIFFERENT output: $(basename "$f")"; status=1; fi
done
exit $status
