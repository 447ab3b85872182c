//! Metric names and the Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Every message received from the broker, before decoding.
pub const MESSAGES_IN: &str = "kordon_mqtt_messages_received_total";
pub const FIXES_IN: &str = "kordon_fixes_total";
pub const STATUS_IN: &str = "kordon_status_messages_total";
pub const REFUSED: &str = "kordon_messages_refused_total";
pub const ALERTS: &str = "kordon_alert_events_total";
pub const ESCALATIONS: &str = "kordon_escalation_messages_total";
pub const POSITION_REQUESTS: &str = "kordon_position_requests_total";
pub const PUBLISHED: &str = "kordon_published_total";
pub const PUBLISH_FAILED: &str = "kordon_publish_failed_total";
pub const FIX_TO_ALERT: &str = "kordon_fix_to_alert_seconds";
pub const TIME_TO_ACK: &str = "kordon_time_to_ack_seconds";
pub const CORE_QUEUE_DEPTH: &str = "kordon_core_queue_depth";
/// Messages received and waiting to go to the engine's thread.
pub const INBOX_DEPTH: &str = "kordon_inbox_depth";
/// QoS 1 messages left unacknowledged because every queue was full (the
/// broker delivers them again on the next connection), and QoS 0 messages
/// dropped for the same reason.
pub const DEFERRED: &str = "kordon_messages_deferred_total";
/// Times the engine's thread was found busy and the connection waited.
pub const ENGINE_BUSY: &str = "kordon_engine_busy_total";
/// 1 while kordon takes input more slowly than it arrives (the engine's
/// queue was found full and the inbox has not emptied since), else 0.
pub const OVERLOADED: &str = "kordon_overloaded";
/// Alerts that asked someone to act and are still unacknowledged past
/// their acknowledgement deadline (`[reports.targets]`), by audience
/// (`monitoring`, `police`).
pub const ALERTS_OVERDUE: &str = "kordon_alerts_overdue";
/// Handling a message panicked; it was refused (`handling_failed`).
pub const HANDLING_FAILED: &str = "kordon_handling_failed_total";
pub const PUBLISH_QUEUE_DEPTH: &str = "kordon_publish_queue_depth";
pub const BROKER_CONNECTED: &str = "kordon_broker_connected";
pub const BROKER_CONNECTION_ERRORS: &str = "kordon_broker_connection_errors_total";
/// Alert messages whose echo never came back (see `delivery`).
pub const UNCONFIRMED: &str = "kordon_alert_messages_unconfirmed_total";
/// Attempts to deliver a CAP message to a police dispatch webhook, by
/// outcome (`delivered`, `refused`, `failed`).
pub const WEBHOOK_ATTEMPTS: &str = "kordon_webhook_attempts_total";
/// CAP messages the webhook deliverer's full queue could not take (they
/// are delivered at the next start).
pub const WEBHOOK_QUEUE_FULL: &str = "kordon_webhook_queue_full_total";
/// Messages the embedded broker skipped for a lagging subscriber.
pub const EMBEDDED_BROKER_LOSS: &str = "kordon_embedded_broker_cursor_jumps_total";

/// The process-wide recorder, installed once (tests start several servers
/// in one process; they share it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(FIX_TO_ALERT.to_string()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TIME_TO_ACK.to_string()),
                        &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(kordon_journal::writer::COMMIT_SECONDS.to_string()),
                        &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(kordon_journal::writer::BATCH_RECORDS.to_string()),
                        &[
                            1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0, 4096.0,
                        ],
                    )
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed: then /metrics
            // shows this recorder's (empty) view, which the log says.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
