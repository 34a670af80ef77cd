//! Signed plugins: Ed25519 (`ring`) detached signatures, so a fleet loads only the
//! plugins its operators signed.
//!
//! - `runnel plugin keygen --out KEY` writes the private key `KEY` (PKCS#8, readable by
//!   its owner only) and the public key `KEY.pub` (64 hex digits and a newline).
//! - `runnel plugin sign PLUGIN.wasm --key KEY` writes `PLUGIN.wasm.sig`: the Ed25519
//!   signature of the file's bytes, 128 hex digits and a newline.
//! - With `[agent] require_signed = true` and `trusted_keys = ["KEY.pub", ...]`, a plugin
//!   loaded from a file is refused — at start and at every reload — unless
//!   `PLUGIN.wasm.sig` verifies against one of the trusted keys. Built-in plugins are
//!   part of the agent's binary and need no signature.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::path::{Path, PathBuf};

/// Why a plugin's signature is not accepted, or a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{path} is not signed: no {sig} (sign it with `runnel plugin sign`)")]
    Unsigned { path: String, sig: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a signature: expected 128 hex digits")]
    Malformed { path: String },
    #[error(
        "the signature {sig} does not verify with any trusted key: the plugin was changed after it was signed, or signed with a key that is not trusted"
    )]
    NotTrusted { sig: String },
    #[error(
        "{path} is precompiled plugin code (`runnel plugin compile`), which runs as native code: the agent loads it only when it is signed by a trusted key (`require_signed = true` and `trusted_keys` in [agent])"
    )]
    CompiledUnsigned { path: String },
    #[error("{path} is not an Ed25519 public key: expected 64 hex digits")]
    BadPublicKey { path: String },
    #[error("{path} is not an Ed25519 private key (PKCS#8)")]
    BadPrivateKey { path: String },
    #[error("cannot make a key: {0}")]
    KeyGen(String),
}

/// The public keys plugins must be signed with.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(PathBuf, Vec<u8>)>,
}

impl TrustedKeys {
    /// Reads public key files (as `keygen` writes them).
    pub fn load(paths: &[PathBuf]) -> Result<Self, SignatureError> {
        let keys = paths
            .iter()
            .map(|p| {
                let text = read_text(p)?;
                let key = crate::files::unhex(text.trim().as_bytes())
                    .filter(|k| k.len() == 32)
                    .ok_or_else(|| SignatureError::BadPublicKey {
                        path: p.display().to_string(),
                    })?;
                Ok((p.clone(), key))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Checks the detached signature `<path>.sig` of the plugin bytes `wasm`.
    pub fn verify<'a>(&self, path: &Path, wasm: &'a [u8]) -> Result<Signed<'a>, SignatureError> {
        let sig_path = signature_path(path);
        let text = match std::fs::read_to_string(&sig_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SignatureError::Unsigned {
                    path: path.display().to_string(),
                    sig: sig_path.display().to_string(),
                });
            }
            Err(source) => {
                return Err(SignatureError::Read {
                    path: sig_path.display().to_string(),
                    source,
                });
            }
        };
        let signature = crate::files::unhex(text.trim().as_bytes())
            .filter(|s| s.len() == 64)
            .ok_or_else(|| SignatureError::Malformed {
                path: sig_path.display().to_string(),
            })?;
        let trusted = self.keys.iter().any(|(_, key)| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(wasm, &signature)
                .is_ok()
        });
        if trusted {
            Ok(Signed(wasm))
        } else {
            Err(SignatureError::NotTrusted {
                sig: sig_path.display().to_string(),
            })
        }
    }
}

/// Plugin bytes whose signature verified against a trusted key: only
/// [`TrustedKeys::verify`] makes one. Precompiled plugins are loaded from nothing else.
#[derive(Clone, Copy)]
pub struct Signed<'a>(&'a [u8]);

impl<'a> Signed<'a> {
    pub fn bytes(self) -> &'a [u8] {
        self.0
    }
}

/// Where the detached signature of `plugin` lives: `<plugin>.sig`.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// Makes a key pair: writes the private key to `out` (mode 0600) and the public key to
/// `out.pub`; returns the public key's path.
pub fn keygen(out: &Path) -> Result<PathBuf, SignatureError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| SignatureError::KeyGen("the system random source failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| SignatureError::KeyGen("ring rejected its own key".into()))?;
    write_private(out, pkcs8.as_ref())?;
    let public = {
        let mut name = out.as_os_str().to_os_string();
        name.push(".pub");
        PathBuf::from(name)
    };
    write(
        &public,
        format!("{}\n", crate::files::hex(pair.public_key().as_ref())).as_bytes(),
    )?;
    Ok(public)
}

/// Signs the file `plugin` with the private key file `key`; writes `<plugin>.sig` and
/// returns its path.
pub fn sign(plugin: &Path, key: &Path) -> Result<PathBuf, SignatureError> {
    crate::files::warn_if_not_private(key, "signing key");
    let pkcs8 = std::fs::read(key).map_err(|source| SignatureError::Read {
        path: key.display().to_string(),
        source,
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SignatureError::BadPrivateKey {
        path: key.display().to_string(),
    })?;
    let wasm = std::fs::read(plugin).map_err(|source| SignatureError::Read {
        path: plugin.display().to_string(),
        source,
    })?;
    let sig_path = signature_path(plugin);
    let signature = pair.sign(&wasm);
    write(
        &sig_path,
        format!("{}\n", crate::files::hex(signature.as_ref())).as_bytes(),
    )?;
    Ok(sig_path)
}

fn read_text(path: &Path) -> Result<String, SignatureError> {
    std::fs::read_to_string(path).map_err(|source| SignatureError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a file whole: an agent watching for a new signature never reads half of one.
/// Signatures and public keys are for others to read: their mode follows the umask.
fn write(path: &Path, bytes: &[u8]) -> Result<(), SignatureError> {
    crate::files::replace_shared(path, &[bytes]).map_err(|source| SignatureError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SignatureError> {
    use std::io::Write;
    let err = |source| SignatureError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut f = crate::files::private_file()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_plugins_verify_and_changed_or_unsigned_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("fleet.key");
        let public = keygen(&key).unwrap();
        assert_eq!(public, dir.path().join("fleet.key.pub"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is its owner's only");
        let trusted = TrustedKeys::load(std::slice::from_ref(&public)).unwrap();

        let plugin = dir.path().join("p.wasm");
        std::fs::write(&plugin, b"\0asm component bytes").unwrap();
        assert!(matches!(
            trusted.verify(&plugin, b"\0asm component bytes"),
            Err(SignatureError::Unsigned { .. })
        ));
        sign(&plugin, &key).unwrap();
        trusted.verify(&plugin, b"\0asm component bytes").unwrap();
        // One byte changed after signing.
        assert!(matches!(
            trusted.verify(&plugin, b"\0asm component bytez"),
            Err(SignatureError::NotTrusted { .. })
        ));
        // Signed with another key.
        let other = dir.path().join("other.key");
        keygen(&other).unwrap();
        sign(&plugin, &other).unwrap();
        assert!(matches!(
            trusted.verify(&plugin, b"\0asm component bytes"),
            Err(SignatureError::NotTrusted { .. })
        ));
        // A damaged signature file.
        std::fs::write(signature_path(&plugin), "zz\n").unwrap();
        assert!(matches!(
            trusted.verify(&plugin, b"\0asm component bytes"),
            Err(SignatureError::Malformed { .. })
        ));
        // keygen never overwrites a key.
        assert!(keygen(&key).is_err());
    }

    #[test]
    fn bad_public_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pub");
        std::fs::write(&p, "abcd\n").unwrap();
        let e = TrustedKeys::load(&[p]).unwrap_err();
        assert!(e.to_string().contains("k.pub"), "{e}");
    }
}
