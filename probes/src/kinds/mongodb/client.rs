//! The driver client: its options from the URL and the probe's settings, its
//! connections through the probe's relay, and the watch as its SDAM event handler.

use std::sync::Arc;
use std::time::Duration;

use mongodb::Client;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, Tls};

use depprobe_config::Secret;
use super::spec::MongoUrl;

use super::classify::driver_error;
use super::phase_for;
use super::relay::Relay;
use super::watch::ReplicaSetWatch;
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// How the probe's driver client is made.
pub(super) struct DriverSettings {
    /// The connection string (with its password, if written there).
    pub url: MongoUrl,
    /// A user name that overrides the URL's.
    pub username: Option<String>,
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Duration,
    /// `connectTimeoutMS`: connect, TLS and `hello` to one member.
    pub connect_timeout: Duration,
    /// `heartbeatFrequencyMS`.
    pub heartbeat_frequency: Duration,
    /// `maxIdleTimeMS`: short, so that each run logs in afresh.
    pub pool_idle: Duration,
}

impl DriverSettings {
    /// A new client reporting to `watch`, logging in with `password`, whose every
    /// connection goes through `relay` (which speaks TLS to the members when the URL
    /// asks for it: the driver itself speaks plain to the relay).
    pub async fn connect(
        &self,
        password: Option<&Secret>,
        watch: Arc<ReplicaSetWatch>,
        relay: &Relay,
    ) -> Result<Client, ProbeError> {
        let setup = |e: mongodb::error::Error| {
            let (class, message) = match e.kind.as_ref() {
                mongodb::error::ErrorKind::InvalidTlsConfig { message, .. } => (
                    ErrorType::CredentialInvalid,
                    format!("the TLS files cannot be used: {message}"),
                ),
                _ => driver_error(&e).unwrap_or((
                    ErrorType::UnexpectedResponse,
                    format!("driver setup: {}", e.kind),
                )),
            };
            ProbeError::new(class, phase_for(class, Phase::Auth), message)
        };
        let mut opts = ClientOptions::parse(self.url.expose())
            .await
            .map_err(setup)?;
        opts.app_name.get_or_insert_with(|| "depprobe".to_owned());
        opts.connect_timeout = Some(self.connect_timeout);
        opts.server_selection_timeout = Some(self.server_selection_timeout);
        opts.heartbeat_freq = Some(self.heartbeat_frequency);
        opts.max_idle_time = Some(self.pool_idle);
        if self.username.is_some() || password.is_some() {
            let mut cred = opts.credential.take().unwrap_or_default();
            if let Some(u) = &self.username {
                cred.username = Some(u.clone());
            }
            if let Some(p) = password {
                cred.password = Some(p.expose().to_owned());
            }
            opts.credential = Some(cred);
        }
        opts.tls = Some(Tls::Disabled);
        opts.socks5_proxy = Some(relay.proxy());
        opts.sdam_event_handler = Some(EventHandler::callback(move |event| watch.handle(event)));
        Client::with_options(opts).map_err(setup)
    }
}
