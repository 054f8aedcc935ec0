//! `volley bench fanout`, black box, against a real `volley serve`: each
//! subscriber engine (client, raw, epoll) runs a small fan-out at two
//! rates, and must report every step complete (every event at every
//! subscriber), every delivery counted and checked (offset order, exactly
//! once, each seq at one offset) and no error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Volley;
use common::services::{Hub, temp_dir};
use serde_json::Value;

const KEY: &str = "bench-fanout-test-key";
const SUBSCRIBERS: u64 = 40;

fn hub_config() -> String {
    format!(
        "api_key = \"{KEY}\"\nallow_anonymous = true\n\n[namespaces.fanout]\nhistory_size = 100\nhistory_ttl = 60\nallow_anonymous = true\n"
    )
}

/// Runs `volley bench fanout --engine ENGINE` against a fresh hub; returns
/// its JSON records and stderr.
fn run(engine: &str) -> (Vec<Value>, String) {
    let hub = Hub::start(&hub_config());
    let dir = temp_dir("bench-fanout");
    let json = dir.join("fanout.jsonl");
    let n = SUBSCRIBERS.to_string();
    let json_arg = json.to_str().unwrap();
    let args = [
        "bench",
        "fanout",
        "--addr",
        &hub.addr,
        "--api-key",
        KEY,
        "-n",
        &n,
        "--rates",
        "20,200",
        "-d",
        "1",
        "--publishers",
        "2",
        "--warmup",
        "5",
        "--engine",
        engine,
        "--json",
        json_arg,
    ];
    let mut bench = Volley::start(&args, &[]);
    let status = bench.exit_within(Duration::from_secs(120));
    let stderr = bench.drain_stderr().join("\n");
    if !status.is_some_and(|s| s.success()) {
        hub.dump_log();
        panic!("bench fanout --engine {engine} failed ({status:?}):\n{stderr}");
    }
    let records = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (records, stderr)
}

#[test]
fn every_engine_checks_every_delivery_of_every_step() {
    for engine in ["client", "raw", "epoll"] {
        let (records, stderr) = run(engine);
        let steps: Vec<&Value> = records
            .iter()
            .filter(|r| matches!(r["mode"].as_str(), Some("fanout" | "fanout-warmup")))
            .collect();
        assert_eq!(steps.len(), 3, "{engine}: warm-up and two rates\n{stderr}");
        let mut events = 0;
        for step in &steps {
            assert_eq!(step["engine"], engine, "{engine}: {step}");
            assert_eq!(step["complete"], true, "{engine}: {step}\n{stderr}");
            assert_eq!(step["errors"], 0, "{engine}: {step}\n{stderr}");
            let published = step["events"].as_u64().unwrap();
            assert!(published > 0, "{engine}: {step}");
            assert_eq!(
                step["deliveries"].as_u64(),
                Some(published * SUBSCRIBERS),
                "{engine}: {step}"
            );
            if engine != "client" {
                assert!(
                    step["deliveries_per_read"]
                        .as_f64()
                        .is_some_and(|r| r > 0.0),
                    "{engine}: reads are counted: {step}"
                );
            }
            events += published;
        }
        // Every event and the stop event, at every subscriber.
        let checked = format!(
            "{} deliveries checked (offset order, exactly once, seq at its offset); 0 errors",
            (events + 1) * SUBSCRIBERS
        );
        assert!(
            stderr.contains(&checked),
            "{engine}: want {checked:?}\n{stderr}"
        );
    }
}
