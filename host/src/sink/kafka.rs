//! The `kafka` sink: each event one record, in the topic its [`Template`] renders to
//! (`logs-{name}`), keyed by a field when asked (records with one key go to one
//! partition, in order), gzip-compressed record batches, `acks = all`. A batch is
//! delivered when every partition it touched acknowledged its records; a failure sends
//! the whole batch again (at-least-once: the partitions that had taken their part get
//! it twice).
//!
//! **Topics from event data.** A rendered topic is made a valid Kafka name: every
//! character outside `[a-zA-Z0-9._-]` becomes `_`, a name over 249 characters is cut
//! and hashed ([`crate::template`]), and `.`/`..` become `_`. The config refuses other
//! characters in the topic's own text. A topic that does not exist, when the topic is
//! rendered from events and `create_partitions` is not set, is refused for those
//! events (dead letter or counted; the others are delivered): retrying could never
//! help and would hold the channel. The sink keeps the partition clients of at most
//! `max_topics` topics (the least recently used are dropped and looked up again when
//! needed), and creates at most `max_topics` topics while it runs; an event for one
//! more is refused and counted, so event data cannot create topics without bound.
//!
//! The client is rskafka: pure Rust (no librdkafka and its C build), enough for
//! producing — metadata, partition leaders, produce with compression and acks = all —
//! and small beside librdkafka; it has no producer-side batching of its own, which the
//! sink driver does.

use super::{Part, Payload, SendError, SinkConfig, SinkService, group_by_key};
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
use std::collections::BTreeMap;
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
    /// Topics whose partition clients are kept (least recently used dropped), and the
    /// most topics the sink creates while it runs (`create_partitions`).
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,
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

fn default_max_topics() -> usize {
    256
}

/// Kafka's longest topic name.
const MAX_TOPIC_CHARS: usize = 249;

fn valid_in_topic(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Makes `out[start..]` a valid topic name: characters outside `[a-zA-Z0-9._-]` become
/// `_`; empty, `.` or `..` becomes `_`. (A rendered text is at most
/// [`crate::template::MAX_SEGMENT_BYTES`] long, under Kafka's 249.)
fn make_valid_topic(out: &mut String, start: usize) {
    if out[start..].chars().any(|c| !valid_in_topic(c)) {
        let valid: String = out[start..]
            .chars()
            .map(|c| if valid_in_topic(c) { c } else { '_' })
            .collect();
        out.truncate(start);
        out.push_str(&valid);
    }
    if matches!(&out[start..], "" | "." | "..") {
        out.truncate(start);
        out.push('_');
    }
    debug_assert!(out.len() - start <= MAX_TOPIC_CHARS);
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
            Ok(template) => {
                if let Some(c) = template
                    .literals()
                    .flat_map(str::chars)
                    .find(|c| !valid_in_topic(*c))
                {
                    problems.at(
                        "topic",
                        format!("`{c}` cannot be in a Kafka topic (use a-z A-Z 0-9 . _ -)"),
                    );
                } else if template.is_static()
                    && (self.topic.len() > MAX_TOPIC_CHARS
                        || matches!(self.topic.as_str(), "." | ".."))
                {
                    problems.at(
                        "topic",
                        "is not a valid Kafka topic (at most 249 characters, not `.` or `..`)",
                    );
                }
            }
        }
        if self.max_topics == 0 {
            problems.at("max_topics", "must be at least 1");
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
            max_topics: self.max_topics.max(1),
            created: std::sync::atomic::AtomicUsize::new(0),
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
    max_topics: usize,
    /// Topics created since start.
    created: std::sync::atomic::AtomicUsize,
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
    topics: Recent<Vec<Arc<PartitionClient>>>,
}

/// Values per topic for at most `max` topics: the least recently used is dropped first.
struct Recent<T> {
    map: IndexMap<String, T>,
    max: usize,
}

impl<T: Clone> Recent<T> {
    fn new(max: usize) -> Self {
        Self {
            map: IndexMap::new(),
            max: max.max(1),
        }
    }

    /// The value of `topic`, now the most recently used.
    fn used(&mut self, topic: &str) -> Option<T> {
        let i = self.map.get_index_of(topic)?;
        let last = self.map.len() - 1;
        self.map.move_index(i, last);
        Some(self.map[last].clone())
    }

    /// Keeps `value` for `topic`, dropping the least recently used beyond `max`.
    fn keep(&mut self, topic: &str, value: T) {
        self.map.shift_remove(topic);
        while self.map.len() >= self.max {
            self.map.shift_remove_index(0);
        }
        self.map.insert(topic.to_owned(), value);
    }
}

/// What a topic lookup found.
enum Topic {
    Clients(Vec<Arc<PartitionClient>>),
    /// It can never take these events: why.
    Refused(String),
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
        let groups = group_by_key(events, |event, topic| self.render_topic(event, now, topic));
        let mut value = Vec::new();
        let mut key = String::new();
        groups
            .into_iter()
            .map(|(topic, group)| {
                for (_, event) in &group {
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
                    positions: group.iter().map(|(position, _)| *position).collect(),
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
            if matches!(result, Err(SendError::Retry { .. })) {
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
    /// The topic of `event`, a valid Kafka name.
    fn render_topic(&self, event: &Event, now: i64, out: &mut String) {
        let start = out.len();
        self.topic.render(event, now, out);
        make_valid_topic(out, start);
    }

    /// The partition clients of each part's topic, in the parts' order (connecting
    /// first when there is no client).
    async fn clients_for(&self, payload: &Payload) -> Result<Vec<Topic>, SendError> {
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
                topics: Recent::new(self.max_topics),
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
        let mut refused = Vec::new();
        let mut first_refusal = String::new();
        for (i, (part, topic)) in payload.parts.iter().zip(clients).enumerate() {
            let partitions = match topic {
                Topic::Clients(partitions) => partitions,
                Topic::Refused(why) => {
                    if refused.is_empty() {
                        first_refusal = why;
                    }
                    refused.push(i);
                    start = part.end;
                    continue;
                }
            };
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
        if refused.is_empty() {
            return Ok(());
        }
        let message = match refused.len() {
            1 => first_refusal,
            n => format!("{n} topics refused, the first: {first_refusal}"),
        };
        Err(SendError::RejectParts {
            parts: refused,
            message,
        })
    }

    /// The partition clients of `topic` (creating the topic when it is missing and
    /// `create_partitions` is set); refused when it is missing for good (rendered from
    /// events, not to be created, or one more than the sink may create).
    async fn partitions(&self, connected: &mut Connected, topic: &str) -> Result<Topic, SendError> {
        if let Some(clients) = connected.topics.used(topic) {
            return Ok(Topic::Clients(clients));
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
                Some(_)
                    if self.created.load(std::sync::atomic::Ordering::Relaxed)
                        >= self.max_topics =>
                {
                    return Ok(Topic::Refused(format!(
                        "kafka: topic `{topic}` does not exist, and this sink created max_topics = {} topics already",
                        self.max_topics
                    )));
                }
                Some(n) => {
                    self.created
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    connected
                        .client
                        .controller_client()
                        .map_err(|e| retry("controller", e))?
                        .create_topic(topic, n as i32, 1, self.timeout.as_millis() as i32)
                        .await
                        .map_err(|e| retry(&format!("create topic {topic}"), e))?;
                    (0..n as i32).collect()
                }
                None if !self.topic.is_static() => {
                    return Ok(Topic::Refused(format!(
                        "kafka: topic `{topic}` (from the events) does not exist (create it, or set create_partitions)"
                    )));
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
        connected.topics.keep(topic, clients.clone());
        Ok(Topic::Clients(clients))
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
            max_topics: 256,
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

    #[test]
    fn topics_from_events_are_valid_kafka_names() {
        let config: KafkaSinkConfig = toml::from_str(
            r#"
brokers = ["127.0.0.1:9092"]
topic = "logs-{name}"
"#,
        )
        .unwrap();
        let service = KafkaService {
            name: "k".into(),
            brokers: config.brokers.clone(),
            topic: config.topic.parse().unwrap(),
            max_topics: 2,
            created: std::sync::atomic::AtomicUsize::new(0),
            key_field: None,
            format: Format::Raw,
            compression: KafkaCompression::Gzip,
            create_partitions: None,
            timeout: Duration::from_secs(1),
            in_flight: 1,
            state: tokio::sync::Mutex::new(None),
            turn: std::sync::atomic::AtomicUsize::new(0),
        };
        let topic = |name: &str| {
            let mut out = String::new();
            service.render_topic(&Event::from_body(name.into(), Vec::new()), 0, &mut out);
            out
        };
        assert_eq!(topic("web"), "logs-web");
        assert_eq!(topic("a b/c:ü~"), "logs-a_b_c___");
        assert_eq!(topic(".."), "logs-_");
        let long = topic(&"x".repeat(1000));
        assert!(long.len() <= MAX_TOPIC_CHARS, "{long}");
        assert!(long.chars().all(valid_in_topic), "{long}");
        assert_ne!(
            long,
            topic(&"x".repeat(999)),
            "distinct long names stay distinct"
        );
        // The topic's own text is checked.
        let mut bad = config.clone();
        bad.topic = "logs/{name}".into();
        let mut problems = Problems::default();
        bad.validate(&mut problems);
        assert!(!problems.is_empty());
        let mut problems = Problems::default();
        config.validate(&mut problems);
        assert!(problems.is_empty());
    }

    #[test]
    fn the_clients_of_at_most_max_topics_are_kept_least_recently_used_dropped() {
        let mut recent = Recent::new(2);
        recent.keep("a", 1);
        recent.keep("b", 2);
        assert_eq!(recent.used("a"), Some(1));
        recent.keep("c", 3); // drops `b`, the least recently used
        assert_eq!(recent.map.len(), 2);
        assert_eq!(recent.used("b"), None);
        assert_eq!(recent.used("a"), Some(1));
        assert_eq!(recent.used("c"), Some(3));
        for n in 0..1000 {
            recent.keep(&format!("t{n}"), n);
        }
        assert_eq!(recent.map.len(), 2);
    }
}
