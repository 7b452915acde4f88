//! One member of the test replica set: accepting connections, and answering the
//! commands a driver sends to discover the set, log in and `ping`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Document, Timestamp, doc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::scram::{self, Conversation};
use super::wire::{Request, read_request, write_reply};
use super::{SetInner, SetState};

/// The wire version advertised: MongoDB 7.0.
const MAX_WIRE_VERSION: i32 = 21;

/// Accepts connections for member `member` until the task is aborted (which also
/// ends every connection it accepted). While the set's connections are cut, every
/// open connection is closed and new ones are closed as soon as they are accepted.
pub(crate) async fn serve_member(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<SetState>,
    member: usize,
) {
    let mut connections = JoinSet::new();
    let mut changes = state.subscribe();
    let mut next_id: i32 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                if state.lock().cut {
                    connections.abort_all();
                }
                continue;
            }
        };
        let Ok((tcp, _)) = accepted else { continue };
        if state.lock().cut {
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        next_id = next_id.wrapping_add(1);
        let id = next_id;
        let state = state.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            // A member that does not answer does not even complete the handshake.
            state.until_answering(member).await;
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(tcp).await {
                        serve_connection(tls, &state, member, id).await;
                    }
                }
                None => serve_connection(tcp, &state, member, id).await,
            }
        });
    }
}

/// What one connection remembers between commands.
struct Connection {
    id: i32,
    member: usize,
    conversation: Option<Conversation>,
}

async fn serve_connection<IO>(mut io: IO, state: &SetState, member: usize, id: i32)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Connection {
        id,
        member,
        conversation: None,
    };
    let mut reply_id: i32 = 0;
    loop {
        let Ok(request) = read_request(&mut io).await else {
            return;
        };
        let reply = answer(&request, state, &mut conn).await;
        state.until_answering(member).await;
        reply_id = reply_id.wrapping_add(1);
        if write_reply(&mut io, &request, reply_id, &reply)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn answer(request: &Request, state: &SetState, conn: &mut Connection) -> Document {
    match request.command().to_ascii_lowercase().as_str() {
        "hello" | "ismaster" => hello(request, state, conn).await,
        "ping" => {
            if !state.lock().elect_on_ping.is_empty() {
                state.change(|s| {
                    for w in std::mem::take(&mut s.elect_on_ping) {
                        s.term += 1;
                        s.primary = Some(w);
                    }
                });
            }
            doc! { "ok": 1.0 }
        }
        "endsessions" => doc! { "ok": 1.0 },
        "buildinfo" => doc! {
            "version": "7.0.0",
            "versionArray": [7, 0, 0, 0],
            "maxBsonObjectSize": 16_777_216,
            "ok": 1.0,
        },
        "saslstart" => sasl_start(&request.body, state, conn),
        "saslcontinue" => sasl_continue(&request.body, state, conn),
        other => doc! {
            "ok": 0.0,
            "errmsg": format!("no such command: '{other}'"),
            "code": 59,
            "codeName": "CommandNotFound",
        },
    }
}

/// `hello` / `isMaster`; an awaitable one (with `topologyVersion` and
/// `maxAwaitTimeMS`) is held until the set changes or the wait ends.
async fn hello(request: &Request, state: &SetState, conn: &Connection) -> Document {
    let body = &request.body;
    if let (Ok(tv), Some(wait)) = (body.get_document("topologyVersion"), max_await(body)) {
        let same_process = {
            let s = state.lock();
            tv.get_object_id("processId").ok() == s.process_ids.get(conn.member).copied()
        };
        let counter = tv.get_i64("counter").ok();
        let current = state.generation();
        if same_process && counter == i64::try_from(current).ok() {
            let mut rx = state.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|g| *g != current)).await;
        }
    }
    let generation = i64::try_from(state.generation()).unwrap_or(i64::MAX);
    let s = state.lock();
    let me = s.hosts.get(conn.member).cloned().unwrap_or_default();
    let is_primary = s.primary == Some(conn.member);
    let legacy = request.command().eq_ignore_ascii_case("ismaster");
    let mut reply = Document::new();
    if body.contains_key("helloOk") {
        reply.insert("helloOk", true);
    }
    reply.insert(
        if legacy {
            "ismaster"
        } else {
            "isWritablePrimary"
        },
        is_primary,
    );
    if let Some(pid) = s.process_ids.get(conn.member).filter(|_| s.streaming) {
        reply.insert(
            "topologyVersion",
            doc! { "processId": *pid, "counter": generation },
        );
    }
    reply.insert(
        "hosts",
        Bson::Array(s.hosts.iter().cloned().map(Bson::String).collect()),
    );
    reply.insert("setName", s.set_name.clone());
    reply.insert("setVersion", s.set_version);
    reply.insert("secondary", !is_primary);
    if let Some(p) = s.primary.and_then(|p| s.hosts.get(p)) {
        reply.insert("primary", p.clone());
    }
    reply.insert("me", me);
    if is_primary {
        reply.insert("electionId", s.election_id());
    }
    reply.insert("lastWrite", last_write(&s, conn.member, is_primary));
    if body.contains_key("saslSupportedMechs") {
        reply.insert("saslSupportedMechs", vec!["SCRAM-SHA-256"]);
    }
    reply.insert("maxBsonObjectSize", 16_777_216);
    reply.insert("maxMessageSizeBytes", 48_000_000);
    reply.insert("maxWriteBatchSize", 100_000);
    reply.insert("localTime", DateTime::now());
    reply.insert("logicalSessionTimeoutMinutes", 30);
    reply.insert("connectionId", conn.id);
    reply.insert("minWireVersion", 0);
    reply.insert("maxWireVersion", MAX_WIRE_VERSION);
    reply.insert("readOnly", false);
    reply.insert("ok", 1.0);
    reply
}

/// `lastWrite` as mongod reports it: the optime (with the term, `t`) and the wall
/// time of the member's last write, `lags[member]` behind now unless it is the
/// primary.
fn last_write(s: &SetInner, member: usize, is_primary: bool) -> Document {
    let lag = if is_primary {
        Duration::ZERO
    } else {
        s.lags.get(member).copied().unwrap_or_default()
    };
    let now = SystemTime::now();
    let at = now.checked_sub(lag).unwrap_or(SystemTime::UNIX_EPOCH);
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let op_time = doc! {
        "ts": Timestamp { time: secs, increment: 1 },
        "t": s.op_time_term(),
    };
    let date = DateTime::from_system_time(at);
    doc! {
        "opTime": op_time.clone(),
        "lastWriteDate": date,
        "majorityOpTime": op_time,
        "majorityWriteDate": date,
    }
}

/// `maxAwaitTimeMS` of an awaitable `hello`.
fn max_await(body: &Document) -> Option<Duration> {
    let ms = match body.get("maxAwaitTimeMS")? {
        Bson::Int32(v) => i64::from(*v),
        Bson::Int64(v) => *v,
        Bson::Double(v) => *v as i64,
        _ => return None,
    };
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// The answer mongod gives to any failed login.
fn authentication_failed() -> Document {
    doc! {
        "ok": 0.0,
        "errmsg": "Authentication failed.",
        "code": 18,
        "codeName": "AuthenticationFailed",
    }
}

fn payload(body: &Document) -> &[u8] {
    body.get_binary_generic("payload")
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn binary(text: String) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: text.into_bytes(),
    }
}

fn sasl_start(body: &Document, state: &SetState, conn: &mut Connection) -> Document {
    let (refuse, salt) = {
        let s = state.lock();
        (s.refuse_auth, s.salt)
    };
    if refuse {
        return authentication_failed();
    }
    let mechanism = body.get_str("mechanism").unwrap_or("");
    if mechanism != "SCRAM-SHA-256" {
        return doc! {
            "ok": 0.0,
            "errmsg": format!("Received authentication for mechanism {mechanism} which is not enabled"),
            "code": 334,
            "codeName": "MechanismUnavailable",
        };
    }
    match scram::start(payload(body), &salt) {
        Ok((conversation, server_first)) => {
            conn.conversation = Some(conversation);
            doc! {
                "conversationId": 1,
                "done": false,
                "payload": binary(server_first),
                "ok": 1.0,
            }
        }
        Err(_) => authentication_failed(),
    }
}

fn sasl_continue(body: &Document, state: &SetState, conn: &mut Connection) -> Document {
    let Some(conversation) = conn.conversation.take() else {
        return authentication_failed();
    };
    let (refuse, salt, password) = {
        let s = state.lock();
        (
            s.refuse_auth,
            s.salt,
            s.password(conversation.user()).map(str::to_owned),
        )
    };
    if refuse {
        return authentication_failed();
    }
    match conversation.finish(payload(body), password.as_deref(), &salt) {
        Ok(server_final) => doc! {
            "conversationId": 1,
            "done": true,
            "payload": binary(server_final),
            "ok": 1.0,
        },
        Err(_) => authentication_failed(),
    }
}
