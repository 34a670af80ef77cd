//! Produces the records of a file (one JSON event per line, keyed by its `fields.host`)
//! to a topic with one client, and prints the CPU it took (all threads, getrusage) and
//! the wall time. Both clients: acks = all, gzip (level 6, each one's default), records
//! of one key to one partition, batches of about 1,024 records.
//! Usage: kafka-clients rskafka|rdkafka BROKER TOPIC RECORDS_FILE

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn records(path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    std::fs::read_to_string(path)
        .expect("records file")
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
            let key = event["fields"]["host"].as_str().unwrap_or("").as_bytes().to_vec();
            (key, line.as_bytes().to_vec())
        })
        .collect()
}

const PARTITIONS: i32 = 3;
const BATCH: usize = 1024;

async fn with_rskafka(broker: &str, topic: &str, records: Vec<(Vec<u8>, Vec<u8>)>) {
    use rskafka::client::ClientBuilder;
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;
    let client = ClientBuilder::new(vec![broker.to_owned()]).build().await.expect("connect");
    client
        .controller_client()
        .expect("controller")
        .create_topic(topic, PARTITIONS, 1, 5000)
        .await
        .expect("create topic");
    let mut partitions = Vec::new();
    for p in 0..PARTITIONS {
        partitions.push(
            client
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .expect("partition client"),
        );
    }
    for chunk in records.chunks(BATCH) {
        let mut per_partition: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
        for (key, value) in chunk {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            per_partition
                .entry((h.finish() % PARTITIONS as u64) as usize)
                .or_default()
                .push(Record {
                    key: Some(key.clone()),
                    value: Some(value.clone()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                });
        }
        let sends = per_partition
            .into_iter()
            .map(|(p, records)| partitions[p].produce(records, Compression::Gzip));
        for result in futures::future::join_all(sends).await {
            result.expect("produce");
        }
    }
}

fn with_rdkafka(broker: &str, topic: &str, records: Vec<(Vec<u8>, Vec<u8>)>) {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker);
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        admin
            .create_topics(
                &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topic");
    });
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .clone()
        .set("acks", "all")
        .set("compression.type", "gzip")
        .set("linger.ms", "5")
        .set("batch.num.messages", &BATCH.to_string())
        .set("queue.buffering.max.messages", "100000")
        .create()
        .expect("producer");
    for (key, value) in &records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(&key[..]).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    // The queue is full: wait for deliveries.
                    record = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(std::time::Duration::from_secs(120)).expect("flush");
    assert_eq!(producer.in_flight_count(), 0, "every record delivered");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, client, broker, topic, file] = &args[..] else {
        panic!("usage: kafka-clients rskafka|rdkafka BROKER TOPIC RECORDS_FILE");
    };
    let records = records(file);
    let count = records.len();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    match client.as_str() {
        "rskafka" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(with_rskafka(broker, topic, records)),
        "rdkafka" => with_rdkafka(broker, topic, records),
        other => panic!("unknown client {other}"),
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "{client}: {count} records, {:.0} records/s, CPU {:.2} µs/record",
        count as f64 / wall,
        cpu / count as f64 * 1e6
    );
}
