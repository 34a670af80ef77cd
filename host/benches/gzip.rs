//! gzip levels on the http sink's bodies: 1,000 real access-log lines
//! (`tests/data/apache_access/apache_logs`) as NDJSON events, compressed by
//! `runnel::compress::Gzip` (ISA-L's igzip at level 1 when built with it, libdeflate
//! otherwise) at levels 1, 3, 6 and 9: size against the JSON, time per batch (best of 5
//! rounds of 20), and MB/s. A memcpy of the same bytes, timed in the same run, is the
//! machine-independent reference. BENCHMARKS.md section 3.
//!
//! Run with `cargo bench -p runnel --bench gzip`.

use runnel::compress::Gzip;
use runnel::encoding::Format;
use runnel::event::Event;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn best_of<F: FnMut()>(rounds: usize, per_round: u32, mut f: F) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_round {
                f();
            }
            started.elapsed() / per_round
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let log = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/apache_access/apache_logs"),
    )
    .expect("the vendored access log");
    let name: Arc<str> = Arc::from("access");
    let mut plain = Vec::new();
    for line in log.lines().take(1000) {
        Format::Json.encode(
            &Event::from_body(name.clone(), line.as_bytes().to_vec()),
            &mut plain,
        );
    }
    let mb = plain.len() as f64 / 1e6;
    let mut copy = vec![0u8; plain.len()];
    let memcpy = best_of(5, 200, || {
        copy.copy_from_slice(black_box(&plain));
        black_box(&copy);
    });
    println!(
        "{} bytes of NDJSON (1000 events); memcpy {:?} ({:.0} MB/s)",
        plain.len(),
        memcpy,
        mb / memcpy.as_secs_f64()
    );
    for level in [1, 3, 6, 9] {
        let mut gzip = Gzip::new(level);
        let mut out = Vec::new();
        let per = best_of(5, 20, || {
            out.clear();
            gzip.compress(black_box(&plain), &mut out);
        });
        println!(
            "level {level} ({}): {} bytes ({:.1}% of the JSON), {per:?} per batch, {:.0} MB/s, {:.0}x memcpy",
            gzip.implementation(),
            out.len(),
            100.0 * out.len() as f64 / plain.len() as f64,
            mb / per.as_secs_f64(),
            per.as_secs_f64() / memcpy.as_secs_f64()
        );
    }
}
