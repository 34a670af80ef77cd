//! The `http` sink's settings, and their checks. Everything a setting refers to (the
//! URL, header names and values, secret files, the CA file) is resolved here once, by
//! [`HttpSinkConfig::resolve`]: `validate` reports its problems with their key paths,
//! `build` uses its result.

use crate::files::read_secret;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Url};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings of an `http` sink (`[sinks.NAME] type = "http"`). The settings every
/// sink has (channel, batching, retry backoff, dead letter) are read elsewhere.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where batches are sent: an `http://` or `https://` URL. Credentials in it
    /// (`https://user:pass@host/`) are sent as basic auth and never logged. Required.
    pub uri: String,
    /// `"post"` (the default) or `"put"`.
    #[serde(default)]
    pub method: Method,
    /// The body: `"ndjson"` (the default; one JSON object per line, `Content-Type:
    /// application/x-ndjson`) or `"json_array"` (`[{…},{…}]`, `application/json`).
    /// Events are the `json` format's objects.
    #[serde(default)]
    pub encoding: BodyEncoding,
    /// `"none"` (the default) or `"gzip"` (`Content-Encoding: gzip`).
    #[serde(default)]
    pub compression: CompressionKind,
    /// The gzip level, 0 (store) to 9 (smallest); default 1 (fastest). Only with
    /// `compression = "gzip"`.
    pub compression_level: Option<u32>,
    /// Extra request headers, name = value (`headers = { "X-Tenant" = "edge-7" }`).
    /// `Content-Type` may be overridden; the headers the sink manages (`Content-Length`,
    /// `Content-Encoding`, `Transfer-Encoding`, `Host`, `Connection`, `User-Agent`, and
    /// `Authorization` or the signature headers when `auth`/`signature` are set) may not.
    #[serde(default)]
    pub headers: Headers,
    /// Authentication: `{ strategy = "bearer", token = "…" }` (or `token_file`), or
    /// `{ strategy = "basic", user = "…", password = "…" }` (or `password_file`). Files
    /// are read when the sink is built, trailing newlines removed.
    pub auth: Option<Box<Auth>>,
    /// Signs every request (each attempt, with a fresh timestamp) with HMAC-SHA256:
    /// `<prefix>Timestamp: <unix seconds>` and `<prefix>Signature: v1=<lowercase hex
    /// HMAC-SHA256(key, timestamp + "." + body as sent)>`.
    pub signature: Option<Box<Signature>>,
    /// TLS settings for `https://` URLs.
    pub tls: Option<Box<Tls>>,
    /// How long establishing a connection (TCP and TLS) may take, in ms; default 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one attempt may take in all (connecting, sending, the response), in ms;
    /// default 30000. An attempt that times out is retried.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How many batches may be on their way at once, 1 to 64; default 2. Batches are
    /// still committed in order.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// The `User-Agent` header; default `runnel/<version>`.
    pub user_agent: Option<String>,
    /// Which `307`/`308` redirects are followed: `"same_origin"` (the default: only to
    /// the same scheme, host and port, so the headers, signature and body never go to
    /// another server) or `"never"`. A redirect not followed rejects the batch.
    #[serde(default)]
    pub follow_redirects: FollowRedirects,
}

/// Which redirects the sink follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowRedirects {
    #[default]
    SameOrigin,
    Never,
}

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Post,
    Put,
}

/// How a batch becomes a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    #[default]
    Ndjson,
    JsonArray,
}

/// Whether the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    #[default]
    None,
    Gzip,
}

/// The extra headers; `Debug` shows their names only (values are often API keys).
#[derive(PartialEq, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, Redacted)))
            .finish()
    }
}

/// A secret written in the config; `Debug` does not show it.
#[derive(PartialEq, Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Redacted, f)
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `auth = { strategy = "…", … }`.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`; exactly one of `token` and `token_file`.
    Bearer {
        token: Option<Secret>,
        token_file: Option<PathBuf>,
    },
    /// `Authorization: Basic …`; `user`, and exactly one of `password` and
    /// `password_file`.
    Basic {
        user: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
    },
}

/// `signature = { key_file = "…", header_prefix = "X-Runnel-" }`.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The HMAC key: the file's bytes, trailing `\r`/`\n` removed. Required.
    pub key_file: PathBuf,
    /// The headers are `<prefix>Timestamp` and `<prefix>Signature`; default
    /// `X-Runnel-`.
    #[serde(default = "default_header_prefix")]
    pub header_prefix: String,
}

/// `tls = { ca_file = "…", verify = true }`.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificates (one or more) trusted in addition to the built-in roots, e.g. a
    /// private CA.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any server certificate (testing only; logged as a warning at
    /// start). Default `true`.
    #[serde(default = "default_verify")]
    pub verify: bool,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

fn default_in_flight() -> usize {
    2
}

fn default_header_prefix() -> String {
    "X-Runnel-".to_owned()
}

fn default_verify() -> bool {
    true
}

/// Level 1, the least CPU (an edge host is short of CPU first); level 6 makes bodies
/// ~1.5× smaller (9.1% vs 13.6% of the JSON) for 10–20% more agent CPU (BENCHMARKS.md).
pub(super) const DEFAULT_COMPRESSION_LEVEL: u32 = 1;
const MAX_IN_FLIGHT: usize = 64;
const MAX_CONNECT_TIMEOUT_MS: u64 = 300_000;
const MAX_REQUEST_TIMEOUT_MS: u64 = 3_600_000;

/// Headers the sink sets itself (or the HTTP stack does).
const MANAGED_HEADERS: &[&str] = &[
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "te",
    "upgrade",
];

/// The settings, checked and resolved, ready to build the sink from.
pub(super) struct Resolved {
    pub url: Url,
    /// The URL without credentials, for messages.
    pub display_uri: String,
    pub method: reqwest::Method,
    pub encoding: BodyEncoding,
    /// The gzip level, when compressing.
    pub gzip: Option<u32>,
    /// Sent with every request: content type and encoding, authorization, extra headers.
    pub headers: HeaderMap,
    pub signature: Option<super::Signer>,
    pub ca_certificates: Vec<Certificate>,
    pub verify: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub in_flight: usize,
    pub user_agent: HeaderValue,
    pub follow_redirects: FollowRedirects,
}

/// Problems found while resolving, each with its key path.
pub(super) type Found = Vec<(Vec<String>, String)>;

fn problem(found: &mut Found, path: &[&str], message: impl Into<String>) {
    found.push((
        path.iter().map(|s| (*s).to_owned()).collect(),
        message.into(),
    ));
}

impl HttpSinkConfig {
    /// Checks every setting and resolves it; `None` when anything is wrong (and then
    /// `found` says what, and where).
    pub(super) fn resolve(&self, found: &mut Found) -> Option<Resolved> {
        let before = found.len();
        let url = self.check_uri(found);

        let gzip = match (self.compression, self.compression_level) {
            (CompressionKind::None, Some(_)) => {
                problem(
                    found,
                    &["compression_level"],
                    "is only used with compression = \"gzip\"",
                );
                None
            }
            (CompressionKind::None, None) => None,
            (CompressionKind::Gzip, level) => {
                let level = level.unwrap_or(DEFAULT_COMPRESSION_LEVEL);
                if level > 9 {
                    problem(
                        found,
                        &["compression_level"],
                        format!("must be between 0 and 9 (is {level})"),
                    );
                }
                Some(level)
            }
        };

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(match self.encoding {
                BodyEncoding::Ndjson => "application/x-ndjson",
                BodyEncoding::JsonArray => "application/json",
            }),
        );
        if gzip.is_some() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let url_has_credentials = url
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some());
        if let Some(auth) = &self.auth {
            if url_has_credentials {
                problem(
                    found,
                    &["auth"],
                    "conflicts with the credentials in `uri`: use one or the other",
                );
            }
            if let Some(value) = resolve_auth(auth, found) {
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        let signature = self
            .signature
            .as_ref()
            .and_then(|s| resolve_signature(s, found));
        self.check_headers(&mut headers, url_has_credentials, found);

        let (ca_certificates, verify) = match &self.tls {
            None => (Vec::new(), true),
            Some(tls) => {
                if url.as_ref().is_some_and(|u| u.scheme() != "https") {
                    problem(found, &["tls"], "is only used with an https:// `uri`");
                }
                let certificates = match &tls.ca_file {
                    None => Vec::new(),
                    Some(path) => read_certificates(path).unwrap_or_else(|e| {
                        problem(found, &["tls", "ca_file"], e);
                        Vec::new()
                    }),
                };
                (certificates, tls.verify)
            }
        };

        for (key, value, max) in [
            (
                "connect_timeout_ms",
                self.connect_timeout_ms,
                MAX_CONNECT_TIMEOUT_MS,
            ),
            (
                "request_timeout_ms",
                self.request_timeout_ms,
                MAX_REQUEST_TIMEOUT_MS,
            ),
        ] {
            if !(1..=max).contains(&value) {
                problem(
                    found,
                    &[key],
                    format!("must be between 1 and {max} (is {value})"),
                );
            }
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.in_flight) {
            problem(
                found,
                &["in_flight"],
                format!(
                    "must be between 1 and {MAX_IN_FLIGHT} (is {})",
                    self.in_flight
                ),
            );
        }
        let user_agent = match &self.user_agent {
            None => HeaderValue::from_static(concat!("runnel/", env!("CARGO_PKG_VERSION"))),
            Some(ua) => match HeaderValue::from_str(ua) {
                Ok(v) if !ua.trim().is_empty() => v,
                _ => {
                    problem(
                        found,
                        &["user_agent"],
                        "must be non-empty visible ASCII (no control characters)",
                    );
                    HeaderValue::from_static("runnel")
                }
            },
        };

        if found.len() > before {
            return None;
        }
        let url = url?;
        Some(Resolved {
            display_uri: display_uri(&url),
            method: match self.method {
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
            },
            url,
            encoding: self.encoding,
            gzip,
            headers,
            signature,
            ca_certificates,
            verify,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            in_flight: self.in_flight,
            user_agent,
            follow_redirects: self.follow_redirects,
        })
    }

    fn check_uri(&self, found: &mut Found) -> Option<Url> {
        let url = match Url::parse(self.uri.trim()) {
            Ok(url) => url,
            Err(e) => {
                problem(found, &["uri"], format!("is not a valid URL: {e}"));
                return None;
            }
        };
        if url.scheme() != "http" && url.scheme() != "https" {
            problem(
                found,
                &["uri"],
                format!(
                    "must be an http:// or https:// URL (not {}://)",
                    url.scheme()
                ),
            );
            return None;
        }
        if url.host_str().is_none_or(str::is_empty) {
            problem(found, &["uri"], "has no host");
            return None;
        }
        if url.fragment().is_some() {
            problem(
                found,
                &["uri"],
                "must not have a #fragment (it is never sent)",
            );
            return None;
        }
        Some(url)
    }

    fn check_headers(&self, headers: &mut HeaderMap, url_credentials: bool, found: &mut Found) {
        let prefix = self
            .signature
            .as_ref()
            .map(|s| s.header_prefix.to_ascii_lowercase());
        for (name, value) in &self.headers.0 {
            let at = ["headers", name.as_str()];
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
                problem(found, &at, format!("`{name}` is not a valid header name"));
                continue;
            };
            let lower = header_name.as_str();
            if MANAGED_HEADERS.contains(&lower) {
                problem(found, &at, format!("`{name}` is set by the sink"));
                continue;
            }
            if lower == "user-agent" {
                problem(found, &at, "use the `user_agent` setting");
                continue;
            }
            if lower == "authorization" && (self.auth.is_some() || url_credentials) {
                problem(
                    found,
                    &at,
                    "conflicts with `auth` (or the credentials in `uri`)",
                );
                continue;
            }
            if let Some(prefix) = &prefix
                && (lower == format!("{prefix}timestamp") || lower == format!("{prefix}signature"))
            {
                problem(found, &at, "is set by `signature`");
                continue;
            }
            match HeaderValue::from_str(value) {
                Ok(v) => {
                    headers.insert(header_name, v);
                }
                Err(_) => problem(
                    found,
                    &at,
                    "the value must be visible ASCII or tabs/spaces (no control characters)",
                ),
            }
        }
    }
}

fn resolve_auth(auth: &Auth, found: &mut Found) -> Option<HeaderValue> {
    let mut value = match auth {
        Auth::Bearer { token, token_file } => {
            let token = one_secret(token, token_file, ("token", "token_file"), found)?;
            HeaderValue::from_str(&format!("Bearer {token}"))
                .ok()
                .or_else(|| {
                    let key = if token_file.is_some() {
                        "token_file"
                    } else {
                        "token"
                    };
                    problem(
                        found,
                        &["auth", key],
                        "the token must be visible ASCII (no control characters or newlines)",
                    );
                    None
                })?
        }
        Auth::Basic {
            user,
            password,
            password_file,
        } => {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                problem(
                    found,
                    &["auth", "user"],
                    "must be non-empty, without `:` or control characters",
                );
                return None;
            }
            let password = one_secret(
                password,
                password_file,
                ("password", "password_file"),
                found,
            )?;
            let credentials = base64(format!("{user}:{password}").as_bytes());
            HeaderValue::from_str(&format!("Basic {credentials}")).ok()?
        }
    };
    value.set_sensitive(true);
    Some(value)
}

/// The secret given inline or in a file (exactly one of the two).
fn one_secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    (key, file_key): (&str, &str),
    found: &mut Found,
) -> Option<String> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problem(
                found,
                &["auth", file_key],
                format!("set `{key}` or `{file_key}`, not both"),
            );
            None
        }
        (None, None) => {
            problem(found, &["auth"], format!("needs `{key}` or `{file_key}`"));
            None
        }
        (Some(Secret(s)), None) if s.is_empty() => {
            problem(found, &["auth", key], "must not be empty");
            None
        }
        (Some(Secret(s)), None) => Some(s.clone()),
        (None, Some(path)) => match read_secret(path)
            .and_then(|b| String::from_utf8(b).map_err(|_| "is not UTF-8 text".to_owned()))
        {
            Ok(s) => Some(s),
            Err(e) => {
                problem(
                    found,
                    &["auth", file_key],
                    format!("{}: {e}", path.display()),
                );
                None
            }
        },
    }
}

fn resolve_signature(signature: &Signature, found: &mut Found) -> Option<super::Signer> {
    let key = match read_secret(&signature.key_file) {
        Ok(key) => Some(key),
        Err(e) => {
            problem(
                found,
                &["signature", "key_file"],
                format!("{}: {e}", signature.key_file.display()),
            );
            None
        }
    };
    let prefix = &signature.header_prefix;
    let names = HeaderName::from_bytes(format!("{prefix}Timestamp").as_bytes()).and_then(|t| {
        Ok((
            t,
            HeaderName::from_bytes(format!("{prefix}Signature").as_bytes())?,
        ))
    });
    let names = match names {
        Ok(names) => Some(names),
        Err(_) => {
            problem(
                found,
                &["signature", "header_prefix"],
                format!("`{prefix}` does not make valid header names"),
            );
            None
        }
    };
    let (key, (timestamp_header, signature_header)) = (key?, names?);
    Some(super::Signer::new(&key, timestamp_header, signature_header))
}

fn read_certificates(path: &Path) -> Result<Vec<Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certificates = Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The URL for messages: without user name and password, and with the value of every
/// query parameter replaced by `REDACTED` (API keys are often put there).
pub(super) fn display_uri(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "REDACTED")));
    }
    url.to_string()
}

/// Standard base64 with padding (RFC 4648), for basic auth.
pub(super) fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}
