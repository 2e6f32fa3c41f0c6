//! Peer authentication: every replica of a cluster holds the same secret, and the two ends of a
//! peer connection prove to each other that they know it before any protocol message flows.
//!
//! ```text
//!   dialler                                           listener
//!   Hello { cluster, from, to, nonce_d, lease } ───►  checks cluster, from, to, lease
//!                        ◄────────── Challenge { nonce_l, mac(LISTENER, transcript) }
//!   checks the listener's mac
//!   Proof { mac(DIALLER, transcript) } ────────────►  checks the dialler's mac
//!                        ◄────────── Welcome | Refused(reason)
//!
//!   transcript = cluster id, from, to, nonce_d, nonce_l, lease
//!   mac(role, t) = HMAC-SHA256(secret, role ‖ t)
//! ```
//!
//! Each side's fresh nonce keeps the other's proof from being replayed on a later connection;
//! the role label keeps a listener's proof from being reflected back as a dialler's. The
//! secret never crosses the wire. What this does not give: confidentiality or integrity of the
//! frames after the handshake. Peers are meant to talk over a network the operator controls;
//! across an untrusted one, run the peer port inside a tunnel (WireGuard, or TLS).

use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::wire::LeaseTerms;
use crate::ballot::NodeId;

/// The shortest secret accepted: 32 bytes (256 bits when random, as `paxos-node secret`
/// writes them).
pub const SECRET_BYTES_MIN: usize = 32;
/// Bytes of a handshake nonce and of a proof (HMAC-SHA256 output).
pub const NONCE_BYTES: usize = 32;
pub const PROOF_BYTES: usize = 32;

const LISTENER: &[u8] = b"paxos-conform peer listener v2";
const DIALLER: &[u8] = b"paxos-conform peer dialler v2";

pub type Nonce = [u8; NONCE_BYTES];
pub type Proof = [u8; PROOF_BYTES];

/// The cluster's shared secret. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct PeerSecret(Vec<u8>);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerSecret({} bytes)", self.0.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot read the cluster secret {path}: {source} (create one with `paxos-node secret --out {path}` \
         and copy it to every replica)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the cluster secret {path} has {len} bytes; at least {SECRET_BYTES_MIN} are needed \
         (`paxos-node secret --out {path}` writes a good one)"
    )]
    TooShort { path: String, len: usize },
}

impl PeerSecret {
    /// A secret from bytes; `None` when shorter than [`SECRET_BYTES_MIN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<PeerSecret> {
        let bytes = bytes.into();
        (bytes.len() >= SECRET_BYTES_MIN).then_some(PeerSecret(bytes))
    }

    /// 32 random bytes, as 64 hex digits (a text file an operator can copy around).
    pub fn generate() -> PeerSecret {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        PeerSecret(hex(&raw).into_bytes())
    }

    /// The file's bytes without surrounding whitespace (so a trailing newline does not matter).
    pub fn read(path: &Path) -> Result<PeerSecret, SecretError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        let trimmed = bytes.trim_ascii();
        PeerSecret::new(trimmed).ok_or(SecretError::TooShort {
            path: shown,
            len: trimmed.len(),
        })
    }

    /// Writes the secret to a new file readable by its owner only.
    pub fn write_new(&self, path: &Path) -> std::io::Result<()> {
        let mut line = self.0.clone();
        line.push(b'\n');
        write_private_new(path, &line)
    }

    fn mac(&self, role: &[u8], transcript: &Transcript<'_>) -> Hmac<Sha256> {
        // Keys of any length are accepted by HMAC; the error case cannot happen.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(role);
        transcript.feed(&mut mac);
        mac
    }

    /// The listener's proof.
    pub fn listener_proof(&self, transcript: &Transcript<'_>) -> Proof {
        self.mac(LISTENER, transcript)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The dialler's proof.
    pub fn dialler_proof(&self, transcript: &Transcript<'_>) -> Proof {
        self.mac(DIALLER, transcript).finalize().into_bytes().into()
    }

    /// Whether `proof` is the listener's proof of `transcript` (compared in constant time).
    pub fn verify_listener(&self, transcript: &Transcript<'_>, proof: &Proof) -> bool {
        self.mac(LISTENER, transcript).verify_slice(proof).is_ok()
    }

    /// Whether `proof` is the dialler's proof of `transcript` (compared in constant time).
    pub fn verify_dialler(&self, transcript: &Transcript<'_>, proof: &Proof) -> bool {
        self.mac(DIALLER, transcript).verify_slice(proof).is_ok()
    }
}

/// Everything both proofs of one handshake cover.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    pub cluster_id: &'a str,
    pub from: NodeId,
    pub to: NodeId,
    pub dialler_nonce: &'a Nonce,
    pub listener_nonce: &'a Nonce,
    pub lease: LeaseTerms,
}

impl Transcript<'_> {
    fn feed(&self, mac: &mut Hmac<Sha256>) {
        // Length-prefixed, so no two transcripts encode to the same bytes.
        mac.update(&(self.cluster_id.len() as u64).to_le_bytes());
        mac.update(self.cluster_id.as_bytes());
        mac.update(&self.from.to_le_bytes());
        mac.update(&self.to.to_le_bytes());
        mac.update(self.dialler_nonce);
        mac.update(self.listener_nonce);
        mac.update(&self.lease.lease_ms.to_le_bytes());
        mac.update(&self.lease.margin_ms.to_le_bytes());
    }
}

/// A fresh random nonce.
/// Creates `path` readable and writable by its owner only, with `bytes`, made durable; an
/// existing file is never overwritten (`AlreadyExists`). For secrets and private keys.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub fn nonce() -> Nonce {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> PeerSecret {
        PeerSecret::new(vec![byte; SECRET_BYTES_MIN]).expect("long enough")
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_transcript_and_role() {
        let (nd, nl) = (nonce(), nonce());
        let t = Transcript {
            cluster_id: "c",
            from: 1,
            to: 2,
            dialler_nonce: &nd,
            listener_nonce: &nl,
            lease: LeaseTerms::default(),
        };
        let ours = secret(7);
        let dialler = ours.dialler_proof(&t);
        let listener = ours.listener_proof(&t);
        assert!(ours.verify_dialler(&t, &dialler));
        assert!(ours.verify_listener(&t, &listener));
        // Reflection: one role's proof is not the other's.
        assert!(!ours.verify_listener(&t, &dialler));
        assert!(!ours.verify_dialler(&t, &listener));
        // Another secret.
        assert!(!secret(8).verify_dialler(&t, &dialler));
        // Replay on a connection with another listener nonce, or for another pair of nodes.
        let other = nonce();
        let replayed = Transcript {
            listener_nonce: &other,
            ..t
        };
        assert!(!ours.verify_dialler(&replayed, &dialler));
        let swapped = Transcript {
            from: 2,
            to: 1,
            ..t
        };
        assert!(!ours.verify_dialler(&swapped, &dialler));
        // Other lease terms than those the proof covered.
        let leased = Transcript {
            lease: LeaseTerms {
                lease_ms: 200,
                margin_ms: 3,
            },
            ..t
        };
        assert!(!ours.verify_dialler(&leased, &dialler));
    }

    #[test]
    fn secrets_shorter_than_the_minimum_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        std::fs::write(&path, "short\n").expect("write");
        let error = PeerSecret::read(&path).expect_err("too short").to_string();
        assert!(error.contains("5 bytes"), "{error}");
        assert!(error.contains("paxos-node secret --out"), "{error}");
        let missing = PeerSecret::read(&dir.path().join("none")).expect_err("missing");
        assert!(missing
            .to_string()
            .contains("cannot read the cluster secret"));
    }

    #[test]
    fn a_generated_secret_round_trips_through_its_file_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.secret");
        let secret = PeerSecret::generate();
        secret.write_new(&path).expect("write");
        let read = PeerSecret::read(&path).expect("read");
        assert_eq!(read.0, secret.0);
        assert_eq!(read.0.len(), 64);
        assert!(
            secret.write_new(&path).is_err(),
            "an existing secret is never overwritten"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "group/other can read the secret: {mode:o}");
        }
        assert!(!format!("{secret:?}").contains(std::str::from_utf8(&secret.0).expect("hex")));
    }
}
