//! The HTTPS listener's certificates: one per group of host names, picked by SNI, and a
//! default for clients that name no host or one no certificate lists.
//!
//! The files are read at start (a bad one refuses the start) and looked at again once a
//! second: a file whose version ([`FileVersion`]) changed is read again and, if good, swapped
//! in for the next handshakes; a bad one (half written, a key that does not match) is logged
//! with its path and the certificate in use stays. The list itself follows the configuration
//! in force, so a SIGHUP that adds or changes `[[tls.certificates]]` takes effect within a
//! second too. Certificates are checked for shape and key match only: whether they cover
//! their names or have expired is the client's to judge, as with any server.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use paddock_config::tls::{CertSpec, TlsSettings};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::filestamp::FileVersion;
use crate::front::State;
use crate::phase::{self, Phase};

/// Largest certificate chain or key file read: real ones are a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// How often the files are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A certificate or key file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("tls: {file}: {problem}")]
pub struct CertError {
    pub file: String,
    pub problem: String,
}

fn problem(file: &Path, problem: impl Into<String>) -> CertError {
    CertError { file: file.display().to_string(), problem: problem.into() }
}

/// The certificates in force, as rustls asks for them, and what they were read from.
#[derive(Debug)]
pub struct Certs {
    provider: Arc<CryptoProvider>,
    table: RwLock<Arc<Table>>,
    loaded: Mutex<Vec<Loaded>>,
}

/// The lookup rustls makes at each handshake.
#[derive(Debug)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.org` under `example.org`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// One configured certificate: the last good key, and the file versions last looked at
/// (those of a bad file too, so that it is reported once, not every second).
#[derive(Debug)]
struct Loaded {
    spec: CertSpec,
    key: Arc<CertifiedKey>,
    seen: (Option<FileVersion>, Option<FileVersion>),
}

impl Certs {
    /// Read every certificate of `settings`; any bad file is an error.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Certs>, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut loaded = Vec::new();
        for spec in &settings.certificates {
            let seen = versions(spec);
            let key = Arc::new(read_pair(spec, &provider)?);
            loaded.push(Loaded { spec: spec.clone(), key, seen });
        }
        let table = Table::of(&loaded).ok_or_else(|| CertError {
            file: "[tls]".into(),
            problem: "no default certificate".into(),
        })?;
        Ok(Arc::new(Certs {
            provider,
            table: RwLock::new(Arc::new(table)),
            loaded: Mutex::new(loaded),
        }))
    }

    /// A rustls server configuration on these certificates: TLS 1.2 and 1.3 with the
    /// provider's default cipher suites, ALPN `h2` then `http/1.1`.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Bring the certificates in line with `specs` and the files on disk. Blocking (it reads
    /// files): call it off the async threads.
    pub fn refresh(&self, specs: &[CertSpec]) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = loaded.len() != specs.len();
        let mut next = Vec::with_capacity(specs.len());
        for spec in specs {
            let seen = versions(spec);
            // The same files under another spec (names changed) need no new read.
            let old =
                loaded.iter().position(|l| l.spec.cert == spec.cert && l.spec.key == spec.key);
            let old = old.map(|i| loaded.swap_remove(i));
            if let Some(l) = old.as_ref().filter(|l| l.seen == seen) {
                changed |= l.spec != *spec;
                next.push(Loaded { spec: spec.clone(), key: l.key.clone(), seen });
                continue;
            }
            match read_pair(spec, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %spec.cert.display(), names = ?spec.names, "tls: certificate loaded");
                    changed = true;
                    next.push(Loaded { spec: spec.clone(), key: Arc::new(key), seen });
                }
                Err(e) => match old {
                    Some(l) => {
                        tracing::error!("{e}; the certificate in use stays");
                        changed |= l.spec != *spec;
                        next.push(Loaded { spec: spec.clone(), key: l.key, seen });
                    }
                    None => tracing::error!("{e}; its names get the default certificate"),
                },
            }
        }
        // A list that lost its default to a bad file keeps the whole old table.
        match Table::of(&next) {
            Some(table) if changed => {
                *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
                *loaded = next;
            }
            Some(_) => *loaded = next,
            None => {
                tracing::error!("tls: the default certificate cannot be read; all stay as they are")
            }
        }
    }

    fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().pick(hello.server_name()))
    }
}

impl Table {
    /// `None` when no entry is the default.
    fn of(loaded: &[Loaded]) -> Option<Table> {
        let default = loaded.iter().find(|l| l.spec.default)?.key.clone();
        let mut table = Table { exact: HashMap::new(), wildcard: HashMap::new(), default };
        for l in loaded {
            for name in &l.spec.names {
                match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.insert(parent.to_string(), l.key.clone()),
                    None => table.exact.insert(name.clone(), l.key.clone()),
                };
            }
        }
        Some(table)
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        let parent = name.split_once('.').map(|(_, p)| p);
        parent.and_then(|p| self.wildcard.get(p)).unwrap_or(&self.default).clone()
    }
}

/// The versions of a certificate's two files (`None`: cannot be looked at now).
fn versions(spec: &CertSpec) -> (Option<FileVersion>, Option<FileVersion>) {
    let v = |p: &Path| std::fs::metadata(p).ok().map(|m| FileVersion::of(&m));
    (v(&spec.cert), v(&spec.key))
}

/// Read a certificate chain and its key, and check that they belong together.
fn read_pair(spec: &CertSpec, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let pem = read_bounded(&spec.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&spec.cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(problem(&spec.cert, "no CERTIFICATE block in it"));
    }
    let pem = read_bounded(&spec.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        problem(&spec.key, format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM) in it: {e}"))
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => problem(
            &spec.key,
            format!("this key does not belong to the certificate in {}", spec.cert.display()),
        ),
        e => problem(&spec.key, format!("cannot use this key with its certificate: {e}")),
    })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CertError> {
    let f = std::fs::File::open(path).map_err(|e| problem(path, format!("cannot open: {e}")))?;
    let mut out = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| problem(path, format!("cannot read: {e}")))?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(problem(path, format!("larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(out)
}

/// Follow the files and the configuration once a second until the server closes.
pub async fn watch(certs: Arc<Certs>, state: Arc<State>) {
    let closing = phase::reached(state.phases.subscribe(), Phase::closing);
    tokio::pin!(closing);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut closing => return,
        }
        let cfg = state.config();
        let Some(tls) = cfg.tls.as_ref() else {
            if !warned {
                tracing::warn!("tls: [tls] was removed from the configuration; the HTTPS listener stays until a restart");
                warned = true;
            }
            continue;
        };
        warned = false;
        let specs = tls.certificates.clone();
        let c = certs.clone();
        let _ = tokio::task::spawn_blocking(move || c.refresh(&specs)).await;
    }
}
