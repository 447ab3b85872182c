//! `kordon cluster status` against a nats-server of the test's own, with two
//! instances' lease keepers running; `kordon run` in a cluster refusing an
//! embedded broker; `kordon cluster put-cases` refusing a device on
//! both sides of two cases; and `kordon cluster agree` taking a device
//! broker off the cluster's list.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kordon_cluster::testkit::Nats;
use kordon_cluster::{ClusterSettings, InstanceId, LeaseKeeper, LeaseTimes, Retention, ShardCount};

/// The shipped configuration with a `[cluster]` section, in `dir`.
fn config_with_cluster(dir: &Path, nats_url: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = std::fs::read_to_string(root.join("config/kordon.toml")).unwrap();
    let cases = root.join("config/cases");
    let text = shipped.replace(
        "dir = \"cases\"",
        &format!("dir = {:?}", cases.display().to_string()),
    ) + &format!("\n[cluster]\nnats_url = {nats_url:?}\ninstance = \"kordon-a\"\n");
    let path = dir.join("kordon.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn kordon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kordon"))
        .args(args)
        .output()
        .expect("kordon runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_shows_who_holds_every_shard() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cluster(dir.path(), &nats.url());
    let mut keepers = Vec::new();
    for name in ["kordon-a", "kordon-b"] {
        let settings = ClusterSettings {
            nats_url: nats.url(),
            bucket: ClusterSettings::DEFAULT_BUCKET.to_string(),
            instance: InstanceId::new(name).unwrap(),
            shards: ShardCount::DEFAULT,
            times: LeaseTimes::default(),
            replicas: 1,
            retention: Retention::default(),
        };
        keepers.push(LeaseKeeper::start(settings).await.unwrap());
    }
    // An instance with two device brokers joined before.
    let js =
        async_nats::jetstream::new(kordon_cluster::keeper::connect(&nats.url()).await.unwrap());
    let brokers = vec![
        "mq-1.example:8883".to_string(),
        "mq-2.example:8883".to_string(),
    ];
    let view = kordon_cluster::agreement::Agreement::new(ShardCount::DEFAULT, brokers);
    kordon_cluster::agreement::join(&js, 1, &view)
        .await
        .unwrap();
    let config = config.to_str().unwrap().to_string();
    let start = Instant::now();
    let text = loop {
        let out = kordon(&["cluster", "status", "--config", &config]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("held 64, free 0") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not every shard held:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(text.contains(&format!("cluster: {}", nats.url())), "{text}");
    assert!(
        text.contains("kordon-a") && text.contains("heard from"),
        "{text}"
    );
    assert!(text.contains("shard  owner"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" ago") && l.trim_start().starts_with(char::is_numeric))
            .count(),
        64,
        "{text}"
    );
    // Each broker's bridge and deliverer run on its shard's holder.
    for (i, broker) in ["mq-1.example:8883", "mq-2.example:8883"]
        .iter()
        .enumerate()
    {
        let line = text
            .lines()
            .find(|l| l.contains(broker))
            .unwrap_or_else(|| panic!("no line for {broker}:\n{text}"));
        assert!(line.trim_start().starts_with(&i.to_string()), "{line}");
        assert!(
            line.ends_with("kordon-a") || line.ends_with("kordon-b"),
            "{line}"
        );
    }
    for keeper in keepers {
        keeper.leave().await;
    }
}

/// Every instance of a cluster reads the devices' Mosquitto: one with an
/// embedded broker of its own would hear no device.
#[test]
fn kordon_run_in_a_cluster_refuses_an_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cluster(dir.path(), "nats://127.0.0.1:1");
    let out = kordon(&["run", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in a cluster, [broker] must name the devices' Mosquitto"),
        "{err}"
    );
}

#[test]
fn a_bad_cluster_section_is_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cluster(dir.path(), "http://nats");
    let out = kordon(&["cluster", "status", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cluster.nats_url"), "{err}");
}

/// `kordon cluster put-cases` checks a case as the case API does: a file
/// that would put the offender's bracelet of one case on the protected
/// side of another is refused, naming both, and none of the files is
/// stored; with the first stored alone, the second is refused against the
/// bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_cases_stores_nothing_when_a_device_would_be_on_both_sides() {
    let Some(nats) = Nats::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cluster(dir.path(), &nats.url());
    let config = config.to_str().unwrap();
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cases/rtm-2026-0117.json");
    let mut case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    case["id"] = "RTM-2026-0900".into();
    case["offender"]["device"] = "OFF-0900".into();
    case["protected"][0]["device"] = "OFF-0001".into(); // RTM-2026-0117's bracelet
    let conflicting = dir.path().join("rtm-2026-0900.json");
    std::fs::write(&conflicting, case.to_string()).unwrap();
    let (shipped, conflicting) = (shipped.to_str().unwrap(), conflicting.to_str().unwrap());

    let out = kordon(&[
        "cluster",
        "put-cases",
        "--config",
        config,
        shipped,
        conflicting,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("device `OFF-0001` is the offender's bracelet in case RTM-2026-0117"),
        "{err}"
    );
    assert!(err.contains("nothing stored"), "{err}");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let bucket = kordon_cluster::cases::open(&js, 1).await.unwrap();
    let stored = |id: &'static str| kordon_cluster::cases::stored(&bucket, id);
    assert!(!stored("RTM-2026-0117").await.unwrap().exists());

    let out = kordon(&["cluster", "put-cases", "--config", config, shipped]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kordon(&["cluster", "put-cases", "--config", config, conflicting]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("device `OFF-0001` is the offender's bracelet in case RTM-2026-0117"),
        "the conflict is found against the bucket too: {err}"
    );
    assert!(!stored("RTM-2026-0900").await.unwrap().exists());
}

/// A configuration with two device brokers, in `dir`.
fn config_with_brokers(dir: &Path, nats_url: &str, brokers: &[&str]) -> PathBuf {
    let path = config_with_cluster(dir, nats_url);
    let text = std::fs::read_to_string(&path).unwrap();
    let listed: Vec<String> = brokers.iter().map(|b| format!("{b:?}")).collect();
    let text = text.replace("embedded = true", "embedded = false")
        + &format!("device_brokers = [{}]\n", listed.join(", "));
    std::fs::write(&path, text).unwrap();
    path
}

/// Taking the second of two brokers off: the cluster's list shrinks only
/// through the command, and the consumer of the broker gone is removed, so
/// that another broker put in its place starts a few minutes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_agree_takes_a_broker_off_the_list_and_its_consumer_with_it() {
    use kordon_cluster::agreement::{self, Agreement};
    let Some(nats) = Nats::start() else { return };
    let js = nats.jetstream_with_shard_stream().await;
    kordon_cluster::alerts::ensure_alert_stream(&js, 1, None)
        .await
        .unwrap();
    let two = ["mqtt://mq-1.example:1883", "mqtt://mq-2.example:1883"];
    let labels = vec![
        "mq-1.example:1883".to_string(),
        "mq-2.example:1883".to_string(),
    ];
    agreement::join(&js, 1, &Agreement::new(ShardCount::DEFAULT, labels.clone()))
        .await
        .unwrap();
    let stream = js
        .get_stream(kordon_cluster::alerts::ALERT_STREAM)
        .await
        .unwrap();
    let consumer = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some("kordon-deliverer-1".into()),
        ..Default::default()
    };
    stream.create_consumer(consumer).await.unwrap();

    // An instance with only the first joins, and shortens nothing.
    let one = Agreement::new(ShardCount::DEFAULT, labels[..1].to_vec());
    agreement::join(&js, 1, &one).await.unwrap();
    let agreed = agreement::read(&nats.url()).await.unwrap().unwrap();
    assert_eq!(agreed.device_brokers, labels);

    let dir = tempfile::tempdir().unwrap();
    let config = config_with_brokers(dir.path(), &nats.url(), &two[..1]);
    let out = kordon(&["cluster", "agree", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("removed the alerts' consumers kordon-deliverer-1"),
        "{text}"
    );
    let agreed = agreement::read(&nats.url()).await.unwrap().unwrap();
    assert_eq!(agreed.device_brokers, labels[..1]);
    assert!(stream.consumer_info("kordon-deliverer-1").await.is_err());

    // Another broker can now take the second place.
    let other = vec![labels[0].clone(), "mq-3.example:1883".to_string()];
    agreement::join(&js, 1, &Agreement::new(ShardCount::DEFAULT, other))
        .await
        .unwrap();
}
