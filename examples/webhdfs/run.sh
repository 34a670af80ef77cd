#!/usr/bin/env bash
# The WebHDFS example on one machine: builds the agent (scripts/build-release.sh), starts
# the WebHDFS protocol stand-in (tests/peers/webhdfs_server.py: a namenode and a datanode
# port over a local directory; NOT HDFS), ships the vendored access log through
# examples/webhdfs/runnel.toml, stops the agent (which closes its files) and shows what
# landed. Needs python3. Work files: target/examples/webhdfs.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build-release.sh >&2
WORK=$PWD/target/examples/webhdfs
rm -rf "$WORK" && mkdir -p "$WORK/logs"
coproc HDFS { exec python3 tests/peers/webhdfs_server.py --root "$WORK/hdfs" --user runnel; }
pids=($HDFS_PID)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
read -r PORTS <&"${HDFS[0]}"
NAMENODE=127.0.0.1:$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["namenode"])' "$PORTS")
sed -e "s|WORK|$WORK|g" -e "s|NAMENODE|$NAMENODE|" examples/webhdfs/runnel.toml > "$WORK/runnel.toml"
target/release/runnel run --config "$WORK/runnel.toml" 2>"$WORK/agent.log" &
AGENT=$!
pids+=($AGENT)
cp tests/data/apache_access/apache_logs "$WORK/logs/access.log"
TOTAL=$(wc -l < "$WORK/logs/access.log")
stored() { { find "$WORK/hdfs" -type f -name '*.gz*' -exec cat {} + | gzip -dc; } 2>/dev/null | wc -l || true; }
for _ in $(seq 120); do
    got=$(stored)
    [ "$got" -ge "$TOTAL" ] && break
    sleep 0.5
done
kill -TERM "$AGENT" && wait "$AGENT" || true
echo "HDFS (stand-in) holds $(stored) of $TOTAL lines in $(find "$WORK/hdfs" -type f | wc -l) files" \
     "over $(find "$WORK/hdfs" -mindepth 6 -type d | wc -l) hourly buckets; files still in use: $(find "$WORK/hdfs" -name '*.tmp' | wc -l)"
echo "the first buckets:"
find "$WORK/hdfs" -type f | sed "s|$WORK/hdfs||" | sort | head -n 4
[ "$(stored)" -ge "$TOTAL" ]
