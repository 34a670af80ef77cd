//! [`Interner`]: shared copies of the strings a source's events repeat (app names,
//! hosts, units, tag keys), so that events share them rather than allocate each.

use crate::event::Tags;
use std::collections::HashMap;
use std::sync::Arc;

/// Shared copies of recent strings; forgets them all past a bound (memory stays small
/// when a field takes ever new values, like a PID).
#[derive(Clone, Default)]
pub struct Interner(HashMap<Box<str>, Arc<str>>);

impl Interner {
    const BOUND: usize = 4096;

    /// The shared copy of `text`.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        if self.0.len() >= Self::BOUND {
            self.0.clear();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(text.into(), shared.clone());
        shared
    }

    /// Sets a tag, its key and value shared.
    pub fn tag(&mut self, tags: &mut Tags, key: &str, value: &str) {
        tags.set(self.get(key), self.get(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_stays_bounded() {
        let mut strings = Interner::default();
        let a = strings.get("sshd");
        assert!(Arc::ptr_eq(&a, &strings.get("sshd")));
        for pid in 0..10_000 {
            strings.get(&pid.to_string());
        }
        assert!(strings.0.len() <= Interner::BOUND);
    }
}
