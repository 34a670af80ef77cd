//! The `generator` source: simulates N applications writing logs at the same time —
//! web servers writing combined access lines, services writing log4j-style lines with
//! levels (now and then with terminal colour codes or stray control characters), and
//! daemons writing RFC 3164 syslog lines. Each app is its own task with its own rate;
//! events are named after the app (`access-0`, `app-1`, …).

use super::{Batcher, SourceConfig, SourceContext};
use crate::config::Problems;
use crate::encoding::civil_from_days;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Finest pacing step: a rate is met on average over ticks of at least this length.
const MIN_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratedKind {
    Access,
    App,
    Syslog,
}

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Concurrent simulated applications.
    #[serde(default = "default_apps")]
    pub apps: usize,
    /// Lines per second per application; 0: as fast as the pipeline takes them.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Lines per application before it stops; none: forever.
    pub count: Option<u64>,
    #[serde(default = "default_kinds")]
    pub kinds: Vec<GeneratedKind>,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_apps() -> usize {
    4
}
fn default_rate() -> f64 {
    10.0
}
fn default_kinds() -> Vec<GeneratedKind> {
    vec![
        GeneratedKind::Access,
        GeneratedKind::App,
        GeneratedKind::Syslog,
    ]
}
fn default_seed() -> u64 {
    0x5eed
}

impl SourceConfig for GeneratorConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.range("apps", self.apps, 1, 10_000);
        if self.rate != 0.0
            && !(self.rate.is_finite() && (0.001..=10_000_000.0).contains(&self.rate))
        {
            problems.at(
                "rate",
                "must be between 0.001 and 10000000 lines per second, or 0 for as fast as possible",
            );
        }
        if self.kinds.is_empty() {
            problems.at("kinds", "name at least one kind");
        }
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let SourceContext {
                name,
                batcher,
                shutdown,
                ..
            } = cx;
            run(&name, &config, batcher.clone_for_task(), &shutdown).await;
            let mut batcher = batcher;
            batcher.flush().await;
        })
    }
}

async fn run(
    source: &str,
    generator_spec: &GeneratorConfig,
    batcher: Batcher,
    shutdown: &CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..generator_spec.apps {
        let kind = generator_spec.kinds[i % generator_spec.kinds.len()];
        let name: Arc<str> = Arc::from(format!("{}-{i}", kind_name(kind)));
        let app = App {
            kind,
            rng: Rng::new(
                generator_spec
                    .seed
                    .wrapping_add(i as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            host: format!("{source}-{i:02}"),
        };
        let batcher = batcher.clone_for_task();
        let rate = Some(generator_spec.rate).filter(|r| *r > 0.0);
        let (count, shutdown) = (generator_spec.count, shutdown.clone());
        tasks.spawn(async move { app.run(name, batcher, rate, count, shutdown).await });
    }
    drop(batcher);
    while tasks.join_next().await.is_some() {}
}

fn kind_name(kind: GeneratedKind) -> &'static str {
    match kind {
        GeneratedKind::Access => "access",
        GeneratedKind::App => "app",
        GeneratedKind::Syslog => "syslog",
    }
}

struct App {
    kind: GeneratedKind,
    rng: Rng,
    host: String,
}

impl App {
    async fn run(
        mut self,
        name: Arc<str>,
        mut batcher: Batcher,
        rate: Option<f64>,
        count: Option<u64>,
        shutdown: CancellationToken,
    ) {
        let mut written = 0u64;
        let remaining = |written: u64| count.map_or(u64::MAX, |c| c.saturating_sub(written));
        match rate {
            None => {
                while remaining(written) > 0 && !shutdown.is_cancelled() {
                    let line = self.line();
                    batcher.push_named(name.clone(), line).await;
                    written += 1;
                    if written.is_multiple_of(256) {
                        tokio::task::yield_now().await;
                    }
                }
            }
            Some(rate) => {
                let tick = Duration::from_secs_f64(1.0 / rate).max(MIN_TICK);
                let per_tick = rate * tick.as_secs_f64();
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut owed = 0.0f64;
                while remaining(written) > 0 {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = batcher.due() => { batcher.flush().await; continue; }
                        _ = interval.tick() => {}
                    }
                    owed += per_tick;
                    while owed >= 1.0 && remaining(written) > 0 {
                        owed -= 1.0;
                        let line = self.line();
                        batcher.push_named(name.clone(), line).await;
                        written += 1;
                    }
                }
            }
        }
        batcher.flush().await;
    }

    fn line(&mut self) -> Vec<u8> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self.kind {
            GeneratedKind::Access => self.access_line(now),
            GeneratedKind::App => self.app_line(now),
            GeneratedKind::Syslog => self.syslog_line(now),
        }
        .into_bytes()
    }

    fn access_line(&mut self, now: Duration) -> String {
        const PATHS: &[&str] = &[
            "/",
            "/index.html",
            "/api/v1/orders",
            "/api/v1/orders/{id}",
            "/api/v1/cart",
            "/static/app.js",
            "/static/style.css",
            "/images/logo.png",
            "/login",
            "/search?q=edge+gateway",
            "/health",
        ];
        const METHODS: &[(&str, u32)] = &[
            ("GET", 80),
            ("POST", 12),
            ("PUT", 4),
            ("DELETE", 2),
            ("HEAD", 2),
        ];
        const STATUSES: &[(u16, u32)] = &[
            (200, 78),
            (304, 8),
            (301, 2),
            (404, 6),
            (401, 2),
            (500, 3),
            (503, 1),
        ];
        const AGENTS: &[&str] = &[
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
            "curl/8.4.0",
            "Prometheus/2.48.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ];
        let r = &mut self.rng;
        let ip = format!(
            "{}.{}.{}.{}",
            10 + r.below(200),
            r.below(256),
            r.below(256),
            1 + r.below(254)
        );
        let method = r.weighted(METHODS);
        let path = r.pick(PATHS).replace("{id}", &r.below(100_000).to_string());
        let status = r.weighted(STATUSES);
        let size = if status == 304 {
            "-".to_owned()
        } else {
            (200 + r.below(50_000)).to_string()
        };
        let referrer = if r.below(3) == 0 {
            "-".to_owned()
        } else {
            format!("https://{}/", self.host)
        };
        let user = if r.below(10) == 0 { "alice" } else { "-" };
        format!(
            "{ip} - {user} [{}] \"{method} {path} HTTP/1.1\" {status} {size} \"{referrer}\" \"{}\"",
            clf_time(now),
            r.pick(AGENTS)
        )
    }

    fn app_line(&mut self, now: Duration) -> String {
        const LEVELS: &[(&str, u32)] = &[
            ("DEBUG", 20),
            ("INFO", 60),
            ("WARN", 12),
            ("ERROR", 7),
            ("FATAL", 1),
        ];
        const LOGGERS: &[&str] = &[
            "com.shop.OrderService",
            "com.shop.PaymentClient",
            "com.shop.Inventory",
            "io.edge.SensorPoller",
            "io.edge.Uplink",
        ];
        let r = &mut self.rng;
        let level = r.weighted(LEVELS);
        let message = match level {
            "DEBUG" => format!(
                "cache lookup key=sku-{} hit={}",
                r.below(9999),
                r.below(2) == 1
            ),
            "INFO" => format!("order {} placed in {} ms", r.below(1_000_000), r.below(400)),
            "WARN" => format!(
                "slow response from upstream after {} ms (retry {})",
                500 + r.below(4000),
                r.below(3)
            ),
            "ERROR" => format!(
                "payment {} declined: \u{1b}[31mcard expired\u{1b}[0m",
                r.below(1_000_000)
            ),
            _ => "uplink lost: giving up after 5 retries\u{7}".to_owned(),
        };
        let message = if r.below(50) == 0 {
            format!("{message}\u{0}\u{8}")
        } else {
            message
        };
        format!(
            "{} {level:<5} [worker-{}] {} - {message}",
            iso_time(now),
            r.below(8),
            r.pick(LOGGERS)
        )
    }

    fn syslog_line(&mut self, now: Duration) -> String {
        const PROGRAMS: &[(&str, &[&str])] = &[
            (
                "sshd",
                &[
                    "Accepted publickey for admin from 10.0.3.7 port 51234 ssh2",
                    "Failed password for invalid user pi from 203.0.113.9 port 40022 ssh2",
                ],
            ),
            (
                "kernel",
                &[
                    "usb 1-1: new high-speed USB device number 5 using ehci-pci",
                    "eth0: link up, 100Mbps, full-duplex",
                ],
            ),
            ("CRON", &["(root) CMD (/usr/local/bin/rotate-logs)"]),
            (
                "dnsmasq-dhcp",
                &["DHCPACK(br0) 192.168.1.23 02:42:ac:11:00:02 kiosk-3"],
            ),
        ];
        let r = &mut self.rng;
        let (program, messages) = PROGRAMS[r.below(PROGRAMS.len() as u64) as usize];
        let message = r.pick(messages);
        let pid = 100 + r.below(30_000);
        format!(
            "{} {} {program}[{pid}]: {message}",
            syslog_time(now),
            self.host
        )
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn civil(now: Duration) -> (i64, u32, u32, u64, u64, u64, u32) {
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    (
        y,
        m,
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        now.subsec_millis(),
    )
}

/// `17/May/2015:10:05:03 +0000`
fn clf_time(now: Duration) -> String {
    let (y, m, d, h, mi, s, _) = civil(now);
    format!(
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[m as usize - 1]
    )
}

/// `2015-05-17T10:05:03.123Z`
fn iso_time(now: Duration) -> String {
    let (y, m, d, h, mi, s, ms) = civil(now);
    format!("{y}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `May 17 10:05:03`
fn syslog_time(now: Duration) -> String {
    let (_, m, d, h, mi, s, _) = civil(now);
    format!("{} {d:>2} {h:02}:{mi:02}:{s:02}", MONTHS[m as usize - 1])
}

/// xorshift64*: deterministic per seed, good enough for test traffic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(u64::from(total)) as u32;
        for (item, w) in items {
            if x < *w {
                return *item;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_like_the_real_logs() {
        let t = Duration::from_millis(1_431_857_103_250);
        assert_eq!(clf_time(t), "17/May/2015:10:05:03 +0000");
        assert_eq!(iso_time(t), "2015-05-17T10:05:03.250Z");
        assert_eq!(syslog_time(t), "May 17 10:05:03");
    }

    #[test]
    fn generated_lines_have_the_expected_shapes() {
        let mut app = App {
            kind: GeneratedKind::Access,
            rng: Rng::new(7),
            host: "gw-01".into(),
        };
        let t = Duration::from_secs(1_700_000_000);
        for _ in 0..50 {
            let a = app.access_line(t);
            assert!(a.contains("] \"") && a.contains(" HTTP/1.1\" "), "{a}");
            let l = app.app_line(t);
            assert!(l.starts_with("2023-11-14T22:13:20.000Z "), "{l}");
            let s = app.syslog_line(t);
            assert!(s.starts_with("Nov 14 22:13:20 gw-01 "), "{s}");
        }
    }
}
