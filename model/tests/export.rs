//! `paxos-model export-traces`, and the pieces trace replay needs from the model crate:
//! configurations read back from trace files, deterministic walks.

use std::process::Command;

use paxos_model::multi::{self, MultiBug, MultiConfig};
use paxos_model::runner::{random_walk, read_trace, CheckTarget, Classification};
use paxos_model::synod::{self, SynodBug, SynodConfig};
use paxos_model::types::BugCatalogue;

#[test]
fn configurations_read_back_from_their_trace_json() {
    let mut synods = vec![SynodConfig::default()];
    synods.extend(SynodBug::ALL.iter().copied().map(SynodBug::witness_config));
    for cfg in synods {
        let json = synod::model(cfg.clone()).config_json();
        let back: SynodConfig = serde_json::from_value(json.clone()).expect("a Synod config");
        assert_eq!(back, cfg, "{json}");
    }
    let mut multis = vec![MultiConfig::default()];
    multis.extend(MultiBug::ALL.iter().copied().map(MultiBug::witness_config));
    for cfg in multis {
        let json = multi::model(cfg.clone()).config_json();
        let back: MultiConfig = serde_json::from_value(json.clone()).expect("a Multi config");
        assert_eq!(back, cfg, "{json}");
    }
    let unknown = serde_json::json!({"replicas": 3, "reorder": true});
    assert!(serde_json::from_value::<MultiConfig>(unknown).is_err());
    let bad_bug = serde_json::json!({"bug": "no-such-bug"});
    let err = serde_json::from_value::<SynodConfig>(bad_bug)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("known bugs")));
}

#[test]
fn walks_are_reproducible_and_fault_rates_apply() {
    let model = multi::model(MultiConfig {
        crashes: 1,
        lossy: true,
        ..MultiConfig::default()
    });
    let a = random_walk(&model, 3, 40, 10).expect("a walk");
    let b = random_walk(&model, 3, 40, 10).expect("a walk");
    assert_eq!(a, b);
    assert_eq!(a.classification, Classification::Walk);
    assert_eq!(a.steps.len(), 40);
    assert_eq!(a.explorer_path.split('/').count(), 41);
    let faults = |t: &paxos_model::runner::Trace| {
        t.steps
            .iter()
            .filter(|s| matches!(s.action["kind"].as_str(), Some("drop" | "crash")))
            .count()
    };
    // At 0%, faults are taken only where nothing else is enabled (a quiet system).
    let none = random_walk(&model, 3, 40, 0).expect("a walk");
    let all = random_walk(&model, 3, 40, 100).expect("a walk");
    assert!(
        faults(&all) > faults(&none),
        "{} vs {}",
        faults(&all),
        faults(&none)
    );
    let first_fault = none
        .steps
        .iter()
        .position(|s| matches!(s.action["kind"].as_str(), Some("drop" | "crash")));
    assert!(!matches!(first_fault, Some(i) if i <= 5), "{first_fault:?}");
}

#[test]
fn export_traces_writes_walks_and_the_counterexample() {
    let dir = std::env::temp_dir().join(format!("paxos-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_paxos-model"))
        .args([
            "export-traces",
            "synod",
            "--bug",
            "default-value",
            "--walks",
            "2",
        ])
        .args([
            "--seed",
            "5",
            "--depth",
            "30",
            "--state-every",
            "10",
            "--out",
        ])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let walk = read_trace(&dir.join("synod-walk-seed-6.json")).expect("the second walk");
    assert_eq!(walk.config["bug"], "default-value");
    let recorded: Vec<usize> = walk
        .steps
        .iter()
        .filter(|s| !s.state.is_null())
        .map(|s| s.index)
        .collect();
    let last = walk.steps.len();
    assert!(
        recorded.iter().all(|&i| i % 10 == 0 || i == last),
        "{recorded:?}"
    );
    assert!(recorded.contains(&last));
    let cex = read_trace(&dir.join("synod-validity-default-value.json")).expect("the bug's");
    assert_eq!(cex.classification, Classification::Counterexample);
    // Canonical states: the network is a sorted list, not the "unserializable" placeholder.
    assert!(
        cex.steps[0].state["network"].is_array(),
        "{}",
        cex.steps[0].state
    );
    let _ = std::fs::remove_dir_all(&dir);

    let output = Command::new(env!("CARGO_BIN_EXE_paxos-model"))
        .args(["export-traces", "multi", "--replicas", "1", "--out", "x"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
}
