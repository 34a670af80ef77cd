//! The `kafka` sink: each event one record, in the topic its [`Template`] renders to
//! (`logs-{name}`), keyed by a field when asked (records with one key go to one
//! partition, in order), gzip-compressed record batches, `acks = all`. A batch is
//! delivered when every partition it touched acknowledged its records; a failure sends
//! the whole batch again (at-least-once: the partitions that had taken their part get
//! it twice).
//!
//! The client is rskafka: pure Rust (no librdkafka and its C build), enough for
//! producing — metadata, partition leaders, produce with compression and acks = all —
//! and small beside librdkafka; it has no producer-side batching of its own, which the
//! sink driver does.

use super::{Part, Payload, SendError, SinkConfig, SinkService};
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use crate::template::Template;
use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic, a template (`{name}`, `{fields.KEY}`, `{tags.KEY}`, `%Y` …).
    pub topic: String,
    /// A top-level field whose text is the record key; none: no key (round-robin).
    pub key_field: Option<String>,
    #[serde(default = "default_format")]
    pub format: Format,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Create a missing topic with this many partitions (none: a missing topic fails
    /// the batch until it exists).
    pub create_partitions: Option<u32>,
    /// How long one produce may take before it fails (and is retried).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Batches on their way at once (1–16). More than 1 keeps the broker busy while it
    /// acknowledges, but a retried batch can then land after a later one: the order
    /// within a key holds only with 1.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

fn default_in_flight() -> usize {
    1
}

#[derive(PartialEq, Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    None,
    #[default]
    Gzip,
}

fn default_format() -> Format {
    Format::Json
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

impl SinkConfig for KafkaSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        if self.brokers.is_empty() {
            problems.at("brokers", "needs at least one `host:port`");
        }
        for broker in &self.brokers {
            if broker
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                problems.at("brokers", format!("`{broker}` is not host:port"));
            }
        }
        match self.topic.parse::<Template>() {
            Err(e) => problems.at("topic", e.to_string()),
            Ok(_) if self.topic.trim().is_empty() => problems.at("topic", "must not be empty"),
            Ok(_) => {}
        }
        if self.create_partitions == Some(0) {
            problems.at("create_partitions", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            problems.at("request_timeout_ms", "must be at least 1");
        }
        if !(1..=16).contains(&self.in_flight) {
            problems.at("in_flight", "must be 1 to 16");
        }
    }

    fn build(
        &self,
        name: &str,
        _data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn SinkService>> {
        Ok(Arc::new(KafkaService {
            name: name.to_owned(),
            brokers: self.brokers.clone(),
            topic: self.topic.parse()?,
            key_field: self.key_field.clone(),
            format: self.format,
            compression: self.compression,
            create_partitions: self.create_partitions,
            timeout: Duration::from_millis(self.request_timeout_ms),
            in_flight: self.in_flight.clamp(1, 16),
            state: tokio::sync::Mutex::new(None),
            turn: std::sync::atomic::AtomicUsize::new(0),
        }))
    }
}

struct KafkaService {
    name: String,
    brokers: Vec<String>,
    topic: Template,
    key_field: Option<String>,
    format: Format,
    compression: KafkaCompression,
    create_partitions: Option<u32>,
    timeout: Duration,
    in_flight: usize,
    /// The client and its partition clients, made at the first send and after a failure;
    /// held only while a send looks its partitions up, not while it produces.
    state: tokio::sync::Mutex<Option<Connected>>,
    turn: std::sync::atomic::AtomicUsize,
}

struct Connected {
    client: Client,
    /// Per topic: one client per partition, in partition order.
    topics: HashMap<String, Vec<Arc<PartitionClient>>>,
}

/// A record as the payload carries it: `key len u32 (u32::MAX: none) ‖ key ‖ value len
/// u32 ‖ value`, records one after another, one part per topic.
fn put_record(out: &mut Vec<u8>, key: Option<&[u8]>, value: &[u8]) {
    match key {
        Some(key) => {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// The records of one part (written by [`put_record`]).
fn records(mut bytes: &[u8]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let mut out = Vec::new();
    let take = |n: usize, bytes: &mut &[u8]| {
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        head.to_vec()
    };
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes(take(4, &mut bytes).try_into().expect("4 bytes"));
        let key = (len != u32::MAX).then(|| take(len as usize, &mut bytes));
        let len = u32::from_le_bytes(take(4, &mut bytes).try_into().expect("4 bytes")) as usize;
        out.push((key, take(len, &mut bytes)));
    }
    out
}

impl SinkService for KafkaService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        self.encode_parts(events, out);
    }

    fn encode_parts(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<Part> {
        let now = crate::event::now_ns();
        let mut groups: IndexMap<String, Vec<&Event>> = IndexMap::new();
        let mut topic = String::new();
        for event in events {
            topic.clear();
            self.topic.render(event, now, &mut topic);
            groups.entry(topic.clone()).or_default().push(event);
        }
        let mut value = Vec::new();
        let mut key = String::new();
        groups
            .into_iter()
            .map(|(topic, group)| {
                for event in &group {
                    value.clear();
                    self.format.encode(event, &mut value);
                    if value.last() == Some(&b'\n') {
                        value.pop();
                    }
                    key.clear();
                    let keyed = self
                        .key_field
                        .as_deref()
                        .is_some_and(|field| event.fields.scalar_text(field, &mut key));
                    put_record(out, keyed.then_some(key.as_bytes()), &value);
                }
                Part {
                    key: topic,
                    end: out.len(),
                    events: group.len(),
                }
            })
            .collect()
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            let result = tokio::time::timeout(self.timeout, self.produce(&payload))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::retry(format!(
                        "no acknowledgement within {:?}",
                        self.timeout
                    )))
                });
            if result.is_err() {
                // Leaders may have moved or the broker restarted: look them up again.
                *self.state.lock().await = None;
            }
            result
        })
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

impl KafkaService {
    /// The partition clients of each part's topic, in the parts' order (connecting
    /// first when there is no client).
    async fn clients_for(
        &self,
        payload: &Payload,
    ) -> Result<Vec<Vec<Arc<PartitionClient>>>, SendError> {
        let retry = |what: &str, e: rskafka::client::error::Error| {
            SendError::retry(format!("kafka {what}: {e}"))
        };
        let mut state = self.state.lock().await;
        if state.is_none() {
            let client = ClientBuilder::new(self.brokers.clone())
                .client_id(format!("runnel-{}", self.name))
                .backoff_config(BackoffConfig {
                    deadline: Some(self.timeout),
                    ..BackoffConfig::default()
                })
                .build()
                .await
                .map_err(|e| retry("connect", e))?;
            *state = Some(Connected {
                client,
                topics: HashMap::new(),
            });
        }
        let connected = state.as_mut().expect("connected above");
        let mut clients = Vec::with_capacity(payload.parts.len());
        for part in &payload.parts {
            clients.push(self.partitions(connected, &part.key).await?);
        }
        Ok(clients)
    }

    async fn produce(&self, payload: &Payload) -> Result<(), SendError> {
        let retry = |what: &str, e: rskafka::client::error::Error| {
            SendError::retry(format!("kafka {what}: {e}"))
        };
        let clients = self.clients_for(payload).await?;
        let compression = match self.compression {
            KafkaCompression::None => Compression::NoCompression,
            KafkaCompression::Gzip => Compression::Gzip,
        };
        let mut start = 0;
        let mut sends = Vec::new();
        for (part, partitions) in payload.parts.iter().zip(clients) {
            let mut per_partition: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
            let batch_turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for (key, value) in records(&payload.bytes[start..part.end]) {
                let partition = match &key {
                    Some(key) => {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        key.hash(&mut h);
                        (h.finish() % partitions.len() as u64) as usize
                    }
                    // No key: the batch's records to one partition, the next batch's to
                    // the next.
                    None => batch_turn % partitions.len(),
                };
                per_partition.entry(partition).or_default().push(Record {
                    key,
                    value: Some(value),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                });
            }
            start = part.end;
            for (partition, records) in per_partition {
                let client = partitions[partition].clone();
                let topic = part.key.clone();
                sends.push(async move {
                    client
                        .produce(records, compression)
                        .await
                        .map_err(|e| retry(&format!("produce to {topic}/{partition}"), e))
                });
            }
        }
        for result in futures_util::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    /// The partition clients of `topic` (creating the topic when it is missing and
    /// `create_partitions` is set).
    async fn partitions(
        &self,
        connected: &mut Connected,
        topic: &str,
    ) -> Result<Vec<Arc<PartitionClient>>, SendError> {
        if let Some(clients) = connected.topics.get(topic) {
            return Ok(clients.clone());
        }
        let retry = |what: &str, e: rskafka::client::error::Error| {
            SendError::retry(format!("kafka {what}: {e}"))
        };
        let listed = connected
            .client
            .list_topics()
            .await
            .map_err(|e| retry("metadata", e))?;
        let partitions: Vec<i32> = match listed.iter().find(|t| t.name == topic) {
            Some(t) => t.partitions.iter().copied().collect(),
            None => match self.create_partitions {
                Some(n) => {
                    connected
                        .client
                        .controller_client()
                        .map_err(|e| retry("controller", e))?
                        .create_topic(topic, n as i32, 1, self.timeout.as_millis() as i32)
                        .await
                        .map_err(|e| retry(&format!("create topic {topic}"), e))?;
                    (0..n as i32).collect()
                }
                None => {
                    return Err(SendError::retry(format!(
                        "kafka: topic `{topic}` does not exist (create it, or set create_partitions)"
                    )));
                }
            },
        };
        if partitions.is_empty() {
            return Err(SendError::retry(format!(
                "kafka: topic `{topic}` has no partitions"
            )));
        }
        let mut clients = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let client = connected
                .client
                .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| retry(&format!("partition {topic}/{partition}"), e))?;
            clients.push(Arc::new(client));
        }
        connected.topics.insert(topic.to_owned(), clients.clone());
        Ok(clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_payload_with_and_without_keys() {
        let mut out = Vec::new();
        put_record(&mut out, Some(b"k1"), b"{\"a\":1}");
        put_record(&mut out, None, b"");
        put_record(&mut out, Some(b""), b"v");
        assert_eq!(
            records(&out),
            vec![
                (Some(b"k1".to_vec()), b"{\"a\":1}".to_vec()),
                (None, Vec::new()),
                (Some(Vec::new()), b"v".to_vec()),
            ]
        );
    }

    #[test]
    fn events_are_grouped_by_their_topic_with_their_keys() {
        let config = KafkaSinkConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "logs-{name}".into(),
            key_field: Some("host".into()),
            format: Format::Raw,
            compression: KafkaCompression::Gzip,
            create_partitions: None,
            request_timeout_ms: 1000,
            in_flight: 1,
        };
        let service = config.build("k", std::path::Path::new(".")).unwrap();
        let mut events = Vec::new();
        for (name, host, body) in [("web", "a", "1"), ("db", "b", "2"), ("web", "c", "3")] {
            let mut e = Event::from_body(name.into(), body.as_bytes().to_vec());
            e.fields
                .insert("host", crate::event::Value::String(host.into()));
            events.push(e);
        }
        events.push(Event::from_body("web".into(), b"4".to_vec()));
        let mut out = Vec::new();
        let parts = service.encode_parts(&events, &mut out);
        let topics: Vec<(&str, usize)> = parts.iter().map(|p| (p.key.as_str(), p.events)).collect();
        assert_eq!(topics, [("logs-web", 3), ("logs-db", 1)]);
        let web = records(&out[..parts[0].end]);
        assert_eq!(
            web,
            vec![
                (Some(b"a".to_vec()), b"1".to_vec()),
                (Some(b"c".to_vec()), b"3".to_vec()),
                (None, b"4".to_vec()),
            ]
        );
    }
}
