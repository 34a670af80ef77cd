//! The sink driver, the same for every sink type: take a batch in a transaction, encode
//! it once per member it goes to, send it (retrying what can succeed later, on another
//! member of a group at once, else after the backoff; up to the service's number of
//! batches in flight), and finish transactions strictly in the order they were taken:
//! commit what was delivered; put what was refused for good into the dead-letter
//! channel (then commit), or drop and count it.

use super::group::{GroupMode, Members, Selector};
use super::{HOUSEKEEPING_PERIOD, Payload, SendError, SinkService};
use crate::channel::{Channel, Take, TakeLimits};
use crate::config::SinkSpec;
use crate::event::Event;
use crate::internal_events::{BatchDelivered, BatchRejected, EventsLost, SinkWriteFailed};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How a batch's sending ended.
enum Outcome {
    /// By member `member`.
    Delivered {
        bytes: usize,
        member: usize,
    },
    Rejected {
        error: String,
        member: usize,
    },
    /// Delivered by member `member` but for the events at `refused` (positions in the
    /// batch, ascending), refused for good.
    PartlyRejected {
        bytes: usize,
        member: usize,
        refused: Vec<u32>,
        error: String,
    },
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
    members: Arc<Members>,
}

impl Sink {
    pub fn new(
        spec: &SinkSpec,
        channel: Channel,
        dead_letter: Option<Channel>,
        service: Arc<dyn SinkService>,
    ) -> Self {
        let members = Members::new(
            vec![(spec.name.clone(), service)],
            GroupMode::Failover,
            Selector::RoundRobin,
            spec.retry,
        );
        Self::with_members(spec, channel, dead_letter, members)
    }

    /// A group's driver: `spec` gives the channel, batch, retry and dead-letter settings.
    pub fn with_members(
        spec: &SinkSpec,
        channel: Channel,
        dead_letter: Option<Channel>,
        members: Members,
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
            members: Arc::new(members),
        }
    }

    /// Delivers until the channel is closed and drained, or until `stop` (then the
    /// batches in flight are still delivered; the channel keeps the rest), then closes
    /// its members ([`SinkService::close`]). `abort` stops retrying: batches still in
    /// flight are rolled back into the channel. Housekeeping runs beside it.
    pub async fn run(self, stop: CancellationToken, abort: CancellationToken) {
        let max_in_flight = (0..self.members.len())
            .map(|i| self.members.get(i).service.in_flight())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut in_flight = FuturesOrdered::new();
        let mut drained = false;
        // Beside the loop, not in its select: a take waiting to fill its batch must not
        // be cut short (and begun again) every period.
        let housekeeping = CancellationToken::new();
        let housekeeper = tokio::spawn(housekeep(self.members.clone(), housekeeping.clone()));
        let _stop_housekeeping = housekeeping.clone().drop_guard();
        loop {
            if drained && in_flight.is_empty() {
                break;
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
                        self.members.clone(),
                        take,
                        self.name.clone(),
                        abort.clone(),
                    ));
                }
            }
        }
        housekeeping.cancel();
        let _ = housekeeper.await;
        for i in 0..self.members.len() {
            self.members.get(i).service.clone().close().await;
        }
    }

    /// Counts events refused for good and puts them into the dead-letter channel (before
    /// their take is committed: a crash in between repeats them, never loses them), or
    /// counts them as lost when there is none.
    async fn refuse(&self, member: usize, events: Vec<Event>, error: &str) {
        let member = self.members.get(member);
        BatchRejected {
            sink: &member.name,
            events: events.len() as u64,
            error: &error,
            dead_letter: self.dead_letter.as_ref().map(Channel::name),
        }
        .emit(&member.counters);
        if let Some(dead_letter) = &self.dead_letter
            && let Err(e) = dead_letter.put(events).await
        {
            EventsLost {
                count: e.not_put as u64,
                at: &self.name,
                reason: &e,
            }
            .emit();
        }
    }

    /// Ends a batch's transaction; false when the sink must stop (aborted).
    async fn finish(&self, take: Take, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Delivered { bytes, member } => {
                BatchDelivered {
                    events: take.len() as u64,
                    bytes: bytes as u64,
                }
                .emit(&self.members.get(member).counters);
                take.commit();
                true
            }
            Outcome::Rejected { error, member } => {
                let events = take.events().to_vec();
                self.refuse(member, events, &error).await;
                take.commit();
                true
            }
            Outcome::PartlyRejected {
                bytes,
                member,
                refused,
                error,
            } => {
                BatchDelivered {
                    events: (take.len() - refused.len()) as u64,
                    bytes: bytes as u64,
                }
                .emit(&self.members.get(member).counters);
                let events = refused
                    .iter()
                    .filter_map(|&i| take.events().get(i as usize).cloned())
                    .collect();
                self.refuse(member, events, &error).await;
                take.commit();
                true
            }
            Outcome::Aborted => {
                take.rollback();
                false
            }
        }
    }
}

/// Runs the members' [`SinkService::housekeep`] every [`HOUSEKEEPING_PERIOD`] until
/// `stop` (a run in progress finishes first).
async fn housekeep(members: Arc<Members>, stop: CancellationToken) {
    let mut period = tokio::time::interval(HOUSEKEEPING_PERIOD);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = period.tick() => {}
        }
        for i in 0..members.len() {
            if let Some(work) = members.get(i).service.clone().housekeep() {
                work.await;
            }
        }
    }
}

/// Sends one batch until it is delivered, refused for good, or the agent stops: to the
/// member the group picks, encoded for it (on the blocking pool: compressing a large
/// batch takes milliseconds, and batches in flight are then encoded in parallel; once
/// per member, kept for the retries). No take comes back when encoding panicked (a
/// bug): the take was rolled back as it unwound.
async fn deliver(
    members: Arc<Members>,
    mut take: Take,
    sink: String,
    abort: CancellationToken,
) -> (Option<Take>, Outcome) {
    let mut encoded: Vec<Option<Arc<Payload>>> = vec![None; members.len()];
    let mut attempt = 0u32;
    loop {
        let member = match members.pick(Instant::now()) {
            Ok(member) => member,
            Err(back) => {
                // Every member is set aside: wait for the first to come back.
                tokio::select! {
                    _ = tokio::time::sleep_until(back.into()) => continue,
                    _ = abort.cancelled() => return (Some(take), Outcome::Aborted),
                }
            }
        };
        let payload = match &encoded[member] {
            Some(payload) => payload.clone(),
            None => {
                let encoder = members.get(member).service.clone();
                let encoding = tokio::task::spawn_blocking(move || {
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
                let payload;
                (take, payload) = match encoding {
                    Ok(encoded) => encoded,
                    Err(e) => {
                        tracing::error!(sink = %sink, "encoding a batch failed (a bug in the agent): {e}");
                        return (None, Outcome::Aborted);
                    }
                };
                encoded[member] = Some(payload.clone());
                payload
            }
        };
        let service = members.get(member).service.clone();
        let sent = tokio::select! {
            sent = service.send(payload.clone()) => sent,
            _ = abort.cancelled() => return (Some(take), Outcome::Aborted),
        };
        let (message, after) = match sent {
            Ok(()) => {
                members.succeeded(member);
                let bytes = payload.bytes.len();
                return (Some(take), Outcome::Delivered { bytes, member });
            }
            Err(SendError::Reject { message }) => {
                return (
                    Some(take),
                    Outcome::Rejected {
                        error: message,
                        member,
                    },
                );
            }
            Err(SendError::RejectParts { parts, message }) => {
                members.succeeded(member);
                let (refused, bytes) = refused_of(&payload, &parts);
                return (
                    Some(take),
                    Outcome::PartlyRejected {
                        bytes,
                        member,
                        refused,
                        error: message,
                    },
                );
            }
            Err(SendError::Retry { message, after }) => (message, after),
        };
        attempt += 1;
        let delay = members.failed(member, after);
        let failed = members.get(member);
        SinkWriteFailed {
            sink: &failed.name,
            error: &message,
            attempt,
            retry_in: delay,
        }
        .emit(&failed.counters);
    }
}

/// The positions in the batch of the events of the refused `parts` (ascending), and the
/// bytes of the parts that were delivered.
fn refused_of(payload: &Payload, parts: &[usize]) -> (Vec<u32>, usize) {
    let mut refused = Vec::new();
    let mut refused_bytes = 0;
    let mut start = 0;
    for (i, part) in payload.parts.iter().enumerate() {
        if parts.contains(&i) {
            refused.extend_from_slice(&part.positions);
            refused_bytes += part.end.saturating_sub(start);
        }
        start = part.end;
    }
    refused.sort_unstable();
    refused.dedup();
    (refused, payload.bytes.len().saturating_sub(refused_bytes))
}
