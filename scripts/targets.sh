# The Linux targets the agent ships for, and how each is built and run: sourced by
# scripts/cross-check.sh and scripts/package.sh (one place for the triples and the
# cross toolchains).
#
# - x86_64 and aarch64: musl, statically linked (no libc needed on the device).
# - riscv64gc: glibc, dynamically linked: rustup ships no standard library for
#   riscv64gc-unknown-linux-musl (1.95), so a static build would need a nightly
#   `-Zbuild-std`.
#
# C code (ring, libdeflate, ISA-L) is compiled with Debian's cross gcc; the musl builds
# link with it too (Rust's musl targets bring their own C runtime and libc).

# The Rust target triple of a target name.
target_triple() {
    case "$1" in
        x86_64) echo x86_64-unknown-linux-musl ;;
        aarch64) echo aarch64-unknown-linux-musl ;;
        riscv64gc) echo riscv64gc-unknown-linux-gnu ;;
        *) echo "unknown target '$1' (x86_64, aarch64 or riscv64gc)" >&2; return 2 ;;
    esac
}

# The `runnel plugin compile --target` the builtins are precompiled with for a target:
# riscv64 boards mostly lack the vector extension Cranelift's SIMD code needs, so
# their builtins are Pulley bytecode (which runs on all of them).
target_plugin_code() {
    case "$1" in
        riscv64gc) echo pulley ;;
        *) echo "$1" ;;
    esac
}

# The Debian packages a target's build needs, and whether it runs here under qemu.
target_packages() {
    case "$1" in
        x86_64) echo "musl-tools" ;;
        aarch64) echo "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" ;;
        riscv64gc) echo "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross qemu-user" ;;
    esac
}

# How to run a target's binary on this machine: nothing (x86_64 here), or qemu-user.
target_runner() {
    case "$1" in
        x86_64) echo "" ;;
        aarch64) echo "qemu-aarch64" ;;
        riscv64gc) echo "qemu-riscv64 -L /usr/riscv64-linux-gnu" ;;
    esac
}

# Installs what a target's build needs (idempotent: only what is missing).
target_setup() {
    local missing=() p
    for p in $(target_packages "$1"); do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    local triple; triple=$(target_triple "$1")
    rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
}

# Exports the cross toolchain's variables for cargo and the cc crate.
target_env() {
    local triple upper under gcc
    triple=$(target_triple "$1")
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    under=$(echo "$triple" | tr '-' '_')
    case "$1" in
        x86_64) gcc=musl-gcc ;;
        aarch64) gcc=aarch64-linux-gnu-gcc ;;
        riscv64gc) gcc=riscv64-linux-gnu-gcc ;;
    esac
    export "CC_${under}=$gcc"
    case "$1" in
        x86_64) ;; # Rust links musl itself; musl-gcc only compiles the C code.
        aarch64)
            export "CARGO_TARGET_${upper}_LINKER=$gcc" "AR_${under}=aarch64-linux-gnu-ar"
            # glibc's gcc calls libgcc's LSE helpers, which musl does not initialise.
            export "CFLAGS_${under}=-mno-outline-atomics" ;;
        riscv64gc)
            export "CARGO_TARGET_${upper}_LINKER=$gcc" "AR_${under}=riscv64-linux-gnu-ar" ;;
    esac
}
