//! The `mqtt` source: subscribes to topic filters on an MQTT broker (3.1.1 or 5, QoS 0
//! or 1, TLS, user and password); each message is an event, its payload the body and
//! its topic a tag.
//!
//! - **Nothing acknowledged early.** QoS 1 deliveries are acknowledged by hand: each is
//!   noted with the number of the batch it went into, and its PUBACK is sent only when
//!   that batch is in the source's channels (durably, for a file channel). A delivery
//!   not acknowledged when the agent dies is sent again by the broker when it comes
//!   back (at least once: the copies that reached the channel before the crash arrive
//!   twice).
//! - **A persistent session** by default (`clean_session = false`, a stable client id):
//!   the broker keeps the subscription and queues QoS 1 messages while the agent is
//!   away. When a broker reports it has no session (new, or expired), the source
//!   subscribes again and forgets acknowledgements due on the old session.
//! - **Metrics** (the source's line of the summary): `acked` (PUBACKs sent),
//!   `redelivered` (messages the broker sent again, flagged DUP), `connects`.
//! - **Losing the broker**: the error is reported and the connection tried again,
//!   waiting 1 s, doubling up to 30 s.

mod session;
mod settings;

pub use settings::MqttConfig;

use super::intern::Interner;
use super::{Acked, Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::event::Event;
use crate::metrics::{Counter, Registry};
use futures_util::future::BoxFuture;
use session::{AckToken, Incoming, Message, Session};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a stopping source keeps its connection for the acknowledgements of its
/// last batches.
const ACK_WAIT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

impl SourceConfig for MqttConfig {
    fn validate(&self, problems: &mut Problems) {
        MqttConfig::validate(self, problems);
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let settings = match config.resolve(&cx.name) {
                Ok(settings) => settings,
                Err((path, message)) => {
                    // Validated at load; a file may have changed since.
                    tracing::error!(source = %cx.name, "mqtt: {}: {message}", path.join("."));
                    return;
                }
            };
            let mut source = MqttSource {
                session: Session::new(&settings),
                topics: config.topics.clone(),
                qos: config.qos,
                topic_tag: Arc::from(config.topic_tag.as_str()),
                unacked: VecDeque::new(),
                due: VecDeque::new(),
                counters: Counters::new(&cx.name),
                strings: Interner::default(),
                name: cx.name.clone(),
            };
            tracing::info!(
                source = %cx.name,
                "mqtt: connecting to {}:{} as {:?}",
                settings.host,
                settings.port,
                settings.client_id
            );
            source.run(cx).await;
        })
    }
}

/// The source's own metrics.
struct Counters {
    acked: Counter,
    redelivered: Counter,
    connects: Counter,
}

impl Counters {
    fn new(source: &str) -> Self {
        let registry = Registry::global();
        let component = format!("source.{source}");
        Self {
            acked: registry.counter(&component, "acked"),
            redelivered: registry.counter(&component, "redelivered"),
            connects: registry.counter(&component, "connects"),
        }
    }
}

/// A QoS 1 delivery in the batch numbered `seq`, not yet acknowledged to the broker.
struct Unacked {
    seq: u64,
    token: AckToken,
}

struct MqttSource {
    session: Session,
    topics: Vec<String>,
    qos: u8,
    topic_tag: Arc<str>,
    /// Deliveries in batches not yet in the channels, in order.
    unacked: VecDeque<Unacked>,
    /// Deliveries safe in the channels, whose acknowledgement waits for room in the
    /// client's request queue.
    due: VecDeque<AckToken>,
    counters: Counters,
    /// Topics, shared by the events of each.
    strings: Interner,
    name: Arc<str>,
}

impl MqttSource {
    async fn run(&mut self, mut cx: SourceContext) {
        let mut acks = cx.batcher.acknowledged_batches();
        let mut retry = FIRST_RETRY;
        loop {
            tokio::select! {
                biased;
                _ = cx.shutdown.cancelled() => break,
                Some(acked) = acks.recv() => self.acked(acked),
                _ = cx.batcher.due() => cx.batcher.flush().await,
                incoming = self.session.poll() => match incoming {
                    Ok(incoming) => {
                        if matches!(incoming, Incoming::Connected { .. }) {
                            retry = FIRST_RETRY;
                        }
                        self.take(incoming, &mut cx.batcher).await;
                    }
                    Err(error) => {
                        cx.batcher.error(&format_args!("mqtt: {error}"), Some(retry));
                        tokio::select! {
                            _ = cx.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                },
            }
            self.send_due_acks();
        }
        self.stop(&mut cx.batcher, &mut acks).await;
    }

    async fn take(&mut self, incoming: Incoming, batcher: &mut Batcher) {
        match incoming {
            Incoming::Connected { session_present } => {
                self.counters.connects.add(1);
                if !session_present {
                    // The broker forgot the session: what it delivered on the old one
                    // is not its to acknowledge any more (a packet id may be reused).
                    self.unacked.clear();
                    self.due.clear();
                }
                tracing::info!(
                    source = %self.name,
                    session_present,
                    "mqtt: connected; subscribing to {:?}",
                    self.topics
                );
                // A kept session keeps its subscriptions; subscribing again is harmless
                // and picks up filters added to the config since.
                if let Err(e) = self.session.subscribe(&self.topics, self.qos) {
                    batcher.error(&format_args!("mqtt: subscribe: {e}"), None);
                }
            }
            Incoming::Subscribed { refused } => {
                for i in refused {
                    let filter = self.topics.get(i).map_or("?", String::as_str);
                    batcher.error(
                        &format_args!("mqtt: the broker refused the subscription to {filter:?}"),
                        None,
                    );
                }
            }
            Incoming::Message(message) => self.push(message, batcher).await,
            Incoming::Other => {}
        }
    }

    async fn push(&mut self, message: Message, batcher: &mut Batcher) {
        let Message {
            topic,
            payload,
            redelivered,
            ack,
        } = message;
        if redelivered {
            self.counters.redelivered.add(1);
        }
        let mut body = payload.to_vec();
        if body.len() > batcher.max_line_bytes() {
            body.truncate(batcher.max_line_bytes());
            batcher.truncated();
        }
        let mut event = Event::from_body(batcher.event_name(), body);
        let topic = self.strings.get(&String::from_utf8_lossy(&topic));
        event.tags.set(self.topic_tag.clone(), topic);
        if let Some(token) = ack {
            let seq = batcher.batch_seq();
            self.unacked.push_back(Unacked { seq, token });
        }
        batcher.push_event(event).await;
    }

    /// A batch is in the channels: its deliveries (and those of earlier batches) may be
    /// acknowledged.
    fn acked(&mut self, acked: Acked) {
        while self.unacked.front().is_some_and(|u| u.seq <= acked.seq) {
            if let Some(u) = self.unacked.pop_front() {
                self.due.push_back(u.token);
            }
        }
    }

    /// Queues what acknowledgements the client's request queue has room for.
    fn send_due_acks(&mut self) {
        while let Some(token) = self.due.front() {
            if self.session.ack(token).is_err() {
                break; // polling the connection makes room
            }
            self.due.pop_front();
            self.counters.acked.add(1);
        }
    }

    /// Flushes the last batch, waits (a little) for it to be in the channels while the
    /// connection takes its acknowledgements to the broker, then disconnects.
    async fn stop(&mut self, batcher: &mut Batcher, acks: &mut mpsc::UnboundedReceiver<Acked>) {
        batcher.flush().await;
        let deadline = Instant::now() + ACK_WAIT;
        while !(self.unacked.is_empty() && self.due.is_empty()) {
            tokio::select! {
                Some(acked) = acks.recv() => self.acked(acked),
                // A message arriving now is not taken: the broker sends it again next
                // time (QoS 1). A lost connection takes no acknowledgements any more.
                polled = self.session.poll() => if polled.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
            self.send_due_acks();
        }
        self.session.disconnect();
        // Let the disconnect (and the last acknowledgements) go out.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.session.poll().await.is_ok() {}
        })
        .await;
        if !self.unacked.is_empty() {
            tracing::info!(
                source = %self.name,
                "mqtt: {} QoS 1 messages not acknowledged at stop: the broker sends them again",
                self.unacked.len()
            );
        }
    }
}
