//! gzip for sinks that compress whole batches: each batch one gzip member.
//!
//! Level 1, the default, uses ISA-L's igzip (the `isal` feature, on by default): on the
//! access-log NDJSON of the benchmarks it compresses at ~770 MB/s against libdeflate's
//! ~260 MB/s at its level 1, for ~10% more bytes (a ratio of 0.093 instead of 0.085;
//! BENCHMARKS.md section 3). Other levels (and builds without the feature) use
//! libdeflate, whose higher levels give the smaller output a bandwidth-bound site wants.

/// A reusable gzip compressor at one level.
pub struct Gzip {
    engine: Engine,
}

enum Engine {
    #[cfg(feature = "isal")]
    Igzip(igzip::Igzip),
    Libdeflate(libdeflater::Compressor),
}

impl Gzip {
    /// `level`: 0 (store) to 12 (libdeflate's range; configs allow 0 to 9).
    pub fn new(level: u32) -> Self {
        #[cfg(feature = "isal")]
        if level == 1 {
            return Self {
                engine: Engine::Igzip(igzip::Igzip::new()),
            };
        }
        Self {
            engine: Engine::Libdeflate(libdeflate(level)),
        }
    }

    /// Which implementation compresses (for logs and tests).
    pub fn implementation(&self) -> &'static str {
        match self.engine {
            #[cfg(feature = "isal")]
            Engine::Igzip(_) => "isa-l igzip",
            Engine::Libdeflate(_) => "libdeflate",
        }
    }

    /// Appends `input` as one gzip member to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match &mut self.engine {
            #[cfg(feature = "isal")]
            Engine::Igzip(igzip) => {
                let start = out.len();
                out.resize(start + igzip::bound(input.len()), 0);
                if let Some(written) = igzip.compress(input, &mut out[start..]) {
                    out.truncate(start + written);
                    return;
                }
                // Past ISA-L's 4 GiB limits (or its bound): libdeflate takes it.
                out.truncate(start);
                let mut fallback = libdeflate(1);
                deflate_into(&mut fallback, input, out);
            }
            Engine::Libdeflate(c) => deflate_into(c, input, out),
        }
    }
}

fn libdeflate(level: u32) -> libdeflater::Compressor {
    let level = libdeflater::CompressionLvl::new(level as i32).unwrap_or_default();
    libdeflater::Compressor::new(level)
}

fn deflate_into(c: &mut libdeflater::Compressor, input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + c.gzip_compress_bound(input.len()), 0);
    // The bound is libdeflate's worst case for this input, so the output fits.
    let written = c.gzip_compress(input, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

#[cfg(feature = "isal")]
mod igzip {
    use isal_sys::igzip_lib as isal;

    /// Output room that always fits one stateless gzip member of `n` input bytes: ISA-L
    /// falls back to stored blocks (5 bytes per 64 KiB) for data that does not shrink;
    /// plus the header, the trailer and slack.
    pub fn bound(n: usize) -> usize {
        n + n / 8192 * 8 + 1024
    }

    /// ISA-L's stateless deflate with gzip framing at level 1, its stream and level
    /// buffer kept between batches.
    pub struct Igzip {
        stream: Box<isal::isal_zstream>,
        level_buf: Vec<u8>,
    }

    // SAFETY: the stream's raw pointers point into the level buffer this value owns,
    // or into the caller's buffers during `compress` only (re-set before each use);
    // nothing in ISA-L ties a stream to a thread. It is never shared (`&mut` use only).
    unsafe impl Send for Igzip {}

    impl Igzip {
        pub fn new() -> Self {
            // SAFETY: `isal_zstream` holds only integers and raw pointers (and structs
            // and arrays of them), for which all-zero bytes are a valid value.
            let stream = unsafe { Box::<isal::isal_zstream>::new_zeroed().assume_init() };
            Self {
                stream,
                level_buf: vec![0; isal::ISAL_DEF_LVL1_DEFAULT as usize],
            }
        }

        /// Compresses all of `input` into `out`; the length written, or `None` when it
        /// did not fit (or a length passes ISA-L's 32-bit counters).
        pub fn compress(&mut self, input: &[u8], out: &mut [u8]) -> Option<usize> {
            let avail_in = u32::try_from(input.len()).ok()?;
            let avail_out = u32::try_from(out.len()).ok()?;
            let level_buf_size = u32::try_from(self.level_buf.len()).ok()?;
            let s: &mut isal::isal_zstream = &mut self.stream;
            // SAFETY: `s` is a valid, exclusively borrowed stream; this sets its fields
            // for a new stateless compression (no pointer is dereferenced).
            unsafe { isal::isal_deflate_stateless_init(s) };
            s.level = 1;
            s.level_buf = self.level_buf.as_mut_ptr();
            s.level_buf_size = level_buf_size;
            s.gzip_flag = isal::IGZIP_GZIP as u16;
            s.flush = isal::NO_FLUSH as u16;
            s.end_of_stream = 1;
            // ISA-L only reads the input (its field is `*mut` in the C struct).
            s.next_in = input.as_ptr().cast_mut();
            s.avail_in = avail_in;
            s.next_out = out.as_mut_ptr();
            s.avail_out = avail_out;
            // SAFETY: the stream was initialised above; `next_in`/`avail_in` describe
            // `input`, `next_out`/`avail_out` describe `out` and `level_buf` the level
            // buffer this compressor owns, all valid for the whole call and not aliased
            // elsewhere. The stream keeps these pointers after the call but is
            // initialised again before its next use.
            let result = unsafe { isal::isal_deflate_stateless(s) };
            (result == isal::COMP_OK as i32 && s.avail_in == 0).then_some(s.total_out as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .unwrap();
        plain
    }

    /// Text that compresses, bytes that do not, and nothing.
    fn inputs() -> Vec<Vec<u8>> {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/apache_access/apache_logs"
        ))
        .unwrap();
        let mut noise = vec![0u8; 300_000];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        vec![text, noise, Vec::new(), b"x".to_vec()]
    }

    #[test]
    fn every_level_writes_one_gzip_member_that_gunzips_to_the_input() {
        for level in [0, 1, 6, 9] {
            let mut gzip = Gzip::new(level);
            for input in inputs() {
                let mut out = b"before".to_vec();
                gzip.compress(&input, &mut out);
                assert_eq!(&out[..6], b"before");
                assert_eq!(
                    gunzip(&out[6..]),
                    input,
                    "level {level}, {} bytes",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn level_one_is_igzip_when_built_in_and_compresses_text() {
        let gzip = Gzip::new(1);
        let expected = if cfg!(feature = "isal") {
            "isa-l igzip"
        } else {
            "libdeflate"
        };
        assert_eq!(gzip.implementation(), expected);
        assert_eq!(Gzip::new(6).implementation(), "libdeflate");
        let text = &inputs()[0];
        let mut out = Vec::new();
        Gzip::new(1).compress(text, &mut out);
        assert!(
            out.len() * 5 < text.len(),
            "{} of {}",
            out.len(),
            text.len()
        );
    }
}
