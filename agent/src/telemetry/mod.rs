//! Telemetry: where outcomes go after the state has seen them.
//!
//! `/metrics` is rendered straight from the state ([`prom`]); when OTLP is
//! configured, an OpenTelemetry meter provider observes the same metric families
//! ([`metrics::families`]) through a reader collected on a timer by an export task. Spans are built from outcomes and exported through a bounded queue.
//! Exporters run in their own tasks: a down or slow collector never stops or delays
//! probing, and memory stays bounded.

pub mod metrics;
pub mod otlp;
pub mod prom;
pub mod schedule;
pub mod traces;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use depprobe_config::TelemetryConfig;
use depprobe_probes::Outcome;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::trace::{RandomIdGenerator, SpanExporter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::State;
use metrics::Instruments;
use schedule::Lateness;
use traces::{FailureLog, SpanQueue};

/// The agent's version, reported as `service.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Series per instrument and target at most, with headroom for reloads that add
/// targets: 8 covers the longest list (phases of a run, certificates of a chain).
const SERIES_PER_TARGET: usize = 12;

/// Series per instrument at least (OpenTelemetry's default, 2000, is too low for an
/// agent with thousands of targets).
const MIN_CARDINALITY_LIMIT: usize = 4096;

/// Targets whose metrics go in one OTLP export request. About 15 series a target at
/// some 200 bytes each: 500 targets make requests of 1 to 2 MB, well under the 4 MiB
/// a gRPC server (the Collector's OTLP receiver included) accepts by default.
pub const TARGETS_PER_EXPORT: usize = 500;

/// How many OTLP metric exports `targets` targets are split into.
pub fn export_shards(targets: usize) -> usize {
    targets.div_ceil(TARGETS_PER_EXPORT).max(1)
}

/// The cardinality limit of every instrument for `targets` targets. The SDK sizes a
/// map per instrument for the limit up front, so it must not be set far above what
/// is needed (a fixed million cost some 35 MB); series past it are folded into one
/// `otel.metric.overflow` series, which a restart after a reload that multiplied the
/// targets fixes.
pub fn cardinality_limit(targets: usize) -> usize {
    targets
        .saturating_mul(SERIES_PER_TARGET)
        .max(MIN_CARDINALITY_LIMIT)
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP settings are unusable.
    #[error(transparent)]
    Otlp(#[from] otlp::OtlpError),
}

/// The running telemetry pipeline.
pub struct Telemetry {
    state: Arc<State>,
    instruments: Instruments,
    providers: Vec<SdkMeterProvider>,
    resource: Resource,
    spans: Mutex<Option<SpanQueue>>,
    span_task: Mutex<Option<JoinHandle<()>>>,
    metrics_task: Mutex<Option<(JoinHandle<()>, watch::Sender<bool>)>>,
    scope: InstrumentationScope,
    ids: RandomIdGenerator,
    schedule: Mutex<Lateness>,
    /// The OTLP settings, when OTLP export is on.
    pub otlp: Option<otlp::OtlpSettings>,
}

/// The resource: `service.name=depprobe` (unless `OTEL_SERVICE_NAME` says
/// otherwise), `service.version`, `service.instance.id`, `host.name`, the
/// `OTEL_RESOURCE_ATTRIBUTES`, and the configured attributes (which win).
pub fn resource(cfg: &TelemetryConfig) -> Resource {
    let env_attrs = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    let mut b = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() && !env_attrs.contains("service.name=") {
        b = b.with_service_name("depprobe");
    }
    b = b.with_attribute(KeyValue::new("service.version", VERSION));
    if !env_attrs.contains("service.instance.id=")
        && !cfg.resource.contains_key("service.instance.id")
    {
        b = b.with_attribute(KeyValue::new("service.instance.id", instance_id()));
    }
    if let Some(host) = host_name() {
        b = b.with_attribute(KeyValue::new("host.name", host));
    }
    for (k, v) in &cfg.resource {
        b = b.with_attribute(KeyValue::new(k.clone(), v.clone()));
    }
    b.build()
}

/// A random (version 4, RFC 9562) UUID, as semconv asks of `service.instance.id`.
fn instance_id() -> String {
    use opentelemetry_sdk::trace::IdGenerator;
    let mut bytes = RandomIdGenerator::default().new_trace_id().to_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
    let hex = format!("{:032x}", u128::from_be_bytes(bytes));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// Lets the meter provider own a reader that an export task also holds.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The metrics export task and its stop signal, the span queue, the span task.
type ExportTasks = (
    (JoinHandle<()>, watch::Sender<bool>),
    SpanQueue,
    JoinHandle<()>,
);

/// The export tasks of OTLP settings `s`: metrics (read through `readers`, in
/// `parts`) and spans.
fn start_export(
    s: &otlp::OtlpSettings,
    readers: Vec<Arc<ManualReader>>,
    parts: Parts,
    resource: &Resource,
    state: Arc<State>,
) -> Result<ExportTasks, TelemetryError> {
    let exporter = s.metric_exporter()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(metrics_loop(
        readers,
        parts,
        exporter,
        s.metrics_interval,
        s.timeout,
        s.display_endpoint("metrics"),
        stop_rx,
    ));
    let mut span_exporter = s.span_exporter()?;
    span_exporter.set_resource(resource);
    let (queue, span_task) = traces::start(
        span_exporter,
        state,
        s.timeout,
        s.display_endpoint("traces"),
    );
    Ok(((task, stop_tx), queue, span_task))
}

/// Says where OTLP goes, once at start.
fn log_export(s: &otlp::OtlpSettings, shards: usize) {
    tracing::info!(
        "exporting OTLP ({}) to {}{}",
        match s.protocol {
            depprobe_config::OtlpProtocol::Grpc => "grpc",
            depprobe_config::OtlpProtocol::HttpProtobuf => "http/protobuf",
        },
        s.display_endpoint("traces"),
        if shards > 1 {
            format!("; metrics in parts of up to {TARGETS_PER_EXPORT} targets ({shards} now)")
        } else {
            String::new()
        }
    );
}

impl Telemetry {
    /// Starts the pipeline for `cfg`, observing `state`, sized for `targets` targets
    /// (see [`cardinality_limit`]).
    pub fn start(
        cfg: &TelemetryConfig,
        state: Arc<State>,
        targets: usize,
    ) -> Result<Telemetry, TelemetryError> {
        let limit = cardinality_limit(targets.div_ceil(export_shards(targets)));
        let resource = resource(cfg);
        let otlp = otlp::settings(cfg)?;
        // With OTLP, the targets are split in parts, each read and exported on its own,
        // so that no export request outgrows what a collector accepts. Counters live
        // in one meter provider per part for the agent's lifetime (their start time
        // must not move); gauges, most of the series, are read through a provider
        // made for each export and dropped after it, so that the SDK does not keep a
        // copy of every series between exports.
        let shards = if otlp.is_some() {
            export_shards(targets)
        } else {
            1
        };
        let parts = Parts {
            resource: resource.clone(),
            state: state.clone(),
            limit,
        };
        let mut providers = Vec::with_capacity(shards);
        let mut readers = Vec::with_capacity(shards);
        let mut instruments = Instruments::default();
        for index in 0..shards {
            let reader = otlp.as_ref().map(|_| parts.reader());
            let provider = parts.provider(reader.clone());
            readers.extend(reader);
            let installed = Instruments::install(
                &provider.meter_with_scope(scope()),
                state.clone(),
                metrics::Shard { index, of: shards },
                metrics::Type::Counter,
            );
            if index == 0 {
                instruments = installed;
            }
            providers.push(provider);
        }

        let (metrics_task, spans, span_task) = match &otlp {
            Some(s) => {
                let (metrics_task, spans, span_task) =
                    start_export(s, readers, parts, &resource, state.clone())?;
                log_export(s, shards);
                (Some(metrics_task), Some(spans), Some(span_task))
            }
            None => (None, None, None),
        };
        Ok(Telemetry {
            state,
            instruments,
            providers,
            resource,
            spans: Mutex::new(spans),
            span_task: Mutex::new(span_task),
            metrics_task: Mutex::new(metrics_task),
            scope: InstrumentationScope::builder("depprobe")
                .with_version(VERSION)
                .build(),
            ids: RandomIdGenerator::default(),
            schedule: Mutex::new(Lateness::new()),
            otlp,
        })
    }

    /// Records a finished run (after the state has added its findings).
    pub fn record(&self, outcome: &Outcome, target: &[KeyValue]) {
        if let Ok(q) = self.spans.lock()
            && let Some(q) = q.as_ref()
        {
            q.push(traces::spans(outcome, target, &self.scope, &self.ids));
        }
    }

    /// Records how late a run started against its schedule.
    pub fn record_lateness(&self, late: Duration) {
        self.instruments.record_lateness(late.as_secs_f64());
        if let Ok(mut s) = self.schedule.lock() {
            s.record(late);
        }
    }

    /// How late runs started since the agent started, as JSON (`/schedule`).
    pub fn schedule_json(&self) -> String {
        match self.schedule.lock() {
            Ok(s) => s.to_json(),
            Err(_) => "{}".to_owned(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn prometheus_text(&self) -> String {
        prom::render(&self.state, &self.resource, &self.lateness_buckets())
    }

    /// The same, handed to `sink` in pieces as it is rendered (`/metrics`); stops
    /// when `sink` returns false.
    pub fn prometheus_into(&self, sink: &mut dyn FnMut(String) -> bool) {
        prom::render_into(&self.state, &self.resource, &self.lateness_buckets(), sink)
    }

    /// The lateness buckets, copied out first: runs record into that histogram.
    fn lateness_buckets(&self) -> prom::Buckets {
        match self.schedule.lock() {
            Ok(s) => s.buckets(metrics::LATENESS_BOUNDARIES),
            Err(_) => Lateness::new().buckets(metrics::LATENESS_BOUNDARIES),
        }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Exports what is pending (last metrics, queued spans), within `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        if let Ok(mut q) = self.spans.lock() {
            q.take();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let span_task = self.span_task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = span_task {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        let metrics_task = self.metrics_task.lock().ok().and_then(|mut t| t.take());
        if let Some((task, stop)) = metrics_task {
            let _ = stop.send(true);
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        for p in &self.providers {
            let _ = p.shutdown();
        }
        let dropped = self.state.dropped_spans.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::info!("{dropped} spans were dropped in total");
        }
    }
}

/// How the metrics are split for OTLP export, and how a part's gauges are read.
#[derive(Clone)]
struct Parts {
    resource: Resource,
    state: Arc<State>,
    limit: usize,
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("depprobe")
        .with_version(VERSION)
        .build()
}

impl Parts {
    fn reader(&self) -> Arc<ManualReader> {
        Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        )
    }

    fn provider(&self, reader: Option<Arc<ManualReader>>) -> SdkMeterProvider {
        let limit = self.limit;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(self.resource.clone())
            .with_view(move |_: &opentelemetry_sdk::metrics::Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            });
        if let Some(r) = reader {
            builder = builder.with_reader(SharedReader(r));
        }
        builder.build()
    }

    /// Reads the gauges of part `index` through a provider made for this read.
    /// Reads the gauges of part `shard` through a provider made for this read.
    fn gauges(
        &self,
        shard: metrics::Shard,
    ) -> Result<ResourceMetrics, opentelemetry_sdk::error::OTelSdkError> {
        let reader = self.reader();
        let limit = cardinality_limit(self.state.len().div_ceil(shard.of));
        let provider = Parts {
            limit,
            ..self.clone()
        }
        .provider(Some(reader.clone()));
        let _ = Instruments::install(
            &provider.meter_with_scope(scope()),
            self.state.clone(),
            shard,
            metrics::Type::Gauge,
        );
        let mut rm = ResourceMetrics::default();
        let collected = reader.collect(&mut rm);
        let _ = provider.shutdown();
        collected.map(|()| rm)
    }
}

/// Whether `rm` holds any metric (an empty request is not sent).
fn has_metrics(rm: &ResourceMetrics) -> bool {
    rm.scope_metrics().any(|s| s.metrics().next().is_some())
}

async fn metrics_loop<E: PushMetricExporter>(
    counters: Vec<Arc<ManualReader>>,
    parts: Parts,
    exporter: E,
    every: Duration,
    timeout: Duration,
    endpoint: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut log = FailureLog::new("metrics", endpoint);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        // One request per part of the counters (parts fixed at start), then per part
        // of the gauges (parts sized to the targets configured now, so a reload that
        // adds targets adds parts). Reading the state into the SDK's form happens off
        // the probes' thread.
        let gauge_parts = export_shards(parts.state.len());
        let jobs = (0..counters.len())
            .map(|i| (Some(counters[i].clone()), i, counters.len()))
            .chain((0..gauge_parts).map(|i| (None, i, gauge_parts)));
        let mut failed = None;
        for (counter_reader, index, of) in jobs {
            let part = parts.clone();
            let collected = tokio::task::spawn_blocking(move || match counter_reader {
                Some(reader) => {
                    let mut rm = ResourceMetrics::default();
                    reader.collect(&mut rm).map(|()| rm)
                }
                None => part.gauges(metrics::Shard { index, of }),
            })
            .await;
            let rm = match collected {
                Ok(Ok(rm)) if has_metrics(&rm) => rm,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::debug!("metrics collection failed: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::debug!("metrics collection did not finish: {e}");
                    continue;
                }
            };
            let outcome = tokio::time::timeout(timeout, exporter.export(&rm)).await;
            drop(rm);
            let error = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            parts
                .state
                .metric_export_failures
                .fetch_add(1, Ordering::Relaxed);
            failed.get_or_insert(error);
        }
        match failed {
            None => log.success(),
            Some(e) => log.failure(&e, 0),
        }
        crate::memory::trim();
        if last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_is_a_version_4_uuid() {
        let id = instance_id();
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{id}");
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{id}");
    }

    #[test]
    fn metric_exports_are_split_every_500_targets() {
        assert_eq!(export_shards(0), 1);
        assert_eq!(export_shards(1), 1);
        assert_eq!(export_shards(TARGETS_PER_EXPORT), 1);
        assert_eq!(export_shards(TARGETS_PER_EXPORT + 1), 2);
        assert_eq!(export_shards(10_000), 20);
    }

    #[test]
    fn every_target_is_in_exactly_one_shard_and_the_agent_in_the_first() {
        let of = export_shards(1_234);
        let shards: Vec<metrics::Shard> =
            (0..of).map(|index| metrics::Shard { index, of }).collect();
        let meta = depprobe_probes::ProbeMeta {
            name: "t".into(),
            kind: depprobe_config::Kind::new("tls"),
            target: depprobe_probes::outcome::Target {
                address: "localhost".into(),
                port: 443,
            },
            timeout: Duration::from_secs(1),
            budgets: Vec::new(),
            secrets: Vec::new(),
            attributes: &[],
            memory: Default::default(),
            propagate_trace: true,
            tracestate: None,
        };
        for order in 0..1_234 {
            let t = crate::state::TargetState::new(&meta, order, 0);
            let holding = shards.iter().filter(|s| s.holds(Some(&t))).count();
            assert_eq!(holding, 1, "target {order}");
        }
        let agent: Vec<usize> = shards
            .iter()
            .filter(|s| s.holds(None))
            .map(|s| s.index)
            .collect();
        assert_eq!(agent, vec![0]);
    }
}
