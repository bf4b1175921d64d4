//! Secrets sealed at rest (issue 13, O2): connection credentials and OAuth
//! tokens are encrypted in the store with a key the operator provides, so
//! a copy of the store file reveals no credential.
//!
//! XChaCha20-Poly1305 (the RustCrypto `chacha20poly1305` crate): a random
//! 192-bit nonce per value, so values need no counter, and an
//! authentication tag, so a changed value fails to open rather than
//! decrypting to garbage. Each value is bound to where it is kept (its
//! table, column and connection id, as associated data): a sealed secret
//! copied onto another connection's row does not open there.
//!
//! A [`Keyring`] holds the current key, which seals, and earlier keys,
//! which still open what they sealed: rotating is putting a new key first
//! and keeping the old one after it until the store is resealed (the host
//! reseals every value under the current key when it opens the store).

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What every sealed value starts with (and the format's version).
const PREFIX: &str = "sealed:v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// One key and its id (the first 8 hex digits of its SHA-256), which each
/// value names so the right key opens it.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; KEY_LEN]) -> Key {
        let digest = Sha256::digest(bytes);
        Key {
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }
}

/// The keys secrets are sealed with: the first seals, all open.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl Keyring {
    /// A key ring from text: keys in base64 (32 bytes each), separated by
    /// new lines, commas or spaces, the current one first; `#` starts a
    /// comment. What a key file or `LEDGERBRIDGE_SEAL_KEY` holds.
    pub fn parse(text: &str) -> anyhow::Result<Keyring> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            for word in line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
            {
                let bytes = B64.decode(word).ok().filter(|b| b.len() == KEY_LEN);
                let Some(bytes) = bytes else {
                    bail!(
                        "line {}: a seal key is 32 random bytes in base64 (44 characters; `ledgerbridge seal-key new` makes one)",
                        n + 1
                    );
                };
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(&bytes);
                keys.push(Key::new(&k));
            }
        }
        if keys.is_empty() {
            bail!("no seal key: expected 32 random bytes in base64");
        }
        Ok(Keyring { keys })
    }

    /// Reads a key file (see [`Keyring::parse`]).
    pub fn from_file(path: &Path) -> anyhow::Result<Keyring> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the seal key file {}", path.display()))?;
        Keyring::parse(&text).with_context(|| format!("the seal key file {}", path.display()))
    }

    /// The key file at `path`, made with a new random key (readable by its
    /// owner only) when there is none.
    pub fn from_file_or_new(path: &Path) -> anyhow::Result<(Keyring, bool)> {
        match std::fs::metadata(path) {
            Ok(_) => Ok((Keyring::from_file(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = new_key();
                write_private(path, &format!("{key}\n"))
                    .with_context(|| format!("creating the seal key file {}", path.display()))?;
                Ok((Keyring::parse(&key)?, true))
            }
            Err(e) => {
                Err(e).with_context(|| format!("reading the seal key file {}", path.display()))
            }
        }
    }

    /// A key ring of one random key, kept nowhere: for stores that live in
    /// memory only.
    pub fn ephemeral() -> Keyring {
        Keyring::parse(&new_key()).expect("a new key parses")
    }

    /// The ids of the keys, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The id of the key values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plain`, bound to `place` (where it is kept).
    pub fn seal(&self, plain: &str, place: &str) -> String {
        let key = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: place.as_bytes(),
                },
            )
            // Encryption fails only for messages over 256 GiB.
            .expect("a secret small enough to seal");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, B64.encode(bytes))
    }

    /// Opens a value [`Keyring::seal`] made for `place`. A value that is not
    /// sealed (kept by a version before sealing) is `Unsealed`.
    pub fn open(&self, value: &str, place: &str) -> Result<Opened, SealError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(Opened::Unsealed(value.to_string()));
        };
        let (id, data) = rest.split_once(':').ok_or(SealError::Damaged)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let bytes = B64.decode(data).map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| SealError::Damaged)?;
        let plain = String::from_utf8(plain).map_err(|_| SealError::Damaged)?;
        if key.id == self.keys[0].id {
            Ok(Opened::Current(plain))
        } else {
            Ok(Opened::Previous(plain))
        }
    }

    /// Whether `value` is sealed under the current key.
    pub fn is_current(&self, value: &str) -> bool {
        value
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.keys[0].id)
    }
}

/// A value opened, and whether it needs sealing again under the current
/// key.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Current(String),
    /// Sealed under an earlier key of the ring.
    Previous(String),
    /// Kept in clear (before sealing).
    Unsealed(String),
}

impl Opened {
    pub fn into_plain(self) -> String {
        match self {
            Opened::Current(s) | Opened::Previous(s) | Opened::Unsealed(s) => s,
        }
    }

    /// Whether it should be sealed again under the current key.
    pub fn stale(&self) -> bool {
        !matches!(self, Opened::Current(_))
    }
}

/// Why a sealed value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "a secret is sealed with key {0}, which the key ring does not hold: give that key (after the current one) in the seal key file or LEDGERBRIDGE_SEAL_KEY"
    )]
    UnknownKey(String),
    #[error(
        "a sealed secret does not open: it was changed, or moved from another place in the store"
    )]
    Damaged,
}

/// A new random key, in base64.
pub fn new_key() -> String {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut k = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut k);
    B64.encode(k)
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_each_value_to_its_place() {
        let ring = Keyring::ephemeral();
        let s = ring.seal("s3cret", "connections.credentials:c1");
        assert!(s.starts_with(PREFIX) && !s.contains("s3cret"));
        assert_eq!(
            ring.open(&s, "connections.credentials:c1"),
            Ok(Opened::Current("s3cret".into()))
        );
        // Moved to another connection's row: it does not open.
        assert_eq!(
            ring.open(&s, "connections.credentials:c2"),
            Err(SealError::Damaged)
        );
        // Two seals of one value differ (a nonce each).
        assert_ne!(s, ring.seal("s3cret", "connections.credentials:c1"));
        // A changed byte fails the tag.
        let mut bytes = s.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(
            ring.open(&changed, "connections.credentials:c1"),
            Err(SealError::Damaged)
        );
        // A value from before sealing reads as it is, to be sealed.
        assert_eq!(
            ring.open("{\"k\":\"v\"}", "x"),
            Ok(Opened::Unsealed("{\"k\":\"v\"}".into()))
        );
    }

    #[test]
    fn rotation_opens_with_an_earlier_key_and_names_a_missing_one() {
        let (old, new) = (new_key(), new_key());
        let before = Keyring::parse(&old).unwrap();
        let s = before.seal("token", "p");
        let rotated =
            Keyring::parse(&format!("{new}\n# the old key, until resealed\n{old}\n")).unwrap();
        assert_eq!(rotated.key_ids().len(), 2);
        assert_eq!(rotated.open(&s, "p"), Ok(Opened::Previous("token".into())));
        assert!(!rotated.is_current(&s));
        assert!(rotated.is_current(&rotated.seal("token", "p")));
        let without = Keyring::parse(&new).unwrap();
        assert_eq!(
            without.open(&s, "p"),
            Err(SealError::UnknownKey(before.current_id().into()))
        );
    }

    #[test]
    fn bad_keys_are_refused_with_the_line() {
        let e = Keyring::parse("# comment\nnot-a-key")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("base64"), "{e}");
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse(&B64.encode([1u8; 16])).is_err(), "16 bytes");
    }
}
