//! `kind: smtp`: a mail relay's greeting, `EHLO`, `STARTTLS` and login; never a
//! message.
//!
//! One run: dial (TLS at once for `smtps://`), read the greeting, `EHLO`; for
//! `smtp://` the relay must offer `STARTTLS` and accept it (`tls_not_offered`
//! otherwise), the TLS handshake follows on the same connection (the chain captured
//! whether it verifies or not) and `EHLO` again; with a user, `AUTH PLAIN` (or
//! `LOGIN` when that is all the relay offers) over TLS; then `QUIT`. `535` and the
//! other refusals of a login are `auth_rejected`; a greeting or an `EHLO` refused
//! (`421`, `554`) is `unexpected_response` with the code and the relay's text. SMTP
//! is a few lines of text: written by hand.

pub mod spec;

use base64::Engine;

use depprobe_config::ProbeConfig;
use crate::kinds::broker_url::BrokerTarget;
use spec::{SmtpSpec, StartTls};

use crate::outcome::Target;
use crate::run::{ProbeError, ProbeMeta, Run};
use crate::taxonomy::{ErrorType, Phase};
use crate::secrets::read_for_run;
use crate::transport::lines::Lines;
use crate::transport::tls::TlsClient;
use crate::transport::{Dns, dial, upgrade};
use crate::kinds::ProbeKind;
use crate::{BuildError, Exec, ProbeEnv};

/// The longest reply line read (RFC 5321 says 512; some relays write more).
const MAX_LINE: usize = 8 * 1024;
/// The most lines in one reply (an `EHLO` answer is a dozen).
const MAX_REPLY_LINES: usize = 100;

/// An `smtp` probe.
pub struct SmtpProbe {
    meta: ProbeMeta,
    target: BrokerTarget,
    starttls: StartTls,
    ehlo_name: String,
    tls: TlsClient,
    dns: Dns,
}

/// One SMTP reply: its code and its lines' texts.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// "554 5.7.1 no thanks".
    fn text(&self) -> String {
        let mut t = format!("{} {}", self.code, self.lines.join(" / "));
        t.truncate(300);
        t
    }

    /// Whether an `EHLO` reply names `extension` (its first word).
    fn offers(&self, extension: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let mut words = l.splitn(2, [' ', '=']);
            words
                .next()
                .filter(|w| w.eq_ignore_ascii_case(extension))
                .map(|_| words.next().unwrap_or(""))
        })
    }
}

async fn reply(lines: &mut Lines, phase: Phase) -> Result<Reply, ProbeError> {
    let mut out = Reply {
        code: 0,
        lines: Vec::new(),
    };
    for _ in 0..MAX_REPLY_LINES {
        let line = lines
            .line(
                phase,
                "the server closed the connection in the middle of the SMTP dialogue",
            )
            .await?;
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let (Some(code), sep) = (code, line.as_bytes().get(3).copied()) else {
            return Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                phase,
                format!(
                    "the server's reply is not SMTP: {}",
                    crate::transport::http_client::snippet(line.as_bytes())
                ),
            ));
        };
        out.code = code;
        out.lines.push(line.get(4..).unwrap_or("").to_owned());
        if sep != Some(b'-') {
            return Ok(out);
        }
    }
    Err(ProbeError::new(
        ErrorType::UnexpectedResponse,
        phase,
        format!("the server's reply has more than {MAX_REPLY_LINES} lines"),
    ))
}

/// Sends `command` and reads the reply.
async fn command(lines: &mut Lines, command: &str, phase: Phase) -> Result<Reply, ProbeError> {
    lines.send(&format!("{command}\r\n"), phase).await?;
    reply(lines, phase).await
}

fn refused(what: &str, r: &Reply, class: ErrorType, phase: Phase) -> ProbeError {
    ProbeError::new(
        class,
        phase,
        format!("the server refused {what}: {}", r.text()),
    )
}

impl SmtpProbe {
    /// Builds the probe.
    pub fn new(cfg: &ProbeConfig, spec: &SmtpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        let target = spec
            .target()
            .map_err(|(key, e)| BuildError::Invalid(format!("{key}: {e}")))?;
        Ok(SmtpProbe {
            meta: ProbeMeta::new(
                cfg,
                Target {
                    address: target.url.host.clone(),
                    port: target.url.port,
                },
            ),
            target,
            starttls: spec.starttls,
            ehlo_name: spec.ehlo_name.clone(),
            tls: TlsClient::from_spec(&spec.tls, &[])?,
            dns: env.dns.clone(),
        })
    }

    async fn ehlo(&self, lines: &mut Lines) -> Result<Reply, ProbeError> {
        let r = command(lines, &format!("EHLO {}", self.ehlo_name), Phase::Request).await?;
        if r.code != 250 {
            return Err(refused(
                "EHLO",
                &r,
                ErrorType::UnexpectedResponse,
                Phase::Request,
            ));
        }
        Ok(r)
    }

    /// The greeting (its first line is returned) and the first `EHLO`.
    async fn hello(&self, lines: &mut Lines) -> Result<(String, Reply), ProbeError> {
        let greeting = reply(lines, Phase::Request).await?;
        if greeting.code != 220 {
            return Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Request,
                format!("the server's greeting is a refusal: {}", greeting.text()),
            ));
        }
        let mut banner = greeting.lines.first().cloned().unwrap_or_default();
        banner.truncate(200);
        Ok((banner, self.ehlo(lines).await?))
    }

    /// `STARTTLS`, offered and accepted (the handshake is the caller's).
    async fn ask_starttls(&self, lines: &mut Lines, ehlo: &Reply) -> Result<(), ProbeError> {
        if ehlo.offers("STARTTLS").is_none() {
            return Err(ProbeError::new(
                ErrorType::TlsNotOffered,
                Phase::Tls,
                "the server does not offer STARTTLS in its EHLO reply; mail to it travels in plaintext",
            ));
        }
        let r = command(lines, "STARTTLS", Phase::Tls).await?;
        if r.code != 220 {
            return Err(refused(
                "STARTTLS",
                &r,
                ErrorType::TlsNotOffered,
                Phase::Tls,
            ));
        }
        Ok(())
    }

    /// `AUTH PLAIN` (or `LOGIN`), over TLS only.
    async fn login(
        &self,
        lines: &mut Lines,
        ehlo: &Reply,
        user: &str,
        password: &str,
    ) -> Result<(), ProbeError> {
        let phase = Phase::Auth;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let offered = ehlo.offers("AUTH").unwrap_or("").to_ascii_uppercase();
        let mechanisms: Vec<&str> = offered.split_whitespace().collect();
        let r = if mechanisms.contains(&"PLAIN") {
            command(
                lines,
                &format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{password}"))),
                phase,
            )
            .await?
        } else if mechanisms.contains(&"LOGIN") {
            let r = command(lines, "AUTH LOGIN", phase).await?;
            if r.code != 334 {
                return Err(refused("AUTH LOGIN", &r, ErrorType::AuthRejected, phase));
            }
            let r = command(lines, &b64(user), phase).await?;
            if r.code != 334 {
                return Err(refused("the user name", &r, ErrorType::AuthRejected, phase));
            }
            command(lines, &b64(password), phase).await?
        } else {
            return Err(ProbeError::new(
                ErrorType::AuthRejected,
                phase,
                format!(
                    "the server offers no PLAIN or LOGIN authentication (AUTH {})",
                    if offered.is_empty() {
                        "absent"
                    } else {
                        offered.as_str()
                    }
                ),
            ));
        };
        match r.code {
            235 => Ok(()),
            _ => Err(refused(
                &format!("the login of {user}"),
                &r,
                ErrorType::AuthRejected,
                phase,
            )),
        }
    }
}

impl Exec for SmtpProbe {
    fn meta(&self) -> &ProbeMeta {
        &self.meta
    }

    async fn exec(&self, run: &mut Run<'_>) -> Result<String, ProbeError> {
        let password =
            read_for_run(run, self.target.password.as_ref(), "password")?
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
        if !password.is_empty() {
            // AUTH LOGIN sends it in base64: scrub that form too.
            run.secret(&depprobe_config::Secret::new(
                base64::engine::general_purpose::STANDARD.encode(&password),
            ));
        }
        let url = &self.target.url;
        let tcp = dial(run, &self.dns, &url.host, url.port).await?;
        let io = match url.scheme.tls {
            true => upgrade(run, tcp, &url.host, &self.tls).await?.0,
            false => Box::new(tcp),
        };
        let mut lines = Lines::new(io, MAX_LINE);
        let (banner, mut ehlo) = run.phase(Phase::Request, self.hello(&mut lines)).await?;
        run.details.insert("smtp.greeting".into(), banner.into());
        let tls = url.scheme.tls || self.starttls == StartTls::Required;
        if !url.scheme.tls && tls {
            run.phase(Phase::Tls, self.ask_starttls(&mut lines, &ehlo))
                .await?;
            let io = lines.into_inner(Phase::Tls)?;
            let (io, _) = upgrade(run, io, &url.host, &self.tls).await?;
            lines = Lines::new(io, MAX_LINE);
            ehlo = run.phase(Phase::Request, self.ehlo(&mut lines)).await?;
        }
        let mut done = format!(
            "the server greeted, answered EHLO{}",
            if tls { " over TLS" } else { "" }
        );
        if let Some(user) = &url.user {
            run.phase(Phase::Auth, self.login(&mut lines, &ehlo, user, &password))
                .await?;
            done.push_str(&format!(" and accepted the login of {user}"));
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(300).min(run.remaining()),
            command(&mut lines, "QUIT", Phase::Request),
        )
        .await;
        lines.shutdown().await;
        Ok(format!("SMTP: {done}; no mail sent"))
    }
}

impl ProbeKind for SmtpProbe {
    const NAME: &'static str = "smtp";
    const ABOUT: &'static str = "a mail relay: greeting, EHLO, STARTTLS and a login; never a message";
    type Spec = SmtpSpec;
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[("network.protocol.name", "smtp")];

    fn build(cfg: &ProbeConfig, spec: &SmtpSpec, env: &ProbeEnv) -> Result<Self, BuildError> {
        Self::new(cfg, spec, env)
    }
}
