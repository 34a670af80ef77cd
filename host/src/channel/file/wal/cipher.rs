//! Encryption at rest: AES-256-GCM per record (`ring`), keys and key checks.

use super::*;

/// AES-256-GCM record encryption (cheap to clone).
#[derive(Clone)]
pub struct Cipher {
    pub(super) key: Arc<LessSafeKey>,
    pub(super) check: [u8; 8],
    pub(super) rng: SystemRandom,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Cipher {
    /// A cipher from exactly 32 raw key bytes.
    pub fn from_key_bytes(key: &[u8]) -> Result<Cipher> {
        Self::build(key, "<key bytes>")
    }

    /// A cipher from the contents of a key file: 32 raw bytes, or 64 hex digits optionally
    /// followed by whitespace / a newline.
    pub fn from_hex_or_raw(contents: &[u8]) -> Result<Cipher> {
        Self::parse(contents, "<key bytes>")
    }

    /// Reads a key file (see [`Cipher::from_hex_or_raw`]).
    pub fn from_key_file(path: &Path) -> Result<Cipher> {
        crate::files::warn_if_not_private(path, "channel encryption key file");
        let contents = fs::read(path).map_err(io_err("read key file", path))?;
        Self::parse(&contents, &path.display().to_string())
    }

    pub(super) fn parse(contents: &[u8], origin: &str) -> Result<Cipher> {
        let mut key = crate::files::parse_key(contents).map_err(|reason| WalError::InvalidKey {
            origin: origin.to_string(),
            reason,
        })?;
        let cipher = Self::build(&key, origin);
        key.fill(0);
        cipher
    }

    pub(super) fn build(key: &[u8], origin: &str) -> Result<Cipher> {
        let invalid = |reason: String| WalError::InvalidKey {
            origin: origin.to_string(),
            reason,
        };
        if key.len() != 32 {
            return Err(invalid(format!("expected 32 bytes, found {}", key.len())));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| invalid("rejected by AES-256-GCM".to_string()))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(KEY_CHECK_DOMAIN);
        ctx.update(key);
        let digest = ctx.finish();
        let mut check = [0u8; 8];
        check.copy_from_slice(&digest.as_ref()[..8]);
        Ok(Cipher {
            key: Arc::new(LessSafeKey::new(unbound)),
            check,
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `buf[start + NONCE_LEN..]` in place, writing a fresh nonce at
    /// `buf[start..start + NONCE_LEN]` and appending the tag.
    pub(super) fn seal(
        &self,
        buf: &mut Vec<u8>,
        start: usize,
        items: u32,
        path: &Path,
    ) -> Result<()> {
        let crypto = || WalError::Crypto {
            path: path.to_path_buf(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| crypto())?;
        buf[start..start + NONCE_LEN].copy_from_slice(&nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(items.to_le_bytes()),
                &mut buf[start + NONCE_LEN..],
            )
            .map_err(|_| crypto())?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts a stored payload in place; on success `buf` holds the plaintext.
    pub(super) fn open(&self, buf: &mut Vec<u8>, items: u32) -> bool {
        if buf.len() < CRYPTO_OVERHEAD {
            return false;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[..NONCE_LEN]);
        let plain_len = match self.key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(items.to_le_bytes()),
            &mut buf[NONCE_LEN..],
        ) {
            Ok(plain) => plain.len(),
            Err(_) => return false,
        };
        buf.copy_within(NONCE_LEN..NONCE_LEN + plain_len, 0);
        buf.truncate(plain_len);
        true
    }
}
