//! The sink driver, the same for every sink type: take a batch in a transaction, encode
//! it once, send it (retrying with backoff what can succeed later, up to the service's
//! number of batches in flight), and finish transactions strictly in the order they
//! were taken: commit what was delivered; put what was refused for good into the
//! dead-letter channel (then commit), or drop and count it.

use super::{Backoff, Payload, SendError, SinkService};
use crate::channel::{Channel, Take, TakeLimits};
use crate::config::SinkSpec;
use crate::internal_events::{
    BatchDelivered, BatchRejected, EventsLost, SinkCounters, SinkWriteFailed,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a batch's sending ended.
enum Outcome {
    Delivered {
        bytes: usize,
    },
    Rejected(String),
    /// The agent stopped while the batch was still being retried.
    Aborted,
}

/// A running sink.
pub struct Sink {
    name: String,
    channel: Channel,
    dead_letter: Option<Channel>,
    limits: TakeLimits,
    batch_timeout: Duration,
    retry: (Duration, Duration),
    service: Arc<dyn SinkService>,
    counters: Arc<SinkCounters>,
}

impl Sink {
    pub fn new(
        spec: &SinkSpec,
        channel: Channel,
        dead_letter: Option<Channel>,
        service: Arc<dyn SinkService>,
    ) -> Self {
        Self {
            name: spec.name.clone(),
            channel,
            dead_letter,
            limits: TakeLimits {
                events: spec.batch.size,
                bytes: spec.batch.bytes,
            },
            batch_timeout: spec.batch.timeout,
            retry: spec.retry,
            service,
            counters: Arc::new(SinkCounters::new(&spec.name)),
        }
    }

    /// Delivers until the channel is closed and drained, or until `stop` (then the
    /// batches in flight are still delivered; the channel keeps the rest). `abort`
    /// stops retrying: batches still in flight are rolled back into the channel.
    pub async fn run(self, stop: CancellationToken, abort: CancellationToken) {
        let max_in_flight = self.service.in_flight().max(1);
        let mut in_flight = FuturesOrdered::new();
        let mut drained = false;
        loop {
            if drained && in_flight.is_empty() {
                return;
            }
            tokio::select! {
                biased;
                _ = abort.cancelled() => return, // dropping the takes rolls them back
                _ = stop.cancelled(), if !drained => drained = true,
                Some((take, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    let Some(take) = take else {
                        continue; // its encoding failed; rolled back, taken again
                    };
                    if !self.finish(take, outcome).await {
                        return;
                    }
                }
                take = self.channel.take(self.limits, self.batch_timeout),
                    if !drained && in_flight.len() < max_in_flight =>
                {
                    if take.is_empty() {
                        drained = true;
                        continue;
                    }
                    in_flight.push_back(deliver(
                        self.service.clone(),
                        take,
                        self.retry,
                        self.name.clone(),
                        self.counters.clone(),
                        abort.clone(),
                    ));
                }
            }
        }
    }

    /// Ends a batch's transaction; false when the sink must stop (aborted).
    async fn finish(&self, take: Take, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Delivered { bytes } => {
                BatchDelivered {
                    events: take.len() as u64,
                    bytes: bytes as u64,
                }
                .emit(&self.counters);
                take.commit();
                true
            }
            Outcome::Rejected(error) => {
                BatchRejected {
                    sink: &self.name,
                    events: take.len() as u64,
                    error: &error,
                    dead_letter: self.dead_letter.as_ref().map(Channel::name),
                }
                .emit(&self.counters);
                match &self.dead_letter {
                    Some(dead_letter) => {
                        // Into the dead-letter channel first, then off this one: a
                        // crash in between repeats the batch, never loses it.
                        let events = take.events().to_vec();
                        match dead_letter.put(events).await {
                            Ok(()) => take.commit(),
                            Err(e) => {
                                EventsLost {
                                    count: e.not_put as u64,
                                    at: &self.name,
                                    reason: &e,
                                }
                                .emit();
                                take.commit();
                            }
                        }
                    }
                    None => take.commit(),
                }
                true
            }
            Outcome::Aborted => {
                take.rollback();
                false
            }
        }
    }
}

/// Encodes one batch (on the blocking pool: compressing a large batch takes
/// milliseconds, and batches in flight are then encoded in parallel), then sends it
/// until it is delivered, refused for good, or the agent stops. No take comes back when
/// encoding panicked (a bug): the take was rolled back as it unwound.
async fn deliver(
    service: Arc<dyn SinkService>,
    take: Take,
    retry: (Duration, Duration),
    sink: String,
    counters: Arc<SinkCounters>,
    abort: CancellationToken,
) -> (Option<Take>, Outcome) {
    let encoder = service.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        let parts = encoder.encode_parts(take.events(), &mut bytes);
        let payload = Payload {
            bytes: bytes.into(),
            events: take.len(),
            parts,
        };
        (take, Arc::new(payload))
    })
    .await;
    let (take, payload) = match encoded {
        Ok(encoded) => encoded,
        Err(e) => {
            tracing::error!(sink = %sink, "encoding a batch failed (a bug in the agent): {e}");
            return (None, Outcome::Aborted);
        }
    };
    let (take, outcome) = send(service, payload, take, retry, &sink, &counters, abort).await;
    (Some(take), outcome)
}

/// Sends one encoded batch until it is delivered, refused for good, or the agent stops.
async fn send(
    service: Arc<dyn SinkService>,
    payload: Arc<Payload>,
    take: Take,
    retry: (Duration, Duration),
    sink: &str,
    counters: &SinkCounters,
    abort: CancellationToken,
) -> (Take, Outcome) {
    let mut backoff = Backoff::new(retry.0, retry.1);
    let mut attempt = 0u32;
    loop {
        let sent = tokio::select! {
            sent = service.clone().send(payload.clone()) => sent,
            _ = abort.cancelled() => return (take, Outcome::Aborted),
        };
        let (message, after) = match sent {
            Ok(()) => {
                return (
                    take,
                    Outcome::Delivered {
                        bytes: payload.bytes.len(),
                    },
                );
            }
            Err(SendError::Reject { message }) => return (take, Outcome::Rejected(message)),
            Err(SendError::Retry { message, after }) => (message, after),
        };
        attempt += 1;
        let delay = match after {
            // The destination said when; never wait longer than the backoff's cap.
            Some(after) => after.min(retry.1),
            None => backoff.next_delay(),
        };
        SinkWriteFailed {
            sink,
            error: &message,
            attempt,
            retry_in: delay,
        }
        .emit(counters);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = abort.cancelled() => return (take, Outcome::Aborted),
        }
    }
}
