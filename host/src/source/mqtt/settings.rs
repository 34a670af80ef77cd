//! The `mqtt` source's settings: the config table as written, and what it resolves to
//! (broker address, credentials read from their file, a TLS client configuration).

use crate::config::Problems;
use crate::sink::http::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://host:1883` or, with TLS, `mqtts://host:8883` (the port
    /// defaults to those).
    pub broker: String,
    /// Topic filters to subscribe to (`sensors/#`, `plant/+/status`); at least one.
    pub topics: Vec<String>,
    /// The subscription's QoS: 1 (default; the broker keeps each message until the
    /// source's channels hold it) or 0 (at most once).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// The client id; default `runnel-<hostname>-<source name>`. A persistent session
    /// is the broker's record of this id: keep it stable and unique per agent.
    pub client_id: Option<String>,
    /// Start a new session at every connection (false, the default: the broker keeps
    /// the subscription and queues QoS 1 messages while the agent is away).
    #[serde(default)]
    pub clean_session: bool,
    /// MQTT 5: how long the broker keeps the session after a disconnect, in seconds
    /// (default 86400).
    #[serde(default = "default_session_expiry_secs")]
    pub session_expiry_secs: u32,
    /// MQTT 5: QoS 1 messages the broker may have unacknowledged with us at once
    /// (default 1024). An MQTT 3.1.1 broker sets this itself (mosquitto:
    /// `max_inflight_messages`, default 20).
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// The largest MQTT packet taken, in bytes (default 1 MiB). MQTT 5 tells the broker,
    /// which then does not send larger ones; an MQTT 3.1.1 connection that receives one
    /// is closed (the protocol cannot refuse one message).
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// TLS for `mqtts://`: `{ ca_file = "…" }` (default: the system's CA certificates),
    /// and `cert_file` + `key_file` for a client certificate.
    pub tls: Option<MqttTls>,
    /// The tag that carries the message's topic (default `"topic"`).
    #[serde(default = "default_topic_tag")]
    pub topic_tag: String,
}

#[derive(PartialEq, Debug, Clone, Copy, Default, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

fn default_qos() -> u8 {
    1
}
fn default_session_expiry_secs() -> u32 {
    86_400
}
fn default_receive_maximum() -> u16 {
    1024
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_max_packet_bytes() -> usize {
    1024 * 1024
}
fn default_topic_tag() -> String {
    "topic".to_owned()
}

/// The settings resolved: what a session is made from.
#[derive(Clone)]
pub struct Settings {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub clean_session: bool,
    pub session_expiry_secs: u32,
    pub receive_maximum: u16,
    pub keep_alive_secs: u64,
    pub max_packet_bytes: usize,
    pub credentials: Option<(String, String)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A setting at fault: its key path and what is wrong.
type Fault = (Vec<&'static str>, String);

impl MqttConfig {
    pub fn validate(&self, problems: &mut Problems) {
        if self.topics.is_empty() {
            problems.at("topics", "needs at least one topic filter");
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if let Err(e) = check_filter(topic) {
                problems.at_path(&["topics", &i.to_string()], format!("{topic:?}: {e}"));
            }
        }
        if self.qos > 1 {
            problems.at("qos", "must be 0 or 1 (QoS 2 is not supported)");
        }
        if self.keep_alive_secs < 5 || self.keep_alive_secs > 65_535 {
            problems.at("keep_alive_secs", "must be between 5 and 65535");
        }
        if self.receive_maximum == 0 {
            problems.at("receive_maximum", "must be at least 1");
        }
        if self.max_packet_bytes < 64 || self.max_packet_bytes > 268_435_455 {
            problems.at(
                "max_packet_bytes",
                "must be between 64 and 268435455 (MQTT's largest packet)",
            );
        }
        if self.topic_tag.is_empty() {
            problems.at("topic_tag", "must not be empty");
        }
        if let Err((path, message)) = self.resolve("source") {
            problems.at_path(&path, message);
        }
    }

    /// Resolves the settings (reads the password and TLS files); `source` names the
    /// default client id.
    pub fn resolve(&self, source: &str) -> Result<Settings, Fault> {
        let (tls_scheme, host, port) =
            parse_broker(&self.broker).map_err(|e| (vec!["broker"], e))?;
        let tls = match (tls_scheme, &self.tls) {
            (false, Some(_)) => {
                return Err((
                    vec!["tls"],
                    "is set but `broker` is mqtt://: use mqtts:// for TLS".into(),
                ));
            }
            (false, None) => None,
            (true, tls) => Some(client_tls(tls.as_ref())?),
        };
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err((
                    vec!["password_file"],
                    "set `password` or `password_file`, not both".into(),
                ));
            }
            (Some(Secret(p)), None) => Some(p.clone()),
            (None, Some(file)) => Some(
                crate::files::read_secret(file)
                    .and_then(|p| String::from_utf8(p).map_err(|_| "is not UTF-8 text".into()))
                    .map_err(|e| (vec!["password_file"], format!("{}: {e}", file.display())))?,
            ),
            (None, None) => None,
        };
        let credentials = match (&self.username, password) {
            (Some(user), password) => Some((user.clone(), password.unwrap_or_default())),
            (None, Some(_)) => {
                return Err((vec!["username"], "a password needs a `username`".into()));
            }
            (None, None) => None,
        };
        let client_id = match &self.client_id {
            Some(id) if id.is_empty() || id.len() > 65_535 => {
                return Err((vec!["client_id"], "must be 1 to 65535 bytes".into()));
            }
            Some(id) => id.clone(),
            None => format!("runnel-{}-{source}", crate::config::os_hostname()),
        };
        Ok(Settings {
            protocol: self.protocol,
            host,
            port,
            client_id,
            clean_session: self.clean_session,
            session_expiry_secs: self.session_expiry_secs,
            receive_maximum: self.receive_maximum,
            keep_alive_secs: self.keep_alive_secs,
            max_packet_bytes: self.max_packet_bytes,
            credentials,
            tls,
        })
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` (also `tcp://`, `ssl://`): whether it is
/// TLS, the host and the port.
fn parse_broker(broker: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(rest) = broker
        .strip_prefix("mqtts://")
        .or_else(|| broker.strip_prefix("ssl://"))
    {
        (true, rest)
    } else if let Some(rest) = broker
        .strip_prefix("mqtt://")
        .or_else(|| broker.strip_prefix("tcp://"))
    {
        (false, rest)
    } else {
        return Err(format!(
            "{broker:?}: must start with mqtt:// or mqtts:// (mqtt://host:1883)"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        // [::1]:1883
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{broker:?}: an IPv6 address needs its closing ']'"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{broker:?}: unexpected {after:?} after the host")),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{broker:?}: needs a host (mqtt://host:1883)"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{broker:?}: {p:?} is not a port"))?,
        None => default_port,
    };
    Ok((tls, host.to_owned(), port))
}

/// A topic filter as MQTT allows it: not empty, `#` only as the last level, `+` and `#`
/// only as whole levels.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter must not be empty");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("`#` must be a whole level, the last one");
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

/// The TLS client configuration: the given CA (else the system's), and a client
/// certificate when both its files are given.
fn client_tls(tls: Option<&MqttTls>) -> Result<Arc<rustls::ClientConfig>, Fault> {
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_ref()) {
        Some(ca_file) => {
            let at = |e: &dyn std::fmt::Display| {
                (
                    vec!["tls", "ca_file"],
                    format!("{}: {e}", ca_file.display()),
                )
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
                .and_then(|certs| certs.collect())
                .map_err(|e| at(&e))?;
            if certs.is_empty() {
                return Err(at(&"no PEM certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| at(&e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err((
                    vec!["tls", "ca_file"],
                    "no system CA certificates found: set it".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (vec!["tls"], e.to_string()))?
        .with_root_certificates(roots);
    let (cert_file, key_file) = (
        tls.and_then(|t| t.cert_file.as_ref()),
        tls.and_then(|t| t.key_file.as_ref()),
    );
    let config = match (cert_file, key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect())
                .map_err(|e| {
                    (
                        vec!["tls", "cert_file"],
                        format!("{}: {e}", cert_file.display()),
                    )
                })?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                (
                    vec!["tls", "key_file"],
                    format!("{}: {e}", key_file.display()),
                )
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                (
                    vec!["tls", "key_file"],
                    format!("does not go with the certificate: {e}"),
                )
            })?
        }
        (Some(_), None) => {
            return Err((
                vec!["tls", "key_file"],
                "a `cert_file` needs its key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                vec!["tls", "cert_file"],
                "a `key_file` needs its certificate".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("mqtt://broker.local").unwrap(),
            (false, "broker.local".into(), 1883)
        );
        assert_eq!(
            parse_broker("mqtts://10.0.0.2:9883/").unwrap(),
            (true, "10.0.0.2".into(), 9883)
        );
        assert_eq!(
            parse_broker("tcp://[::1]:1884").unwrap(),
            (false, "::1".into(), 1884)
        );
        assert_eq!(parse_broker("ssl://[fe80::1]").unwrap().2, 8883);
        for bad in [
            "broker:1883",
            "http://b",
            "mqtt://",
            "mqtt://b:0",
            "mqtt://b:x",
            "mqtt://[::1",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_filters() {
        for good in ["a", "a/b", "#", "a/#", "+/b/+", "+", "/a", "a//b"] {
            assert!(check_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "a/b+", "#/a"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
