//! The character rules: what is removed from text and from raw bytes.

const ESC: char = '\x1b';

/// Removes control characters, invisible format characters and ANSI escape sequences,
/// putting `replacement` in place of each removed character or sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripper {
    pub keep_tabs: bool,
    pub replacement: String,
}

impl Stripper {
    /// Whether `c` is removed: C0 controls (but a tab when `keep_tabs`), DEL, C1
    /// controls, zero-width characters, word joiner, BOM and bidi controls.
    pub fn is_removed(&self, c: char) -> bool {
        match c {
            '\t' => !self.keep_tabs,
            '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
            // Zero-width space, non-joiner, joiner; left-to-right and right-to-left marks.
            '\u{200b}'..='\u{200f}' => true,
            // Bidi embeddings, overrides and isolates.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
            // Word joiner, byte order mark (zero-width no-break space).
            '\u{2060}' | '\u{feff}' => true,
            _ => false,
        }
    }

    /// Whether a byte can start a removed character: a fast test that lets clean text
    /// through without decoding it.
    fn may_start_removed(&self, b: u8) -> bool {
        match b {
            b'\t' => !self.keep_tabs,
            // C0, DEL; 0xC2 leads C1 controls, 0xE2 the U+2xxx ones, 0xEF the BOM.
            0..=0x1f | 0x7f | 0xc2 | 0xe2 | 0xef => true,
            _ => false,
        }
    }

    /// Whether cleaning would change `text`.
    pub fn needs_cleaning(&self, text: &str) -> bool {
        text.bytes().any(|b| self.may_start_removed(b)) && text.chars().any(|c| self.is_removed(c))
    }

    /// The cleaned text and the number of characters removed, or `None` when nothing is
    /// removed.
    pub fn clean_str(&self, text: &str) -> Option<(String, u64)> {
        if !self.needs_cleaning(text) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut removed = 0;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == ESC {
                removed += 1 + skip_escape(&mut chars);
                out.push_str(&self.replacement);
            } else if self.is_removed(c) {
                removed += 1;
                out.push_str(&self.replacement);
            } else {
                out.push(c);
            }
        }
        Some((out, removed))
    }

    /// Cleans bytes that are not UTF-8: only ASCII control bytes (C0 but a kept tab, and
    /// DEL) are removed; every other byte stays.
    pub fn clean_bytes(&self, bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
        let is_removed = |b: u8| (b < 0x20 && !(self.keep_tabs && b == b'\t')) || b == 0x7f;
        if !bytes.iter().any(|&b| is_removed(b)) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut removed = 0;
        for &b in bytes {
            if is_removed(b) {
                removed += 1;
                out.extend_from_slice(self.replacement.as_bytes());
            } else {
                out.push(b);
            }
        }
        Some((out, removed))
    }
}

/// Skips the rest of an escape sequence after its ESC and returns how many characters it
/// skipped: `[`, parameter and intermediate bytes and the final byte of a CSI sequence
/// (`ESC [ 1 ; 31 m`), or the one character of any other escape (`ESC c`). A CSI
/// sequence cut short by any other character ends before that character.
fn skip_escape(chars: &mut std::str::Chars<'_>) -> u64 {
    let peek = |chars: &std::str::Chars<'_>| chars.as_str().chars().next();
    match peek(chars) {
        None => 0,
        Some('[') => {
            chars.next();
            let mut skipped = 1;
            while let Some(c) = peek(chars) {
                match c {
                    // Parameter bytes 0x30–0x3F, intermediate bytes 0x20–0x2F.
                    '\x20'..='\x3f' => {}
                    // The final byte ends the sequence.
                    '\x40'..='\x7e' => {
                        chars.next();
                        return skipped + 1;
                    }
                    _ => return skipped,
                }
                chars.next();
                skipped += 1;
            }
            skipped
        }
        Some(_) => {
            chars.next();
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripper(keep_tabs: bool, replacement: &str) -> Stripper {
        Stripper {
            keep_tabs,
            replacement: replacement.to_owned(),
        }
    }

    fn clean(text: &str) -> String {
        stripper(true, "")
            .clean_str(text)
            .map_or_else(|| text.to_owned(), |(s, _)| s)
    }

    #[test]
    fn clean_text_is_untouched() {
        let s = stripper(true, "");
        for text in [
            "",
            "plain ascii",
            "tab\there",
            "héllo wörld 😀",
            "€ ™ \u{a0} \u{2028}",
        ] {
            assert_eq!(s.clean_str(text), None, "{text:?}");
        }
    }

    #[test]
    fn controls_are_removed_and_counted() {
        let s = stripper(true, "");
        assert_eq!(
            s.clean_str("a\0b\x01c\nd\re\x7ff\u{85}g\u{9f}h"),
            Some(("abcdefgh".to_owned(), 7))
        );
        assert_eq!(s.clean_str("keep\ttab"), None);
        assert_eq!(
            stripper(false, "").clean_str("no\ttab"),
            Some(("notab".to_owned(), 1))
        );
    }

    #[test]
    fn invisible_characters_are_removed() {
        let text = "a\u{200b}b\u{200c}c\u{200d}d\u{2060}e\u{feff}f\u{200e}g\u{200f}h\u{202a}i\u{202e}j\u{2066}k\u{2069}l";
        assert_eq!(
            stripper(true, "").clean_str(text),
            Some(("abcdefghijkl".to_owned(), 11))
        );
        // Neighbours of the removed ranges stay.
        assert_eq!(
            clean("\u{200a}\u{2010}\u{2029}\u{202f}\u{2065}\u{206a}\u{fefe}"),
            "\u{200a}\u{2010}\u{2029}\u{202f}\u{2065}\u{206a}\u{fefe}"
        );
        assert_eq!(clean("\u{a0}\u{7e}"), "\u{a0}~");
    }

    #[test]
    fn ansi_sequences_are_removed_whole() {
        let s = stripper(true, "");
        assert_eq!(
            s.clean_str("\x1b[1;31mERROR\x1b[0m done"),
            Some(("ERROR done".to_owned(), 11))
        );
        assert_eq!(clean("\x1b[2Kline"), "line");
        assert_eq!(clean("\x1b[?25hcursor"), "cursor");
        assert_eq!(clean("\x1b[38;5;196mred"), "red");
        assert_eq!(clean("\x1b[ qspace-intermediate"), "space-intermediate");
        assert_eq!(clean("\x1bcreset"), "reset");
        assert_eq!(clean("\x1b7saved"), "saved");
        assert_eq!(clean("\x1béx"), "x");
        assert_eq!(clean("end\x1b"), "end");
        assert_eq!(clean("end\x1b["), "end");
        // A sequence cut short keeps what interrupts it (cleaned as usual).
        assert_eq!(clean("\x1b[31\u{e9}x"), "\u{e9}x");
        assert_eq!(clean("\x1b[31\nx"), "x");
        assert_eq!(clean("\x1b\x1b[0mx"), "[0mx");
    }

    #[test]
    fn replacement_stands_for_each_character_or_sequence() {
        let s = stripper(true, "?");
        assert_eq!(
            s.clean_str("a\r\nb\x1b[0mc\u{200b}"),
            Some(("a??b?c?".to_owned(), 7))
        );
        assert_eq!(
            stripper(true, "\u{fffd}").clean_str("x\0y"),
            Some(("x\u{fffd}y".to_owned(), 1))
        );
    }

    #[test]
    fn bytes_lose_only_ascii_controls() {
        let s = stripper(true, "");
        assert_eq!(
            s.clean_bytes(b"\xff\x1b[0m\x85\tok\r\n\x7f"),
            Some((b"\xff[0m\x85\tok".to_vec(), 4))
        );
        assert_eq!(s.clean_bytes(b"\xff\xfe\x80"), None);
        assert_eq!(
            stripper(false, "_").clean_bytes(b"\xff\t"),
            Some((b"\xff_".to_vec(), 1))
        );
    }
}
