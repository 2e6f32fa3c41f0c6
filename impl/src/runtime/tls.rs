//! TLS material of a cluster (issue 24): a cluster CA, one certificate per replica and per
//! client, and the rustls configurations built from them.
//!
//! Names are how a certificate says whom it is for, and each is a DNS name in the subject
//! alternative names, so that rustls's own name check (webpki) does the comparison:
//! - replica `id`: `node-<id>.paxos` ([`replica_name`]), plus the addresses it serves on. A
//!   replica dialling replica 2 asks for `node-2.paxos`, so a peer holding another replica's
//!   certificate fails the handshake; a listener checks the name of the replica the dialler
//!   claims to be ([`check_replica`]).
//! - a client: `<name>.<role>.client.paxos` ([`client_name`]), its role one of [`Role`].
//!
//! Files are PEM. Keys are written readable by their owner only, and never overwritten.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::auth::write_private_new;
use crate::ballot::NodeId;

/// The domain every name of a cluster's certificates ends in. Names are checked against the
/// cluster's own CA only, so they need not resolve.
pub const DOMAIN: &str = "paxos";

/// The name a replica's certificate carries, and a dialler asks for.
pub fn replica_name(id: NodeId) -> String {
    format!("node-{id}.{DOMAIN}")
}

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, strum::EnumString, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Read,
    /// Reads and writes.
    Write,
    /// Everything: reads, writes, membership changes and status.
    Admin,
}

/// The name a client's certificate carries.
pub fn client_name(name: &str, role: Role) -> String {
    format!("{name}.{role}.client.{DOMAIN}")
}

/// The client name and role a certificate name gives, if it is a client's.
pub fn parse_client_name(dns: &str) -> Option<(&str, Role)> {
    let rest = dns.strip_suffix(&format!(".client.{DOMAIN}"))?;
    let (name, role) = rest.rsplit_once('.')?;
    let role = role.parse().ok()?;
    (!name.is_empty()).then_some((name, role))
}

/// Why TLS material could not be made, read or used; every file is named.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read or written.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file held no certificate or key, or a malformed one.
    Malformed {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    /// A certificate could not be made (rcgen), or the files do not make a configuration
    /// (rustls: a key that does not match its certificate, a CA that is no CA).
    Config(String),
    /// A peer's certificate does not name the replica it claims to be.
    WrongReplica { claimed: NodeId, detail: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            TlsError::Malformed { path, what, detail } => {
                write!(f, "{}: not a PEM {what}: {detail}", path.display())
            }
            TlsError::Config(detail) => f.write_str(detail),
            TlsError::WrongReplica { claimed, detail } => write!(
                f,
                "the peer claims to be replica {claimed}, but its certificate is not for {}: {detail}",
                replica_name(*claimed)
            ),
        }
    }
}

impl std::error::Error for TlsError {}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The files of one party: the CA it trusts, its certificate and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The stem of replica `id`'s certificate and key files (`<stem>.pem`, `<stem>.key`).
fn replica_stem(id: NodeId) -> String {
    format!("node-{id}")
}

/// The stem of client `name`'s certificate and key files.
fn client_stem(name: &str) -> String {
    format!("client-{name}")
}

impl TlsFiles {
    /// Replica `id`'s files in a directory `paxos-node certs` wrote.
    pub fn replica(dir: &Path, id: NodeId) -> TlsFiles {
        TlsFiles::of(dir, &replica_stem(id))
    }

    /// Client `name`'s files in a directory `paxos-node certs` wrote.
    pub fn client(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles::of(dir, &client_stem(name))
    }

    fn of(dir: &Path, stem: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join(CA_CERT),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// Reads and checks all three files.
    pub fn load(&self) -> Result<Identity, TlsError> {
        Ok(Identity {
            roots: Arc::new(read_roots(&self.ca)?),
            chain: read_certs(&self.cert)?,
            key: Arc::new(read_key(&self.key)?),
        })
    }
}

/// The CA's certificate in a directory `paxos-node certs` wrote.
pub const CA_CERT: &str = "ca.pem";
/// The CA's key: needed only to issue more certificates; keep it off the replicas' machines.
pub const CA_KEY: &str = "ca.key";

/// One party's TLS material, read and checked.
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// ring, not rustls's default aws-lc-rs: it builds with a C compiler alone, which is all a
/// fresh machine has (aws-lc-rs wants cmake). rustls 0.23.48 deprecates ring's provider because
/// it has no post-quantum key exchange; the cluster keeps X25519 and the P-curves until the
/// build can take aws-lc-rs.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// The listener's side: its own certificate, and a certificate from the cluster CA
    /// required of every dialler (mutual TLS). Which replica or client it is, is checked
    /// after the handshake ([`check_replica`], [`client_of`]).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider())
                .build()
                .map_err(config_error)?;
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)
    }

    /// The dialler's side: the cluster CA as its only root, and its own certificate for the
    /// listener's check. Dial with [`replica_server_name`] to require a given replica.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_error)
    }
}

/// The name to dial replica `id` by: the handshake fails unless the listener's certificate
/// is that replica's.
pub fn replica_server_name(id: NodeId) -> ServerName<'static> {
    // A replica name is always a valid DNS name ("node-<digits>.paxos").
    ServerName::try_from(replica_name(id)).unwrap_or_else(|_| unreachable!("a valid DNS name"))
}

/// Checks that `cert` (a peer's, already verified against the CA by the handshake) is
/// replica `claimed`'s.
pub fn check_replica(cert: &CertificateDer<'_>, claimed: NodeId) -> Result<(), TlsError> {
    let wrong = |detail: String| TlsError::WrongReplica { claimed, detail };
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| wrong(e.to_string()))?;
    cert.verify_is_valid_for_subject_name(&replica_server_name(claimed))
        .map_err(|_| {
            let names: Vec<&str> = cert.valid_dns_names().collect();
            wrong(format!("it names {names:?}"))
        })
}

/// The client name and role `cert` (a client's, already verified against the CA by the
/// handshake) carries; `None` for a certificate with no client name (a replica's).
pub fn client_of(cert: &CertificateDer<'_>) -> Option<(String, Role)> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let found = cert
        .valid_dns_names()
        .find_map(parse_client_name)
        .map(|(name, role)| (name.to_string(), role));
    found
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let malformed = |detail: String| TlsError::Malformed {
        path: path.to_path_buf(),
        what: "certificate",
        detail,
    };
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(malformed("no CERTIFICATE block".into()));
    }
    for cert in &certs {
        webpki::EndEntityCert::try_from(cert).map_err(|e| malformed(e.to_string()))?;
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Malformed {
            path: path.to_path_buf(),
            what: "CA certificate",
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Malformed {
        path: path.to_path_buf(),
        what: "private key",
        detail: e.to_string(),
    })
}

/// What `paxos-node certs` issues.
#[derive(Clone, Debug)]
pub struct CertsPlan {
    /// Each replica's id and the addresses (IPs or host names) it serves on, which its
    /// certificate names too, so that HTTPS clients can check it by address.
    pub replicas: Vec<(NodeId, Vec<String>)>,
    /// Each client's name and role.
    pub clients: Vec<(String, Role)>,
    /// How long every certificate is valid from now.
    pub valid_for: Duration,
}

/// The files [`write_certs`] made, in the order it made them.
pub type Written = Vec<PathBuf>;

/// Makes a new cluster CA in `dir` and the certificates and keys `plan` names, signed by
/// it. `dir` is created if missing; an existing file is never overwritten (the run stops
/// at it, naming it).
pub fn write_certs(dir: &Path, plan: &CertsPlan) -> Result<Written, TlsError> {
    let now = SystemTime::now();
    write_certs_valid(
        dir,
        plan,
        now - Duration::from_secs(3600),
        now + plan.valid_for,
    )
}

/// [`write_certs`] with the validity period given: tests make expired certificates so.
pub fn write_certs_valid(
    dir: &Path,
    plan: &CertsPlan,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Written, TlsError> {
    for (name, _) in &plan.clients {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(TlsError::Config(format!(
                "client name {name:?}: use letters, digits and '-' only"
            )));
        }
    }
    // Every file is checked before any is written: a run that stops half way would leave a
    // CA whose key signed only some of the certificates.
    let mut files = vec![CA_CERT.to_string(), CA_KEY.to_string()];
    let parties = plan.replicas.iter().map(|(id, _)| replica_stem(*id));
    let parties = parties.chain(plan.clients.iter().map(|(name, _)| client_stem(name)));
    for party in parties {
        for file in [format!("{party}.pem"), format!("{party}.key")] {
            if files.contains(&file) {
                return Err(TlsError::Config(format!("{file} is named twice")));
            }
            files.push(file);
        }
    }
    for file in &files {
        let path = dir.join(file);
        if path.exists() {
            return Err(TlsError::Io {
                path,
                error: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| TlsError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let validity = |params: &mut CertificateParams| {
        params.not_before = not_before.into();
        params.not_after = not_after.into();
    };
    let ca_key = KeyPair::generate().map_err(config_error)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "paxos-conform cluster CA");
    ca.distinguished_name = dn;
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).map_err(config_error)?;
    let mut written = Vec::new();
    let mut write = |name: String, pem: String, private: bool| -> Result<(), TlsError> {
        let path = dir.join(name);
        let io = |error| TlsError::Io {
            path: path.clone(),
            error,
        };
        if private {
            write_private_new(&path, pem.as_bytes()).map_err(io)?;
        } else {
            write_public_new(&path, pem.as_bytes()).map_err(io)?;
        }
        written.push(path);
        Ok(())
    };
    write(CA_CERT.into(), ca_cert.pem(), false)?;
    write(CA_KEY.into(), ca_key.serialize_pem(), true)?;
    let mut issue = |file: String, names: Vec<String>, common: String| -> Result<(), TlsError> {
        let key = KeyPair::generate().map_err(config_error)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .into_iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| TlsError::Config(format!("name {name:?}: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A replica both listens and dials; a client only dials.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(config_error)?;
        write(format!("{file}.pem"), cert.pem(), false)?;
        write(format!("{file}.key"), key.serialize_pem(), true)
    };
    for (id, addrs) in &plan.replicas {
        let mut names = vec![replica_name(*id)];
        names.extend(addrs.iter().cloned());
        issue(replica_stem(*id), names, replica_name(*id))?;
    }
    for (name, role) in &plan.clients {
        let full = client_name(name, *role);
        issue(client_stem(name), vec![full.clone()], full)?;
    }
    Ok(written)
}

/// Certificates for replicas `0..n` on loopback in `dir`, unless `dir` already holds a CA
/// (a local cluster restarted on its data directory keeps its certificates): what
/// `paxos-node cluster` and `chaos` run with.
pub fn ensure_loopback_certs(dir: &Path, n: NodeId) -> Result<(), TlsError> {
    if dir.join(CA_CERT).exists() {
        return Ok(());
    }
    let plan = CertsPlan {
        replicas: (0..n)
            .map(|id| (id, vec!["127.0.0.1".into(), "localhost".into()]))
            .collect(),
        clients: Vec::new(),
        valid_for: Duration::from_secs(365 * 86_400),
    };
    write_certs(dir, &plan).map(drop)
}

fn write_public_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn plan() -> CertsPlan {
        CertsPlan {
            replicas: vec![(0, vec!["127.0.0.1".into()]), (1, vec!["localhost".into()])],
            clients: vec![("ops".into(), Role::Admin), ("app".into(), Role::Read)],
            valid_for: Duration::from_secs(86_400),
        }
    }

    /// A handshake between `dialler` and `listener` over an in-memory pipe, the dialler
    /// asking for `name`; on success, the certificate the listener saw.
    async fn handshake(
        dialler: &Identity,
        listener: &Identity,
        name: ServerName<'static>,
    ) -> Result<CertificateDer<'static>, String> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(dialler.client_config().unwrap()));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(listener.server_config().unwrap()));
        let dial = async move {
            let mut stream = connector.connect(name, a).await?;
            stream.write_all(b"ping").await?;
            stream.flush().await?;
            let mut back = [0u8; 4];
            stream.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(back)
        };
        let accept = async move {
            let mut stream = acceptor.accept(b).await?;
            let mut got = [0u8; 4];
            stream.read_exact(&mut got).await?;
            stream.write_all(b"pong").await?;
            stream.flush().await?;
            let seen = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first().cloned());
            Ok::<_, std::io::Error>(seen.map(|c| c.into_owned()))
        };
        let (dialled, accepted) = tokio::join!(dial, accept);
        let back = dialled.map_err(|e| format!("dialler: {e}"))?;
        assert_eq!(&back, b"pong");
        let seen = accepted.map_err(|e| format!("listener: {e}"))?;
        seen.ok_or_else(|| "no client certificate".to_string())
    }

    #[test]
    fn certs_are_written_once_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_certs(dir.path(), &plan()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca.key",
                "node-0.pem",
                "node-0.key",
                "node-1.pem",
                "node-1.key",
                "client-ops.pem",
                "client-ops.key",
                "client-app.pem",
                "client-app.key"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for path in &written {
                let mode = std::fs::metadata(path).unwrap().permissions().mode();
                let private = path.extension().is_some_and(|e| e == "key");
                assert_eq!(mode & 0o077 == 0, private, "{}: {mode:o}", path.display());
            }
        }
        let one_more = CertsPlan {
            clients: vec![("new".into(), Role::Read)],
            ..plan()
        };
        let again = write_certs(dir.path(), &one_more).unwrap_err();
        assert!(
            !dir.path().join("client-new.pem").exists(),
            "nothing is written once a file exists"
        );
        assert!(again.to_string().contains("ca.pem"), "{again}");
        assert!(
            matches!(again, TlsError::Io { ref error, .. } if error.kind() == std::io::ErrorKind::AlreadyExists),
            "{again}"
        );
    }

    #[tokio::test]
    async fn replicas_handshake_and_a_replica_is_known_by_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path(), &plan()).unwrap();
        let r0 = TlsFiles::replica(dir.path(), 0).load().unwrap();
        let r1 = TlsFiles::replica(dir.path(), 1).load().unwrap();
        let seen = handshake(&r0, &r1, replica_server_name(1)).await.unwrap();
        check_replica(&seen, 0).unwrap();
        let wrong = check_replica(&seen, 1).unwrap_err();
        assert!(wrong.to_string().contains("node-0.paxos"), "{wrong}");
        assert_eq!(client_of(&seen), None, "a replica is no client");
        let refused = handshake(&r0, &r1, replica_server_name(2))
            .await
            .unwrap_err();
        assert!(
            refused.contains("dialler"),
            "replica 1 is not replica 2: {refused}"
        );
    }

    #[tokio::test]
    async fn a_client_is_known_by_name_and_role() {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path(), &plan()).unwrap();
        let r0 = TlsFiles::replica(dir.path(), 0).load().unwrap();
        let app = TlsFiles::client(dir.path(), "app").load().unwrap();
        let seen = handshake(&app, &r0, replica_server_name(0)).await.unwrap();
        assert_eq!(client_of(&seen), Some(("app".to_string(), Role::Read)));
        assert!(check_replica(&seen, 0).is_err());
        let by_ip = ServerName::try_from("127.0.0.1").unwrap();
        handshake(&app, &r0, by_ip).await.unwrap();
    }

    #[tokio::test]
    async fn a_stranger_from_another_ca_and_an_expired_certificate_are_refused() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        write_certs(ours.path(), &plan()).unwrap();
        write_certs(theirs.path(), &plan()).unwrap();
        let r0 = TlsFiles::replica(ours.path(), 0).load().unwrap();
        let stranger = TlsFiles::replica(theirs.path(), 1).load().unwrap();
        let refused = handshake(&stranger, &r0, replica_server_name(0))
            .await
            .unwrap_err();
        assert!(refused.contains("dialler"), "{refused}");
        let refused = handshake(&r0, &stranger, replica_server_name(1))
            .await
            .unwrap_err();
        assert!(refused.contains("dialler"), "{refused}");

        let old = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let expired = SystemTime::now() - Duration::from_secs(86_400);
        write_certs_valid(old.path(), &plan(), long_ago, expired).unwrap();
        let o0 = TlsFiles::replica(old.path(), 0).load().unwrap();
        let o1 = TlsFiles::replica(old.path(), 1).load().unwrap();
        let refused = handshake(&o0, &o1, replica_server_name(1))
            .await
            .unwrap_err();
        assert!(refused.to_lowercase().contains("expired"), "{refused}");
    }

    #[test]
    fn missing_and_malformed_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path(), &plan()).unwrap();
        let files = TlsFiles::replica(dir.path(), 0);
        let missing = TlsFiles {
            key: dir.path().join("nope.key"),
            ..files.clone()
        };
        let e = missing.load().unwrap_err();
        assert!(e.to_string().contains("nope.key"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        for broken in [
            TlsFiles {
                cert: garbage.clone(),
                ..files.clone()
            },
            TlsFiles {
                ca: garbage.clone(),
                ..files.clone()
            },
            TlsFiles {
                key: garbage.clone(),
                ..files.clone()
            },
        ] {
            let e = broken.load().unwrap_err();
            assert!(e.to_string().contains("garbage.pem"), "{e}");
            assert!(matches!(e, TlsError::Malformed { .. }), "{e}");
        }
        // A key that is not the certificate's: the configuration refuses it.
        let mismatched = TlsFiles {
            key: dir.path().join("node-1.key"),
            ..files
        };
        let identity = mismatched.load().unwrap();
        assert!(identity.server_config().is_err());
    }

    #[test]
    fn client_names_round_trip_and_bad_names_are_refused() {
        assert_eq!(
            parse_client_name(&client_name("web-1", Role::Write)),
            Some(("web-1", Role::Write))
        );
        assert_eq!(parse_client_name("node-1.paxos"), None);
        assert_eq!(parse_client_name("x.root.client.paxos"), None);
        let dir = tempfile::tempdir().unwrap();
        let bad = CertsPlan {
            clients: vec![("a.b".into(), Role::Read)],
            ..plan()
        };
        let e = write_certs(dir.path(), &bad).unwrap_err();
        assert!(e.to_string().contains("a.b"), "{e}");
        let twice = CertsPlan {
            clients: vec![("a".into(), Role::Read), ("a".into(), Role::Admin)],
            ..plan()
        };
        let e = write_certs(dir.path(), &twice).unwrap_err();
        assert!(e.to_string().contains("client-a.pem is named twice"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
