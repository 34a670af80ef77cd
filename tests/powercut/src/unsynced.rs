//! The data written to one file and not yet synced: what the page cache holds and a
//! power cut loses.

/// Unsynced writes of one file, over the bytes the disk (the backing file) holds.
#[derive(Debug, Default)]
pub struct Unsynced {
    /// `(offset, bytes)` in the order they were written: a later write wins where two
    /// overlap. A write that continues the last one is merged into it, and a write wholly
    /// covered by a later one is dropped, so appending and rewriting a small file in
    /// place (a ledger) keep the list short.
    writes: Vec<(u64, Vec<u8>)>,
}

impl Unsynced {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Bytes held (what a power cut would drop).
    pub fn bytes(&self) -> u64 {
        self.writes.iter().map(|(_, d)| d.len() as u64).sum()
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.writes
            .retain(|(o, d)| !(offset <= *o && *o + d.len() as u64 <= end));
        if let Some((o, d)) = self.writes.last_mut()
            && *o + d.len() as u64 == offset
        {
            d.extend_from_slice(data);
            return;
        }
        self.writes.push((offset, data.to_vec()));
    }

    /// The file's length as readers see it, over `durable_len` bytes on the disk: unsynced
    /// appends make it longer (the disk's length grows only when they are synced).
    pub fn len_over(&self, durable_len: u64) -> u64 {
        self.writes
            .iter()
            .map(|(o, d)| o + d.len() as u64)
            .fold(durable_len, u64::max)
    }

    /// A truncation to `len` (applied to the disk at once, as metadata): nothing unsynced
    /// stays past it.
    pub fn truncate(&mut self, len: u64) {
        self.writes.retain_mut(|(o, d)| {
            if *o >= len {
                return false;
            }
            d.truncate(usize::try_from(len - *o).unwrap_or(usize::MAX));
            true
        });
    }

    /// Lays the unsynced writes over `buf`, which holds the disk's bytes from `offset`
    /// (zeros past the disk's end): what a read sees.
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for (o, d) in &self.writes {
            let from = offset.max(*o);
            let to = end.min(*o + d.len() as u64);
            if from < to {
                let (b, s) = ((from - offset) as usize, (from - *o) as usize);
                let n = (to - from) as usize;
                buf[b..b + n].copy_from_slice(&d[s..s + n]);
            }
        }
    }

    /// Takes the writes to apply to the disk, in order (an fsync).
    pub fn take(&mut self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader sees of a file whose disk holds `disk`.
    fn view(u: &Unsynced, disk: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; u.len_over(disk.len() as u64) as usize];
        buf[..disk.len()].copy_from_slice(disk);
        u.overlay(0, &mut buf);
        buf
    }

    /// The disk after an fsync.
    fn synced(mut u: Unsynced, disk: &[u8]) -> Vec<u8> {
        let mut disk = disk.to_vec();
        for (o, d) in u.take() {
            let end = o as usize + d.len();
            if disk.len() < end {
                disk.resize(end, 0);
            }
            disk[o as usize..end].copy_from_slice(&d);
        }
        disk
    }

    #[test]
    fn reads_see_unsynced_writes_over_the_disk_and_past_its_end() {
        let mut u = Unsynced::default();
        u.write(2, b"XY");
        u.write(6, b"tail");
        assert_eq!(view(&u, b"abcdef"), b"abXYeftail");
        assert_eq!(u.bytes(), 6);
        assert_eq!(synced(u, b"abcdef"), b"abXYeftail");
    }

    #[test]
    fn a_later_write_wins_where_writes_overlap() {
        let mut u = Unsynced::default();
        u.write(0, b"aaaa");
        u.write(2, b"bbbb");
        u.write(1, b"c");
        assert_eq!(view(&u, b""), b"acbbbb");
        assert_eq!(synced(u, b""), b"acbbbb");
    }

    #[test]
    fn appends_merge_and_rewrites_in_place_replace_the_covered_write() {
        let mut u = Unsynced::default();
        for i in 0..100u8 {
            u.write(u64::from(i), &[i]);
        }
        assert_eq!(u.writes.len(), 1);
        let mut ledger = Unsynced::default();
        for i in 0..100u8 {
            ledger.write(0, &[i; 28]);
        }
        assert_eq!(ledger.writes.len(), 1);
        assert_eq!(view(&ledger, b""), [99; 28]);
    }

    #[test]
    fn a_truncate_cuts_unsynced_writes_past_it() {
        let mut u = Unsynced::default();
        u.write(0, b"0123456789");
        u.write(20, b"far");
        u.truncate(4);
        assert_eq!(u.len_over(4), 4);
        assert_eq!(view(&u, b"abcd"), b"0123");
        u.truncate(0);
        assert!(u.is_empty());
    }

    #[test]
    fn reads_of_a_window_take_only_their_part() {
        let mut u = Unsynced::default();
        u.write(0, b"0123456789");
        let mut buf = *b"......";
        u.overlay(3, &mut buf);
        assert_eq!(&buf, b"345678");
        let mut far = [0u8; 4];
        u.overlay(100, &mut far);
        assert_eq!(far, [0; 4]);
    }
}
