#!/usr/bin/env bash
# The edge targets under emulation (CI runs this from scripts/test.sh). For each TARGET
# (aarch64, riscv64gc; default both): installs Debian's cross gcc and qemu-user and the
# rustup target when missing, precompiles the builtin plugins for it with this
# machine's agent (`runnel plugin compile --builtins --target`: aarch64 code, Pulley
# bytecode for riscv64), cross-builds the agent embedding them (scripts/targets.sh says
# how), and runs it under qemu-user against this machine's build on:
#   default  the embedded default config (generators → the shipped plugins' chains →
#            files), each generator given a count and a fast rate so that it ends;
#            compared as sets of events without the wall-clock fields;
#   chain    the real Apache access log through combined → strip-control →
#            level-router, the Loghub Linux syslog through regex → strip-control, and
#            the access chain's JSON output (this machine's) through json →
#            field-filter (status ≥ 400 kept) (stdin → file sink); compared byte for
#            byte. Together with the default's host-timestamp: all seven builtins.
# riscv64 runs twice: on qemu's default CPU, without the vector extension (the agent
# picks Pulley by itself and runs the embedded bytecode), and with it (`-cpu
# rv64,v=true`: Cranelift compiles the plugins). Fails on any difference, or when a
# target that should run the embedded code compiled it instead.
#
# Two builds, one per target, to keep CI short: aarch64 is checked as the minimal
# build (no compiler: it runs the embedded aarch64 code and nothing else), riscv64 as
# the full one (Pulley chosen at load, Cranelift with the vector extension).
# scripts/package.sh builds either variant for every target.
#
# PROFILE=release (default) or dist. Times printed are qemu's, not a board's.
# Usage: scripts/cross-check.sh [aarch64] [riscv64gc]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/targets.sh
PROFILE=${PROFILE:-release}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(aarch64 riscv64gc)
LINES=${CROSS_CHECK_LINES:-3000}

scripts/build-plugins.sh >/dev/null
# This machine's agent: the reference, and the compiler of the targets' builtins
# (RUNNEL_BIN: one already built, with the `all-arch` feature).
if [ -n "${RUNNEL_BIN:-}" ]; then
    NATIVE=$RUNNEL_BIN
else
    features=()
    scripts/setup.sh >/dev/null 2>&1 || features=(--no-default-features --features compiler,all-arch)
    cargo build -q -p runnel "${features[@]}"
    NATIVE=$PWD/target/debug/runnel
fi

W=target/cross-check
mkdir -p "$W"
head -n "$LINES" tests/data/apache_access/apache_logs > "$W/access.log"
head -n "$LINES" tests/data/loghub/Linux/Linux_2k.log > "$W/linux.log"

# The embedded default, made to end: a count and a fast rate for every generator.
python3 - "$W/default.toml" <<'PY'
import re, sys
text = open("config/default.toml").read()
text = text.replace('type = "generator"\n', 'type = "generator"\ncount = 300\n')
text = re.sub(r"(?m)^rate = \d+$", "rate = 5000", text)
text = text.replace("summary_interval_secs = 10", "summary_interval_secs = 0")
open(sys.argv[1], "w").write(text)
PY

cat > "$W/chain.toml" <<'TOML'
[agent]
summary_interval_secs = 0

[plugins.access]
builtin = "combined"
[plugins.syslog]
builtin = "regex"
[plugins.syslog.config]
pattern = '^(?P<time>\w{3} +\d+ [\d:]+) (?P<host>\S+) (?P<program>[^\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$'
types = { pid = "int" }
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
path = "out.jsonl"
format = "json"
TOML

# The events of a run's files, sorted, without the fields that hold the wall clock
# (the generators write the time into their lines).
normalise() { # DIR
    python3 - "$1" <<'PY'
import json, pathlib, sys
for name in ("events.jsonl", "alerts.jsonl"):
    out = []
    for line in (pathlib.Path(sys.argv[1]) / "runnel-data" / name).read_text().splitlines():
        e = json.loads(line)
        e.pop("timestamp", None)
        for f in ("time", "timestamp"):
            e.get("fields", {}).pop(f, None)
        out.append(json.dumps(e, sort_keys=True))
    print(name, len(out))
    print("\n".join(sorted(out)))
PY
}

status=0
# run NAME RUNNER... : both scenarios with `RUNNER runnel`; output in $W/NAME/.
run() {
    local name=$1; shift
    local dir="$W/$name"
    rm -rf "$dir" && mkdir -p "$dir/default" "$dir/chain" "$dir/syslog" "$dir/json"
    local start end
    start=$(date +%s.%N)
    (cd "$dir/default" && RUNNEL_LOG=debug "$@" run --config ../../default.toml \
        >/dev/null 2>../default.log)
    normalise "$dir/default" > "$dir/default.events"
    (cd "$dir/chain" && "$@" run --config ../../chain.toml \
        <../../access.log >/dev/null 2>../chain.log)
    (cd "$dir/syslog" && "$@" run --config ../../syslog.toml \
        <../../linux.log >/dev/null 2>../syslog.log)
    (cd "$dir/json" && "$@" run --config ../../json.toml \
        <../../native/chain/out.jsonl >/dev/null 2>../json.log)
    end=$(date +%s.%N)
    local how
    how=$(grep -q 'plugins run on Pulley' "$dir/default.log" && echo Pulley || echo 'native code')
    local compiled
    compiled=$(grep -c 'origin=Compiled' "$dir/default.log" || true)
    printf '  %-30s %5d + %5d events, %5.1f s wall; plugins on %s, %s compiled at start\n' \
        "$name" "$(head -1 "$dir/default.events" | cut -d' ' -f2)" \
        "$(wc -l < "$dir/chain/out.jsonl")" "$(echo "$end - $start" | bc)" "$how" "$compiled"
}
compare() { # NAME [EXPECT_COMPILED]
    local name=$1 expect=${2:-}
    local scenario
    for scenario in default.events chain/out.jsonl syslog/out.jsonl json/out.jsonl; do
        # default.events always has its count lines ("events.jsonl N"): it holds events
        # when one of those counts is not 0; the others hold only events.
        if [ "$scenario" = default.events ]; then
            awk '/^(events|alerts)\.jsonl [0-9]+$/ && $2 > 0 { found = 1 } END { exit !found }' \
                "$W/native/$scenario" || { echo "  no events natively: $scenario"; status=1; }
        else
            [ -s "$W/native/$scenario" ] || { echo "  no output natively: $scenario"; status=1; }
        fi
        if cmp -s "$W/native/$scenario" "$W/$name/$scenario"; then
            echo "  same output as native: $name $scenario"
        else
            echo "  DIFFERENT output: $name $scenario (diff $W/native/$scenario $W/$name/$scenario)"
            status=1
        fi
    done
    if [ "$expect" = precompiled ] && grep -q 'origin=Compiled' "$W/$name/default.log"; then
        echo "  $name compiled builtins at start although they are embedded precompiled"
        status=1
    fi
}

sed -e 's|^plugins = \["access", "clean", "by-level"\]|plugins = ["syslog", "clean"]|' \
    -e '/^routes = { alerts = \["main"\] }/d' "$W/chain.toml" > "$W/syslog.toml"
sed -e 's|^plugins = \["access", "clean", "by-level"\]|plugins = ["json", "errors"]|' \
    -e '/^routes = { alerts = \["main"\] }/d' "$W/chain.toml" > "$W/json.toml"
cat >> "$W/json.toml" <<'TOML'

[plugins.json]
builtin = "json"
[plugins.errors]
builtin = "field-filter"
[plugins.errors.config]
field = "fields.status"
op = "ge"
value = 400
action = "keep"
TOML

echo "native ($(uname -m)):"
run native "$NATIVE"

for target in "${TARGETS[@]}"; do
    triple=$(target_triple "$target")
    target_setup "$target"
    pre="$W/precompiled/$target"
    "$NATIVE" plugin compile --builtins --target "$(target_plugin_code "$target")" --out "$pre" >/dev/null
    (
        target_env "$target"
        features=compiler
        [ "$target" = aarch64 ] && features=
        RUNNEL_PRECOMPILED_DIR="$PWD/$pre" cargo build -q --profile "$PROFILE" -p runnel \
            --no-default-features --features "$features" --target "$triple"
    )
    bin="$PWD/target/$triple/$PROFILE/runnel"
    read -r -a runner <<< "$(target_runner "$target")"
    echo "$target ($triple, $(ls -l "$bin" | awk '{print $5}') bytes, under ${runner[0]}):"
    "${runner[@]}" "$bin" --version | sed 's/^/  /'
    if [ "$target" = riscv64gc ]; then
        run "$target" "${runner[@]}" "$bin"
        compare "$target" precompiled
        run "$target-v" "${runner[@]}" -cpu rv64,v=true "$bin"
        compare "$target-v"
        grep -q 'plugins run on Pulley' "$W/$target/default.log" ||
            { echo "  riscv64 without V did not pick Pulley"; status=1; }
    else
        run "$target" "${runner[@]}" "$bin"
        compare "$target" precompiled
    fi
done
exit $status
