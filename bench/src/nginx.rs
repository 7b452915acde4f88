//! The target server: Debian's nginx, outside every measured process, with TLS 1.3
//! only, an ECDSA P-256 certificate, and no session cache or tickets (so every probe
//! pays a full handshake).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::procfs::{self, Usage};

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// The ports it serves HTTPS on (127.0.0.1).
    pub ports: Vec<u16>,
    curve_log: PathBuf,
    error_log: PathBuf,
}

/// Where nginx is looked for.
pub const BINARIES: &[&str] = &["/usr/sbin/nginx", "/usr/bin/nginx"];

impl Nginx {
    /// Starts nginx in `dir` on `ports` free ports with the certificate chain and key
    /// at `cert` and `key`, and waits until every port accepts connections.
    pub fn start(dir: &Path, cert: &Path, key: &Path, ports: usize) -> Result<Nginx, BenchError> {
        let bin = BINARIES
            .iter()
            .find(|b| Path::new(b).exists())
            .ok_or_else(|| BenchError::Missing("nginx (Debian package nginx-light)".into()))?;
        let ports: Vec<u16> = (0..ports.max(1))
            .map(|_| depprobe_tests::free_port().map_err(BenchError::Io))
            .collect::<Result<_, _>>()?;
        let listens: String = ports
            .iter()
            .map(|p| format!("    listen 127.0.0.1:{p} ssl;\n"))
            .collect();
        // nginx drops to `nobody` when started as root; the bench's files are private.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let d = dir.display();
        let curve_log = dir.join("curves.log");
        let error_log = dir.join("error.log");
        let conf = format!(
            "{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  log_format curve '$ssl_curve';
  server {{
{listens}    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / {{
      access_log {curves} curve;
      return 200 \"ok\\n\";
    }}
  }}
}}
",
            cert = cert.display(),
            key = key.display(),
            curves = curve_log.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(BenchError::Io)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BenchError::Io)?;
        let mut nginx = Nginx {
            child,
            ports,
            curve_log,
            error_log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in nginx.ports.clone() {
            let addr = SocketAddr::from(([127, 0, 0, 1], p));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    return Err(BenchError::Server(format!(
                        "nginx exited ({status}): {}",
                        nginx.errors()
                    )));
                }
                if Instant::now() > deadline {
                    return Err(BenchError::Server(format!(
                        "nginx does not accept on {addr}: {}",
                        nginx.errors()
                    )));
                }
                // Readiness poll: nginx binds its ports after reading its config.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(nginx)
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// CPU and memory of the master and its workers.
    pub fn usage(&self) -> Result<Usage, BenchError> {
        procfs::usage_with_children(self.child.id())
    }

    /// Bytes logged so far to the curve log (a mark for [`Nginx::curves_since`]).
    pub fn curve_mark(&self) -> u64 {
        std::fs::metadata(&self.curve_log)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The key-exchange groups of the HTTP requests served since `mark`, with counts.
    pub fn curves_since(&self, mark: u64) -> BTreeMap<String, u64> {
        let text = std::fs::read(&self.curve_log).unwrap_or_default();
        let start = usize::try_from(mark).unwrap_or(0).min(text.len());
        let mut out = BTreeMap::new();
        for line in String::from_utf8_lossy(&text[start..]).lines() {
            let l = line.trim();
            if !l.is_empty() {
                *out.entry(l.to_owned()).or_default() += 1;
            }
        }
        out
    }
}

impl crate::agent::Server for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    fn usage(&self) -> Result<Usage, BenchError> {
        Nginx::usage(self)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
