//! A MongoDB replica set for tests: one wire-protocol server per member, speaking
//! enough of MongoDB for the real driver to discover the set, authenticate and run
//! `ping`. No mongod can be installed on the machines that run the tests, and a
//! real set could not be told to hold five elections in two seconds anyway.
//!
//! What the members speak: OP_MSG (and the legacy OP_QUERY/OP_REPLY for a first
//! `isMaster`), plain or TLS with a certificate from [`crate::certs`]; the commands
//! `hello` / `isMaster` with the replica-set fields (`setName`, `hosts`, `primary`,
//! `me`, `isWritablePrimary`/`secondary`, `electionId`, `setVersion`,
//! `topologyVersion`), `ping`, `buildInfo`, `endSessions`, and SCRAM-SHA-256 over
//! `saslStart` / `saslContinue` (code 18 for a wrong password, or for everyone while
//! refusal is switched on). Anything else is answered `CommandNotFound`.
//!
//! By default members advertise `topologyVersion`, so the driver uses the streaming
//! protocol: an awaitable `hello` (with `maxAwaitTimeMS`) is held until the set
//! changes or the wait ends, as mongod 4.4+ does, and then answered (without
//! `moreToCome`, which the driver accepts: it sends the next awaitable `hello`
//! itself). [`ReplicaSetBuilder::streaming`]`(false)` leaves `topologyVersion` out,
//! as before 4.4: the driver then polls every `heartbeatFrequencyMS`.
//!
//! Terms are kept as mongod keeps them under protocol version 1: every election is
//! a new term, the primary's `electionId` is `7fffffff` followed by the term as a
//! big-endian 64-bit number, and every member's `lastWrite.opTime.t` carries the
//! term (with `lastWrite.lastWriteDate`, behind the primary's by the member's
//! replication lag). Elections close no connection, as in mongod 4.2+.
//!
//! The set's state is one handle, [`ReplicaSet`]: elect a primary (or hold several
//! elections at once, between two looks of any client), step it down, make a member
//! stop answering, cut every connection while the network flaps, make a secondary
//! lag, refuse logins, swap a member's certificate, while the test runs. Members name
//! themselves `localhost:<port>`, so certificates for `localhost` fit.

mod commands;
mod control;
pub mod scram;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bson::oid::ObjectId;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::Identity;
use crate::servers::ServerError;

/// Aborts a member's task when the set is dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How to start a [`ReplicaSet`].
pub struct ReplicaSetBuilder {
    members: usize,
    set_name: String,
    identities: Option<Vec<Identity>>,
    client_ca: Option<CertificateDer<'static>>,
    users: Vec<(String, String)>,
    streaming: bool,
    terms: bool,
}

/// A running replica set of wire-protocol servers on `127.0.0.1`.
pub struct ReplicaSet {
    state: Arc<SetState>,
    addrs: Vec<SocketAddr>,
    _tasks: Vec<Task>,
}

/// What every member answers from, changed by the test.
pub(crate) struct SetState {
    inner: Mutex<SetInner>,
    /// Bumped on every change: the `topologyVersion` counter, and what an awaitable
    /// `hello` waits on.
    generation: watch::Sender<u64>,
}

pub(crate) struct SetInner {
    pub set_name: String,
    pub hosts: Vec<String>,
    pub process_ids: Vec<ObjectId>,
    pub primary: Option<usize>,
    pub term: u64,
    pub set_version: i32,
    pub answering: Vec<bool>,
    /// How far behind the primary each member's last write is.
    pub lags: Vec<Duration>,
    /// Whether members advertise `topologyVersion` (the driver then streams).
    pub streaming: bool,
    /// Whether members state the term (protocol version 1), or not (version 0).
    pub terms: bool,
    /// While true, every connection is closed and new ones are closed at once.
    pub cut: bool,
    /// Elections held, all at once, when the next `ping` arrives (then none).
    pub elect_on_ping: Vec<usize>,
    pub refuse_auth: bool,
    pub users: Vec<(String, String)>,
    pub salt: [u8; 16],
    identities: Vec<Option<Arc<CertifiedKey>>>,
}

impl SetInner {
    /// The `electionId` of the current term (mongod's shape under protocol version
    /// 1: `7fffffff`, then the term as a big-endian 64-bit number; under version 0,
    /// an ordinary `ObjectId`, new at each election, that carries no term).
    pub fn election_id(&self) -> ObjectId {
        let mut bytes = [0u8; 12];
        let prefix = if self.terms {
            [0x7f, 0xff, 0xff, 0xff]
        } else {
            [0x5f, 0x00, 0x00, 0x00]
        };
        bytes[..4].copy_from_slice(&prefix);
        bytes[4..].copy_from_slice(&self.term.to_be_bytes());
        ObjectId::from_bytes(bytes)
    }

    /// `lastWrite.opTime.t`: the term, or -1 under protocol version 0.
    pub fn op_time_term(&self) -> i64 {
        if self.terms {
            i64::try_from(self.term).unwrap_or(i64::MAX)
        } else {
            -1
        }
    }

    /// The password of `user`, if the set knows the user.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
    }
}

impl SetState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SetInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state and wakes every waiting `hello`.
    pub(crate) fn change(&self, f: impl FnOnce(&mut SetInner)) {
        f(&mut self.lock());
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Waits until member `i` answers again (returns at once when it does).
    pub(crate) async fn until_answering(&self, i: usize) {
        let mut rx = self.subscribe();
        loop {
            if self.lock().answering.get(i).copied().unwrap_or(false) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Serves member `i`'s certificate.
#[derive(Debug)]
struct MemberCert {
    state: Arc<SetState>,
    member: usize,
}

impl std::fmt::Debug for SetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetState")
    }
}

impl ResolvesServerCert for MemberCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.state
            .lock()
            .identities
            .get(self.member)
            .cloned()
            .flatten()
    }
}

fn certified(identity: &Identity) -> Result<Arc<CertifiedKey>, ServerError> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(
        identity.chain.clone(),
        identity.key(),
        &provider,
    )?))
}

impl ReplicaSetBuilder {
    /// This many members (at least one).
    pub fn members(mut self, n: usize) -> Self {
        self.members = n.max(1);
        self
    }

    /// The set's name.
    pub fn set_name(mut self, name: &str) -> Self {
        self.set_name = name.to_owned();
        self
    }

    /// Serve TLS, member `i` presenting `identities[i]` (the last one for the rest).
    pub fn tls(mut self, identities: &[Identity]) -> Self {
        self.identities = Some(identities.to_vec());
        self
    }

    /// Require a client certificate issued by `ca` (with [`ReplicaSetBuilder::tls`]).
    pub fn require_client_cert(mut self, ca: &CertificateDer<'static>) -> Self {
        self.client_ca = Some(ca.clone());
        self
    }

    /// Whether members advertise `topologyVersion` (default true, as mongod 4.4+):
    /// without it the driver cannot stream and checks each member every
    /// `heartbeatFrequencyMS`, as with MongoDB before 4.4.
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.streaming = streaming;
        self
    }

    /// Members state no term, as under protocol version 0 (and as some
    /// MongoDB-compatible services): `electionId` is an ordinary `ObjectId` and
    /// `lastWrite.opTime.t` is -1.
    pub fn without_terms(mut self) -> Self {
        self.terms = false;
        self
    }

    /// A user that SCRAM-SHA-256 logins succeed for.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Binds every member on `127.0.0.1:0` and serves until dropped; member 0 is
    /// the primary of term 1.
    pub async fn start(self) -> Result<ReplicaSet, ServerError> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..self.members {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        let mut identities = Vec::new();
        for i in 0..self.members {
            let id = self
                .identities
                .as_ref()
                .and_then(|ids| ids.get(i).or(ids.last()));
            identities.push(match id {
                Some(id) => Some(certified(id)?),
                None => None,
            });
        }
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| {
            ServerError::Io(std::io::Error::other("no randomness for the SCRAM salt"))
        })?;
        let state = Arc::new(SetState {
            inner: Mutex::new(SetInner {
                set_name: self.set_name,
                hosts: addrs
                    .iter()
                    .map(|a| format!("localhost:{}", a.port()))
                    .collect(),
                process_ids: (0..self.members).map(|_| ObjectId::new()).collect(),
                primary: Some(0),
                term: 1,
                set_version: 1,
                answering: vec![true; self.members],
                lags: vec![Duration::ZERO; self.members],
                streaming: self.streaming,
                terms: self.terms,
                cut: false,
                elect_on_ping: Vec::new(),
                refuse_auth: false,
                users: self.users,
                salt,
                identities,
            }),
            generation: watch::channel(1).0,
        });
        let tls = self.identities.is_some();
        let mut tasks = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let acceptor = if tls {
                Some(TlsAcceptor::from(Arc::new(server_config(
                    MemberCert {
                        state: state.clone(),
                        member: i,
                    },
                    self.client_ca.as_ref(),
                )?)))
            } else {
                None
            };
            tasks.push(Task(tokio::spawn(commands::serve_member(
                listener,
                acceptor,
                state.clone(),
                i,
            ))));
        }
        Ok(ReplicaSet {
            state,
            addrs,
            _tasks: tasks,
        })
    }
}

fn server_config(
    cert: MemberCert,
    client_ca: Option<&CertificateDer<'static>>,
) -> Result<ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone())?;
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(cert));
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}
