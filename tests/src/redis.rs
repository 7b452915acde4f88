//! Real Redis servers for the tests: Debian's `redis-server`, on 127.0.0.1 and a free
//! port, in its own temporary directory, with no persistence (`--save ''`,
//! `--appendonly no`): the machine's own Redis (6379) is never used or changed.
//!
//! A TLS server listens only on its TLS port (`--port 0 --tls-port N`) with the
//! certificate of its case, and asks for client certificates only when told
//! (`--tls-auth-clients yes`). ACL users come from `--user` rules. A server is
//! ready when it says so on its notify socket (`--supervised systemd`); it is cheap,
//! so each case starts its own.

use std::process::Command;

use crate::certs::Identity;
use crate::children::{ChildError, Server, io_err, run, server_dir};
use crate::servers::free_port;

/// What a server serves.
#[derive(Clone, Default)]
pub struct RedisSpec {
    /// Certificate chain and key; `None` is a plaintext server.
    pub tls: Option<Identity>,
    /// CA (PEM) client certificates must chain to; with it, `--tls-auth-clients yes`.
    pub client_ca: Option<String>,
    /// Only this TLS version (`TLSv1.3`), when set.
    pub tls_protocols: Option<String>,
    /// `--requirepass` (the `default` user's password).
    pub requirepass: Option<String>,
    /// ACL rules, one `--user` each (`probe on >pw ~* +@all`).
    pub users: Vec<String>,
    /// `--replicaof 127.0.0.1 <port>`.
    pub replica_of: Option<u16>,
    /// The replica logs in to its master as the first ACL user (`--masteruser`,
    /// `--masterauth` from its rule's `>password`).
    pub masterauth: bool,
}

/// A running Redis server; stopped and removed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    server: Server,
    port: u16,
}

impl RedisServer {
    /// Starts a server as `spec` says.
    pub fn start(spec: &RedisSpec) -> Result<RedisServer, ChildError> {
        let mut last = None;
        // A port taken from 127.0.0.1:0 may be lost before the server binds it.
        for _ in 0..3 {
            match Self::launch(spec) {
                Ok(s) => return Ok(s),
                Err(e @ ChildError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ChildError::Command {
            command: "redis-server".into(),
            output: "did not start".into(),
        }))
    }

    fn launch(spec: &RedisSpec) -> Result<RedisServer, ChildError> {
        let dir = server_dir("depprobe-redis-")?;
        let port = free_port().map_err(io_err("taking a free port"))?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--supervised", "systemd", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"));
        match &spec.tls {
            Some(id) => {
                let (cert, key) =
                    id.write(dir.path(), "server")
                        .map_err(|e| ChildError::Command {
                            command: "writing the server certificate".into(),
                            output: e.to_string(),
                        })?;
                let ca = dir.path().join("client-ca.pem");
                let ca_pem = spec.client_ca.as_deref().unwrap_or(&id.chain_pem);
                std::fs::write(&ca, ca_pem).map_err(io_err("writing the client CA"))?;
                let auth = if spec.client_ca.is_some() {
                    "yes"
                } else {
                    "no"
                };
                cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&cert)
                    .arg("--tls-key-file")
                    .arg(&key)
                    .arg("--tls-ca-cert-file")
                    .arg(&ca)
                    .args(["--tls-auth-clients", auth]);
                if let Some(p) = &spec.tls_protocols {
                    cmd.args(["--tls-protocols", p]);
                }
            }
            None => {
                cmd.args(["--port", &port.to_string()]);
            }
        }
        if let Some(pw) = &spec.requirepass {
            cmd.args(["--requirepass", pw]);
        }
        for rule in &spec.users {
            // redis-server joins the words after an option into its config line.
            cmd.arg("--user").args(rule.split(' '));
        }
        if let Some(p) = spec.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        if spec.masterauth
            && let Some(rule) = spec.users.first()
        {
            let user = rule.split(' ').next().unwrap_or_default();
            let password = rule
                .split(' ')
                .find_map(|w| w.strip_prefix('>'))
                .unwrap_or_default();
            cmd.args(["--masteruser", user, "--masterauth", password]);
        }
        let server = Server::start(cmd, dir, "redis.log")?;
        Ok(RedisServer { server, port })
    }

    /// The port (the TLS port for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of `redis-server`.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Runs a command over the server's plaintext port with `redis-cli` (for a
    /// plaintext server only), with `password` from the environment (`--user` among
    /// `args` names an ACL user).
    pub fn cli(&self, password: Option<&str>, args: &[&str]) -> Result<String, ChildError> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = password {
            cmd.env("REDISCLI_AUTH", p);
        }
        run(cmd.args(args), "redis-cli")
    }
}
