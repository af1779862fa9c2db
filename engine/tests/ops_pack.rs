//! The ops pack in `deploy/` against the real engine, so a renamed metric, probe route or
//! setting breaks CI:
//! - every `evd_*` metric the Grafana dashboard, the Prometheus rules and the autoscaler use
//!   exists in a scrape of `evd serve` after a little traffic, and the scrape passes
//!   `promtool check metrics`;
//! - the Kubernetes manifests probe `/readyz` and `/healthz` on the port the binary listens on,
//!   give the drain its time, reference Secrets that exist, and set only settings the binary
//!   reads, with values it accepts.
//!
//! The schema check of the manifests is `kubernetes-validate` in `scripts/ops-check.sh`.

mod common;

use common::{Client, Evd, PATIENCE, Rest, evd_command, now, try_connect};
use evd_engine::Settings;
use evd_protocol::Codec;
use evd_protocol::auth::{Claims, Role};
use evd_protocol::op::{Op, SendMessage};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a YAML file, as JSON values.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .collect()
}

fn require_services() -> bool {
    std::env::var("EVD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The `evd_*` series names in a PromQL expression: identifiers outside string literals, not
/// part of a recording rule's `level:metric:ops` name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    let mut ident = String::new();
    let mut flush = |ident: &mut String| {
        if ident.starts_with("evd_") && !ident.contains(':') {
            names.insert(ident.clone());
        }
        ident.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut ident);
                // Skip the literal, escapes included.
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => ident.push(c),
            _ => flush(&mut ident),
        }
    }
    flush(&mut ident);
    names
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(evd_fanout_latency_seconds_bucket{instance=~"evd_x"}[5m])))
           / instance:evd_not_a_series:sum and on (job) evd_ready"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["evd_fanout_latency_seconds_bucket", "evd_ready"]
    );
}

/// Every PromQL expression of the dashboard: panel targets (rows nest panels) and the
/// variables' queries.
fn dashboard_exprs(dash: &Value) -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.extend(t["expr"].as_str().map(str::to_owned));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            out.extend(v["query"]["query"].as_str().map(str::to_owned));
        }
    }
    out
}

/// Every metric name the ops pack uses, with the files using it.
fn used_metrics() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut used: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let mut add = |file: &'static str, exprs: Vec<String>| {
        assert!(!exprs.is_empty(), "{file}: no expressions found");
        for e in exprs {
            for n in metric_names(&e) {
                used.entry(n).or_default().insert(file);
            }
        }
    };
    let dash: Value = serde_json::from_str(&read(&deploy("grafana/evd.json"))).unwrap();
    add("grafana/evd.json", dashboard_exprs(&dash));
    let rules = &yaml_docs(&deploy("prometheus/evd.rules.yml"))[0];
    let mut exprs = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_owned());
        }
    }
    add("prometheus/evd.rules.yml", exprs);
    let hpa = &yaml_docs(&deploy("kubernetes/engine-hpa.yaml"))[0];
    let pods_metrics = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["pods"]["metric"]["name"].as_str().map(str::to_owned))
        .collect();
    add("kubernetes/engine-hpa.yaml", pods_metrics);
    used
}

/// Metric families of a Prometheus text scrape: name → type.
fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_owned(), kind.trim().to_owned()))
        })
        .collect()
}

/// Whether `name` is a series of the scrape: a family, or a histogram's (or summary's) part.
fn exported(families: &BTreeMap<String, String>, name: &str) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            families.get(base).is_some_and(|kind| {
                kind == "histogram" || (kind == "summary" && *suffix != "_bucket")
            })
        })
    })
}

/// Starts `evd serve` (on Redis when a test Redis is given, so the broker's series exist),
/// drives each kind of traffic the dashboard shows, and returns the scrape and whether Redis
/// was used.
async fn scrape_after_traffic() -> (String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/evd.db", dir.path().display());
    let mut cmd = evd_command(&db);
    let redis = std::env::var("EVD_TEST_REDIS_URL").ok();
    if let Some(url) = &redis {
        cmd.env("EVD_BROKER_URL", url);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let evd = Evd::spawn(cmd, None).await;
    let remote = evd.remote();

    // REST: an org, an event, a session; a socket in the session's room; then a poll, whose
    // outbox row the relay takes to the room.
    let (owner, _event, session) = remote.seed("ops", "olivia", 10).await;
    let session_room = format!("session:{session}");
    let claims = Claims::new("olivia", "ops", Role::Owner, now(), 600);
    let token = common::jwt().signer().unwrap().sign(&claims).unwrap();
    let mut client = Client::connect(&evd.url, &token, Codec::Json).await;
    client.joined(&session_room).await;
    remote.create_poll(&owner, &session, &["yes", "no"]).await;
    client.say(&session_room, "hello", None).await;

    // One op refused, one upgrade without a token, one socket closed.
    let r = client
        .send(Op::SendMessage(SendMessage {
            room: common::room(&session_room),
            text: "x".repeat(Settings::default().limits.max_text_bytes + 1),
            client_id: None,
        }))
        .await;
    let refused = client.reply(r).await;
    assert!(
        matches!(refused, evd_protocol::Event::Error(_)),
        "{refused:?}"
    );
    let unauthorized = try_connect(&evd.url, None, &[], None).await;
    assert_eq!(unauthorized.err().map(|r| r.status), Some(401));
    drop(client);

    // The poll's outbox row is relayed and the closed socket counted before the scrape.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = evd.metrics().await;
        let relayed = common::metric(&text, "evd_outbox_relayed_total", "");
        let closed = text.contains("evd_connections_closed_total{");
        if relayed >= 1.0 && closed {
            return (text, redis.is_some());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relayed outbox row or closed connection in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_rules_and_autoscaler_use_is_exported() {
    if std::env::var("EVD_TEST_REDIS_URL").is_err() {
        assert!(
            !require_services(),
            "EVD_REQUIRE_SERVICES=1 but EVD_TEST_REDIS_URL is not set"
        );
        eprintln!("EVD_TEST_REDIS_URL not set: the broker's Redis-only series are not checked");
    }
    let used = used_metrics();
    assert!(
        used.len() >= 30,
        "the ops pack uses only {} metrics: {used:?}",
        used.len()
    );
    let (scrape, on_redis) = scrape_after_traffic().await;
    let families = families(&scrape);
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported(&families, name))
        .filter(|(name, _)| on_redis || !name.starts_with("evd_broker_"))
        .map(|(name, files)| format!("{name} (used in {files:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "used by deploy/ but not exported by evd serve:\n{}\n\nscrape:\n{scrape}",
        missing.join("\n")
    );

    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(scrape.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && report.trim().is_empty(),
                "promtool check metrics: {}\n{report}",
                out.status
            );
        }
        Err(e) => {
            assert!(
                !require_services(),
                "EVD_REQUIRE_SERVICES=1 but promtool cannot run ({e}); scripts/ops-check.sh installs it"
            );
            eprintln!("promtool not found ({e}): `promtool check metrics` skipped");
        }
    }
}

#[test]
fn every_alert_has_a_summary_and_a_runbook_section() {
    let runbook = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"));
    // GitHub's anchor of a `### Name` heading is the name in lower case.
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let rules = &yaml_docs(&deploy("prometheus/evd.rules.yml"))[0];
    let mut alerts = 0;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let notes = &rule["annotations"];
            assert!(notes["summary"].is_string(), "{alert}: no summary");
            let url = notes["runbook_url"].as_str().unwrap_or_default();
            let anchor = url
                .strip_prefix("https://github.com/evd-rs/evd/blob/main/docs/operations.md#")
                .unwrap_or_else(|| {
                    panic!("{alert}: runbook_url {url:?} is not a section of docs/operations.md")
                });
            assert_eq!(anchor, alert.to_lowercase(), "{alert}: its own section");
            assert!(
                anchors.contains(anchor),
                "docs/operations.md has no `### {alert}`"
            );
        }
    }
    assert!(alerts >= 8, "only {alerts} alerts");
}

/// One manifest file's documents, by `kind/name`.
fn manifests() -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(deploy("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for doc in yaml_docs(&path) {
                let key = format!(
                    "{}/{}",
                    doc["kind"].as_str().unwrap(),
                    doc["metadata"]["name"].as_str().unwrap()
                );
                assert!(all.insert(key.clone(), doc).is_none(), "{key} twice");
            }
        }
    }
    all
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// The port `args` makes the binary listen on (`--listen ADDR:PORT`).
fn listen_port(c: &Value) -> u64 {
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let i = args.iter().position(|a| *a == "--listen").unwrap();
    let addr: std::net::SocketAddr = args[i + 1].parse().unwrap();
    u64::from(addr.port())
}

/// Checks the container's probes hit `/readyz` and `/healthz` on the port it listens on, and
/// returns that port's name.
fn check_probes(name: &str, c: &Value) -> String {
    let port = listen_port(c);
    let ports = c["ports"].as_array().unwrap();
    let named = ports
        .iter()
        .find(|p| p["containerPort"] == port)
        .unwrap_or_else(|| panic!("{name}: no containerPort {port} (the --listen port)"));
    let port_name = named["name"].as_str().unwrap().to_owned();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{name}: {probe}");
        assert!(
            get["port"] == port || get["port"] == port_name.as_str(),
            "{name}: {probe} on port {}, the binary listens on {port} ({port_name})",
            get["port"]
        );
    }
    port_name
}

/// The settings the container's environment gives the binary, loaded by its own loader; fails
/// on a variable it does not read or a value it refuses. Secret references get a valid stand-in.
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn settings_of(name: &str, c: &Value) -> Settings {
    let mut env = Vec::new();
    for var in c["env"].as_array().unwrap() {
        let key = var["name"].as_str().unwrap().to_owned();
        let value = match (&var["value"], &var["valueFrom"]) {
            (Value::String(v), _) => v.clone(),
            (_, from) if from["secretKeyRef"].is_object() => match key.as_str() {
                "EVD_JWT_SECRET" => "a-stand-in-secret-of-more-than-32-bytes".to_owned(),
                "EVD_DATABASE_URL" => "postgres://evd@db.invalid/evd".to_owned(),
                other => panic!("{name}: no stand-in for the secret in {other}"),
            },
            (_, from) if from["fieldRef"].is_object() => "evd-engine-5d8f7c9b6-x2k4p".to_owned(),
            other => panic!("{name}: {key} has an unexpected value {other:?}"),
        };
        env.push((key, value));
    }
    let mut settings = None;
    figment::Jail::expect_with(|jail| {
        for (k, v) in &env {
            jail.set_env(k, v);
        }
        let unknown: Vec<String> = Settings::unknown_env()
            .into_iter()
            .filter(|k| env.iter().any(|(e, _)| e == k))
            .collect();
        assert!(unknown.is_empty(), "{name}: evd reads no {unknown:?}");
        settings = Some(
            Settings::load(None).unwrap_or_else(|e| panic!("{name}: evd refuses its env: {e}")),
        );
        Ok(())
    });
    settings.unwrap()
}

#[test]
fn kubernetes_manifests_probe_the_real_routes_cover_the_drain_and_name_real_secrets() {
    let all = manifests();
    let get = |key: &str| {
        all.get(key)
            .unwrap_or_else(|| panic!("deploy/kubernetes has no {key}"))
    };

    for (deployment, command) in [("evd-engine", "engine"), ("evd-api", "api")] {
        let d = get(&format!("Deployment/{deployment}"));
        let c = container(d);
        assert_eq!(c["args"][0], command, "{deployment} runs `evd {command}`");
        let port_name = check_probes(deployment, c);
        let settings = settings_of(deployment, c);

        // SIGTERM → preStop first, then the drain, then the wait for tasks: all inside the
        // grace period, or the kubelet kills clients mid-drain.
        let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        let drain_ms = if command == "engine" {
            settings.drain.grace_ms + settings.drain.close_timeout_ms
        } else {
            0
        };
        let needed = Duration::from_secs(pre_stop)
            + Duration::from_millis(drain_ms)
            + evd_engine::server::TASKS_EXIT_WAIT;
        assert!(
            Duration::from_secs(grace) > needed,
            "{deployment}: terminationGracePeriodSeconds {grace} does not cover preStop {pre_stop} s + drain {drain_ms} ms + {:?}",
            evd_engine::server::TASKS_EXIT_WAIT
        );

        // Every secret reference names a Secret of the pack and one of its keys.
        for var in c["env"].as_array().unwrap() {
            let r = &var["valueFrom"]["secretKeyRef"];
            if r.is_object() {
                let secret = get(&format!("Secret/{}", r["name"].as_str().unwrap()));
                let key = r["key"].as_str().unwrap();
                assert!(
                    secret["stringData"][key].is_string() || secret["data"][key].is_string(),
                    "{deployment}: Secret {} has no key {key}",
                    r["name"]
                );
            }
        }

        // Its Service selects its pods and targets the port the binary listens on.
        let svc = get(&format!("Service/{deployment}"));
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "Service/{deployment} selects {k}={v}");
        }
        let targets: Vec<&Value> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["targetPort"])
            .collect();
        assert!(
            targets.iter().all(|t| **t == port_name.as_str()),
            "Service/{deployment} targets {targets:?}, the pods serve on {port_name}"
        );
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            svc["spec"]["selector"]
        );
    }

    // The engine's disruption budget and autoscaler point at its pods and Deployment.
    let engine = get("Deployment/evd-engine");
    let pdb = get("PodDisruptionBudget/evd-engine");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        engine["spec"]["selector"]["matchLabels"]
    );
    let hpa = get("HorizontalPodAutoscaler/evd-engine");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "evd-engine");
    let kinds: BTreeSet<&str> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["Resource", "Pods"]),
        "CPU and connections"
    );
    // The connections target sits below the engine's own limit.
    let max = settings_of("evd-engine", container(engine))
        .limits
        .max_connections;
    let target: u64 = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "Pods")
        .and_then(|m| m["pods"]["target"]["averageValue"].as_str())
        .and_then(|v| v.parse().ok())
        .expect("a plain connection count");
    assert!(
        target < max as u64,
        "HPA target {target} ≥ max_connections {max}"
    );
}
