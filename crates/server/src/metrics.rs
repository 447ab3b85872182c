//! Metric names and the Prometheus recorder behind `/metrics`.

use std::sync::{Once, OnceLock};

use kordon_journal::writer as journal;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
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
/// Time the ingest link did not read because the engine's queue was full: the
/// broker held the backlog. Its rate over 1e6 is the share of time kordon
/// could not keep up.
pub const INGEST_PAUSED: &str = "kordon_ingest_paused_microseconds_total";
/// Times the engine's queue was found full and the ingest link waited.
pub const ENGINE_BUSY: &str = "kordon_engine_busy_total";
/// 1 while kordon takes input more slowly than it arrives (the engine's
/// queue was found full and the message that found it so waits), else 0.
pub const OVERLOADED: &str = "kordon_overloaded";
/// Bytes kordon wrote or queued on the ingest link that the broker has not
/// taken yet: acknowledgements, mostly. A broker too busy to read them
/// (Mosquitto reads one packet per connection per turn of its loop) keeps
/// every message they acknowledge, and after an overload it spends seconds
/// catching up on them (`docs/operations.md`).
pub const INGEST_UNSENT: &str = "kordon_ingest_unsent_bytes";
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
/// Cluster mode: the cluster's shard count (`[cluster] shards`), so that a
/// rule can compare it with the shards all instances serve.
pub const SHARDS: &str = "kordon_cluster_shards";
/// Cluster mode: the shards this instance serves.
pub const SHARDS_SERVED: &str = "kordon_cluster_shards_served";
/// Cluster mode: how long each served shard's tenure still runs without a
/// renewal, by shard (it stops serving at 0).
pub const TENURE_LEFT: &str = "kordon_cluster_tenure_remaining_seconds";
/// Cluster mode: messages of a served shard stored and not yet read, by shard.
pub const READER_LAG: &str = "kordon_cluster_reader_lag_messages";
/// Cluster mode: alert messages a shard decided that the alerts' stream
/// already held (decided again by a new owner after a take-over), and
/// that were therefore not sent again.
pub const ALREADY_STORED: &str = "kordon_cluster_alert_messages_already_stored_total";
/// Cluster mode, by `broker` (a device broker's host:port): how long the
/// oldest alert message that Mosquitto has not yet taken has waited in the
/// alerts' stream (0 when none waits).
pub const DELIVERY_DELAY: &str = "kordon_cluster_alert_delivery_delay_seconds";
/// Cluster mode, by `endpoint`: how long the oldest police CAP message a
/// webhook has not taken (nor been given up on) has waited in the alerts'
/// stream (0 when none waits).
pub const WEBHOOK_DELAY: &str = "kordon_cluster_webhook_delivery_delay_seconds";
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

/// The label values of `kordon_fixes_total{disposition=…}` (the engine's
/// dispositions, as `core_thread` spells them).
pub const DISPOSITIONS: &[&str] = &["accepted", "suspect", "duplicate", "late", "unusable"];
/// The label values of `kordon_webhook_attempts_total{outcome=…}`.
pub const WEBHOOK_OUTCOMES: &[&str] = &["delivered", "refused", "failed"];
/// The label values of `kordon_alerts_overdue{audience=…}`.
pub const AUDIENCES: &[&str] = &["monitoring", "police"];

/// Describes every metric kordon exports and makes each one appear in
/// `/metrics` from the start, before anything has happened: counters at 0,
/// gauges at 0, histograms with empty buckets. A rate, an alerting rule or
/// a dashboard panel then sees a series at 0 rather than none at all.
///
/// Labelled metrics are registered for the label values known in advance
/// (dispositions, refusal reasons, webhook outcomes, audiences); those whose
/// labels depend on what happens (alert events by kind and phase, fix →
/// alert latency by topic and kind) are described only and appear with
/// their first sample.
///
/// Installs the recorder ([`handle`]) first. Idempotent: registering adds
/// nothing to a value (`increment(0)`), and only the first call does it, so
/// a second server in the same process (tests) resets nothing.
pub fn describe_all() {
    static DONE: Once = Once::new();
    let _ = handle();
    DONE.call_once(register_all);
}

fn register_all() {
    let counters: &[(&'static str, &'static str)] = &[
        (MESSAGES_IN, "MQTT messages received from the broker, before decoding."),
        (
            STATUS_IN,
            "Device status messages (strap, battery, GPS state) handled.",
        ),
        (
            ESCALATIONS,
            "Escalation messages sent to case coordinators (kordon/v1/cases/+/coordinators).",
        ),
        (
            POSITION_REQUESTS,
            "Requests sent to a protected person's device for a fresh fix.",
        ),
        (PUBLISHED, "Messages kordon published to the broker."),
        (
            PUBLISH_FAILED,
            "Publishes the MQTT client refused (the message did not leave).",
        ),
        (
            INGEST_PAUSED,
            "Microseconds the ingest link did not read because kordon's queues were full; the broker held the backlog.",
        ),
        (
            ENGINE_BUSY,
            "Times the connection found the engine's queue full and waited.",
        ),
        (
            HANDLING_FAILED,
            "Messages whose handling panicked; each was refused as handling_failed.",
        ),
        (
            BROKER_CONNECTION_ERRORS,
            "Errors on the broker connection (each is followed by a reconnection attempt).",
        ),
        (
            UNCONFIRMED,
            "Alert messages whose copy never came back from the broker (check kordon's ACL).",
        ),
        (
            WEBHOOK_QUEUE_FULL,
            "CAP messages the webhook queue could not take (delivered at the next start).",
        ),
        (
            EMBEDDED_BROKER_LOSS,
            "Times the embedded broker skipped messages for a lagging subscriber (messages lost).",
        ),
        (
            journal::RECORDS,
            "Records committed to the journal.",
        ),
        (
            journal::FAILURES,
            "Journal commits that failed (retried until they succeed).",
        ),
        (
            journal::RETIRED,
            "Fixes retired by the journal's retention (content deleted, place in the chain kept).",
        ),
        (
            ALREADY_STORED,
            "Cluster mode: alert messages decided again after a take-over that the alerts' stream already held (not sent again).",
        ),
    ];
    for &(name, help) in counters {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    describe_counter!(
        journal::BYTES,
        Unit::Bytes,
        "Bytes of record bodies committed to the journal."
    );
    metrics::counter!(journal::BYTES).increment(0);

    describe_counter!(
        FIXES_IN,
        "Position fixes handled by the engine, by disposition."
    );
    for &disposition in DISPOSITIONS {
        metrics::counter!(FIXES_IN, "disposition" => disposition).increment(0);
    }
    describe_counter!(
        REFUSED,
        "Messages refused (and explained on kordon/v1/rejects), by reason."
    );
    for reason in kordon_ingest::Reason::ALL {
        metrics::counter!(REFUSED, "reason" => reason.code()).increment(0);
    }
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Attempts to deliver a CAP message to a police dispatch webhook, by outcome."
    );
    for &outcome in WEBHOOK_OUTCOMES {
        metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    describe_counter!(
        ALERTS,
        "Alert events (episodes opened, updated, cleared), by kind and phase."
    );

    let gauges: &[(&'static str, &'static str)] = &[
        (
            INGEST_UNSENT,
            "Bytes on the ingest link (acknowledgements, mostly: 4 bytes each) that the broker has not taken yet; it grows while the broker is too busy to read them.",
        ),
        (
            SHARDS,
            "Cluster mode: the cluster's shard count (0 outside a cluster).",
        ),
        (
            SHARDS_SERVED,
            "Cluster mode: the shards this instance serves (0 outside a cluster).",
        ),
        (
            WEBHOOK_DELAY,
            "Cluster mode, by endpoint: seconds the oldest police CAP message the webhook has not taken (nor been given up on) has waited in the alerts' stream (0 when none waits).",
        ),
        (
            CORE_QUEUE_DEPTH,
            "Commands waiting in the engine's queue: messages received, ticks, API calls.",
        ),
        (
            PUBLISH_QUEUE_DEPTH,
            "Alert messages waiting for the publisher.",
        ),
        (
            BROKER_CONNECTED,
            "1 while both of kordon's links to its broker (ingest and publishing) are connected, else 0.",
        ),
        (
            OVERLOADED,
            "1 while kordon takes input more slowly than it arrives, else 0.",
        ),
        (journal::BEHIND, "Jobs waiting for the journal writer."),
        (
            journal::RECORDS_WAITING,
            "Records waiting for the journal writer (it takes up to 16,384 before the engine waits).",
        ),
        (
            journal::UNCOMMITTED,
            "Records waiting for a failed journal commit to be retried (0 when commits succeed).",
        ),
    ];
    for &(name, help) in gauges {
        describe_gauge!(name, help);
        metrics::gauge!(name).increment(0.0);
    }
    // By shard or broker: described, with no series until a shard is
    // served, or a broker's delivery read.
    describe_gauge!(
        TENURE_LEFT,
        "Cluster mode: seconds each served shard's tenure still runs without a renewal, by shard."
    );
    describe_gauge!(
        READER_LAG,
        "Cluster mode: messages of a served shard stored and not yet read, by shard."
    );
    describe_gauge!(
        DELIVERY_DELAY,
        "Cluster mode, by broker (a device broker's host:port): seconds the oldest alert message not yet taken by that Mosquitto has waited in the alerts' stream (0 when none waits)."
    );
    describe_gauge!(
        ALERTS_OVERDUE,
        "Alerts asking for action still unacknowledged past their acknowledgement deadline, by audience."
    );
    for &audience in AUDIENCES {
        metrics::gauge!(ALERTS_OVERDUE, "audience" => audience).increment(0.0);
    }

    let histograms: &[(&'static str, Unit, &'static str)] = &[
        (
            TIME_TO_ACK,
            Unit::Seconds,
            "Time from an alert to the monitoring room's acknowledgement.",
        ),
        (
            journal::COMMIT_SECONDS,
            Unit::Seconds,
            "Time one journal commit took (write and sync).",
        ),
        (
            journal::BATCH_RECORDS,
            Unit::Count,
            "Records per journal commit.",
        ),
    ];
    for &(name, unit, help) in histograms {
        describe_histogram!(name, unit, help);
        // Registered without a sample: its buckets appear, all at 0.
        let _ = metrics::histogram!(name);
    }
    describe_histogram!(
        FIX_TO_ALERT,
        Unit::Seconds,
        "Time from decoding a fix to handing the alert it caused to the publishing link, by topic and kind."
    );
}
