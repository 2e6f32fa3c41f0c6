//! CI's regression traces: every file in specs/traces/ replays with the outcome its model
//! demands (specs/trace-format.md): traces of the correct protocol conform, counterexamples of
//! seeded model bugs diverge.

use paxos_model::types::BugCatalogue;
use std::fs;
use std::path::PathBuf;

use paxos_conformance::trace::{self, Expected, Walked};

fn trace_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../specs/traces");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_regression_trace_replays_as_expected() {
    let files = trace_files();
    let mut failures = Vec::new();
    let (mut conform, mut diverge) = (0, 0);
    for file in &files {
        match trace::replay_file(file) {
            Ok(report) if report.passed() => match report.expected {
                Expected::Conform => conform += 1,
                Expected::Diverge { .. } => diverge += 1,
                Expected::Either { .. } => {}
            },
            Ok(report) => failures.push(report.to_string()),
            Err(e) => failures.push(format!("{}: {e:#}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every seeded bug of both variants (7 Synod, 9 Multi-Paxos) has its counterexample here,
    // and there are walks of the correct protocol.
    assert!(diverge >= 16, "{diverge} seeded-bug counterexamples");
    assert!(conform >= 3, "{conform} traces of the correct protocol");
}

#[test]
fn every_seeded_bug_has_a_regression_trace() {
    let mut bugs = Vec::new();
    for file in trace_files() {
        let (trace, _) = trace::load(&file).unwrap_or_else(|e| panic!("{e:#}"));
        if let Some(bug) = trace.config.get("bug").and_then(|b| b.as_str()) {
            bugs.push(format!("{}:{bug}", trace.variant));
        }
    }
    for &bug in paxos_model::synod::SynodBug::ALL {
        assert!(bugs.contains(&format!("synod:{bug}")), "no trace of {bug}");
    }
    for &bug in paxos_model::multi::MultiBug::ALL {
        assert!(bugs.contains(&format!("multi:{bug}")), "no trace of {bug}");
    }
}

/// The divergence of a bug's counterexample is the bug's doing: the same steps taken by the
/// correct model conform, and the recorded states (the bug's) are not the correct model's.
#[test]
fn a_bug_trace_diverges_because_of_the_bug() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../specs/traces");
    let (mut trace, _) = trace::load(&dir.join("synod-validity-default-value.json"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (_, walked) = trace::replay_trace(&trace).unwrap_or_else(|e| panic!("{e:#}"));
    let Walked::Diverges(divergence) = walked else {
        panic!("the bug's counterexample conforms");
    };
    trace.steps.truncate(divergence.step);
    trace.config["bug"] = serde_json::Value::Null;
    let err = trace::replay_trace(&trace).err().map(|e| format!("{e:#}"));
    assert!(
        err.as_deref().is_some_and(
            |e| e.contains(&format!("step {}: the model's next state", divergence.step))
        ),
        "{err:?}"
    );
    for step in &mut trace.steps {
        step.state = serde_json::Value::Null;
    }
    let (_, walked) = trace::replay_trace(&trace).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(matches!(walked, Walked::Conforms { .. }), "{walked:?}");
}
