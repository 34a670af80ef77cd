//! One MQTT session over rumqttc, whichever protocol version it speaks: what the source
//! needs of it (poll for what arrives, subscribe, acknowledge a delivery, disconnect),
//! in one type, so the source's loop is written once for MQTT 3.1.1 and 5.

use super::settings::{Protocol, Settings};
use bytes::Bytes;
use rumqttc::v5;
use std::time::Duration;

/// A client's queue of requests to its connection (acks, subscribes): room for a
/// broker's worth of unacknowledged deliveries and then some.
const REQUEST_CAPACITY: usize = 1024;

/// What arrived from the broker.
pub enum Incoming {
    /// A connection was made (the first, or again after a loss): the broker kept the
    /// session (its subscriptions and unacknowledged QoS 1 deliveries) or not.
    Connected { session_present: bool },
    /// The broker answered a subscribe: the filters it refused.
    Subscribed { refused: Vec<usize> },
    /// A message on a subscribed topic.
    Message(Message),
    /// Pings, acks of our own requests and the like.
    Other,
}

/// One delivery.
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    /// The broker sent it before (on a connection that ended before our PUBACK).
    pub redelivered: bool,
    /// Set for a QoS 1 delivery: the broker keeps it until it is acknowledged.
    pub ack: Option<AckToken>,
}

/// What acknowledging one QoS 1 delivery needs (its packet id), without its payload.
pub struct AckToken(Token);

enum Token {
    V3(Box<rumqttc::Publish>),
    V5(Box<v5::mqttbytes::v5::Publish>),
}

/// The client's request queue is full: try again after the connection has been polled.
pub struct QueueFull;

pub enum Session {
    V3 {
        client: rumqttc::AsyncClient,
        events: Box<rumqttc::EventLoop>,
    },
    V5 {
        client: v5::AsyncClient,
        events: Box<v5::EventLoop>,
    },
}

impl Session {
    pub fn new(settings: &Settings) -> Session {
        let keep_alive = Duration::from_secs(settings.keep_alive_secs);
        match settings.protocol {
            Protocol::V311 => {
                let mut options = rumqttc::MqttOptions::new(
                    settings.client_id.clone(),
                    settings.host.clone(),
                    settings.port,
                );
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(settings.clean_session)
                    .set_manual_acks(true)
                    .set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes)
                    .set_request_channel_capacity(REQUEST_CAPACITY);
                if let Some((user, password)) = &settings.credentials {
                    options.set_credentials(user.clone(), password.clone());
                }
                if let Some(tls) = &settings.tls {
                    options.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(tls.clone()),
                    ));
                }
                let (client, events) = rumqttc::AsyncClient::new(options, REQUEST_CAPACITY);
                Session::V3 {
                    client,
                    events: Box::new(events),
                }
            }
            Protocol::V5 => {
                let mut options = v5::MqttOptions::new(
                    settings.client_id.clone(),
                    settings.host.clone(),
                    settings.port,
                );
                let max_packet = u32::try_from(settings.max_packet_bytes).unwrap_or(u32::MAX);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(settings.clean_session)
                    // Without an expiry, a v5 broker ends the session with the connection.
                    .set_session_expiry_interval(
                        (!settings.clean_session).then_some(settings.session_expiry_secs),
                    )
                    .set_receive_maximum(Some(settings.receive_maximum))
                    // Tells the broker: it does not send us larger messages.
                    .set_max_packet_size(Some(max_packet))
                    .set_manual_acks(true)
                    .set_request_channel_capacity(REQUEST_CAPACITY);
                if let Some((user, password)) = &settings.credentials {
                    options.set_credentials(user.clone(), password.clone());
                }
                if let Some(tls) = &settings.tls {
                    options.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(tls.clone()),
                    ));
                }
                let (client, events) = v5::AsyncClient::new(options, REQUEST_CAPACITY);
                Session::V5 {
                    client,
                    events: Box::new(events),
                }
            }
        }
    }

    /// Waits for what arrives next; sends queued requests on the way. After an error
    /// the next call connects again.
    pub async fn poll(&mut self) -> Result<Incoming, String> {
        match self {
            Session::V3 { events, .. } => {
                use rumqttc::{Event, Packet, SubscribeReasonCode};
                match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => Ok(Incoming::Connected {
                        session_present: ack.session_present,
                    }),
                    Event::Incoming(Packet::SubAck(ack)) => Ok(Incoming::Subscribed {
                        refused: refused(&ack.return_codes, |c| {
                            matches!(c, SubscribeReasonCode::Failure)
                        }),
                    }),
                    Event::Incoming(Packet::Publish(publish)) => {
                        let ack = (publish.qos != rumqttc::QoS::AtMostOnce).then(|| {
                            let mut token = publish.clone();
                            token.payload = Bytes::new();
                            token.topic = String::new();
                            AckToken(Token::V3(Box::new(token)))
                        });
                        Ok(Incoming::Message(Message {
                            topic: Bytes::from(publish.topic),
                            payload: publish.payload,
                            redelivered: publish.dup,
                            ack,
                        }))
                    }
                    _ => Ok(Incoming::Other),
                }
            }
            Session::V5 { events, .. } => {
                use v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                match events.poll().await.map_err(|e| e.to_string())? {
                    v5::Event::Incoming(Packet::ConnAck(ack)) => Ok(Incoming::Connected {
                        session_present: ack.session_present,
                    }),
                    v5::Event::Incoming(Packet::SubAck(ack)) => Ok(Incoming::Subscribed {
                        refused: refused(&ack.return_codes, |c| {
                            !matches!(c, SubscribeReasonCode::Success(_))
                        }),
                    }),
                    v5::Event::Incoming(Packet::Publish(publish)) => {
                        let ack = (publish.qos != v5::mqttbytes::QoS::AtMostOnce).then(|| {
                            let mut token = publish.clone();
                            token.payload = Bytes::new();
                            token.topic = Bytes::new();
                            token.properties = None;
                            AckToken(Token::V5(Box::new(token)))
                        });
                        Ok(Incoming::Message(Message {
                            topic: publish.topic,
                            payload: publish.payload,
                            redelivered: publish.dup,
                            ack,
                        }))
                    }
                    _ => Ok(Incoming::Other),
                }
            }
        }
    }

    /// Queues a subscribe to every filter at `qos` (0 or 1).
    pub fn subscribe(&self, filters: &[String], qos: u8) -> Result<(), String> {
        match self {
            Session::V3 { client, .. } => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                client
                    .try_subscribe_many(
                        filters
                            .iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos)),
                    )
                    .map_err(|e| e.to_string())
            }
            Session::V5 { client, .. } => {
                let qos = if qos == 0 {
                    v5::mqttbytes::QoS::AtMostOnce
                } else {
                    v5::mqttbytes::QoS::AtLeastOnce
                };
                client
                    .try_subscribe_many(
                        filters
                            .iter()
                            .map(|f| v5::mqttbytes::v5::Filter::new(f.clone(), qos)),
                    )
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Queues the acknowledgement of a delivery (sent by the next polls).
    pub fn ack(&self, token: &AckToken) -> Result<(), QueueFull> {
        let queued = match (self, &token.0) {
            (Session::V3 { client, .. }, Token::V3(p)) => client.try_ack(p).is_ok(),
            (Session::V5 { client, .. }, Token::V5(p)) => client.try_ack(p).is_ok(),
            // A token is only made by its own session's poll.
            _ => true,
        };
        if queued { Ok(()) } else { Err(QueueFull) }
    }

    /// Queues a clean disconnect (the broker keeps a persistent session).
    pub fn disconnect(&self) {
        let _ = match self {
            Session::V3 { client, .. } => client.try_disconnect().map_err(|e| e.to_string()),
            Session::V5 { client, .. } => client.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// The indexes of the filters a SUBACK refused.
fn refused<C>(codes: &[C], is_refusal: impl Fn(&C) -> bool) -> Vec<usize> {
    codes
        .iter()
        .enumerate()
        .filter(|(_, c)| is_refusal(c))
        .map(|(i, _)| i)
        .collect()
}
