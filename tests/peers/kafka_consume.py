#!/usr/bin/env python3
"""Reads every record of the given topics from the start with kafka-python (an
independent client), until no record has come for --idle seconds, and prints one JSON
line per record: topic, partition, offset, key and value (UTF-8 text).

    kafka_consume.py --bootstrap 127.0.0.1:9092 --idle 3 TOPIC...
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--idle", type=float, default=3.0)
    p.add_argument("topics", nargs="+")
    args = p.parse_args()
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        api_version_auto_timeout_ms=10000,
    )
    partitions = []
    for topic in args.topics:
        for partition in sorted(consumer.partitions_for_topic(topic) or []):
            partitions.append(TopicPartition(topic, partition))
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    last = time.monotonic()
    while time.monotonic() - last < args.idle:
        batches = consumer.poll(timeout_ms=500)
        for records in batches.values():
            for r in records:
                last = time.monotonic()
                print(json.dumps({
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "key": None if r.key is None else r.key.decode(),
                    "value": r.value.decode(),
                }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
