//! The `paxos-conform` binary as a user runs it: exit codes, summaries, divergence traces
//! that replay and open in the explorer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use paxos_conformance::trace;
use paxos_model::runner::read_trace;
use paxos_model::synod::{self, SynodBug, SynodConfig};
use stateright::Model;

fn paxos_conform(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paxos-conform"))
        .args(args)
        .output()
        .expect("the paxos-conform binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory per test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("paxos-conform-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let scratch = Scratch::new("bad");
    std::fs::write(scratch.0.join("broken.json"), "{ not json").expect("write");
    std::fs::write(
        scratch.0.join("old.json"),
        r#"{"format": "paxos-trace/0", "steps": []}"#,
    )
    .expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "check".into(),
                "multi".into(),
                "--replicas".into(),
                "9".into(),
            ],
            "--replicas",
        ),
        (
            vec![
                "check".into(),
                "synod".into(),
                "--bug".into(),
                "nope".into(),
            ],
            "known bugs",
        ),
        (
            vec![
                "check".into(),
                "synod".into(),
                "--max-divergences".into(),
                "0".into(),
            ],
            "--max-divergences",
        ),
        (
            vec!["check".into(), "lamport".into()],
            "unrecognized subcommand",
        ),
        (vec!["replay".into()], "FILE"),
        (
            vec!["replay".into(), scratch.path("broken.json")],
            "is not valid JSON",
        ),
        (
            vec!["replay".into(), scratch.path("old.json")],
            "paxos-trace/2",
        ),
        (
            vec!["replay".into(), scratch.path("missing.json")],
            "missing.json",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_paxos-conform"))
            .args(&args)
            .output()
            .expect("runs");
        let all = text(&output.stdout) + &text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains(expected), "{args:?}: {all}");
    }
}

#[test]
fn help_has_examples() {
    let output = paxos_conform(&["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    assert!(help.contains("paxos-conform check multi"), "{help}");
    assert!(
        help.contains("paxos-conform replay specs/traces/*.json"),
        "{help}"
    );
}

#[test]
fn a_conforming_check_exits_0_with_its_coverage() {
    let output = paxos_conform(&[
        "check",
        "multi",
        "--commands",
        "1",
        "--rounds",
        "1",
        "--elections",
        "0",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["format"], "paxos-conform-report/1");
    assert_eq!(report["complete"], true);
    assert_eq!(report["coverage"], 1.0);
    assert!(report["replayed"].as_u64().unwrap_or(0) > 0);
    assert_eq!(report["divergences"].as_array().map(Vec::len), Some(0));
}

/// Witnesses are reported per configuration; one named by `--expect-witness` and not reached
/// fails the check, and a depth bound is reported as such.
#[test]
fn an_expected_witness_not_reached_fails_the_check() {
    let base = [
        "check",
        "multi",
        "--commands",
        "1",
        "--rounds",
        "1",
        "--elections",
        "0",
        "--json",
    ];
    // No election at all: nobody is preempted.
    let output = paxos_conform(&[&base[..], &["--expect-witness", "candidate preempted"]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    let preempted = report["witnesses"]
        .as_array()
        .expect("witnesses")
        .iter()
        .find(|w| w["name"] == "candidate preempted")
        .expect("reported")
        .clone();
    assert_eq!(preempted["reached"], false);
    assert_eq!(preempted["expected"], true);
    let output = paxos_conform(&[&base[..], &["--expect-witness", "typo"]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let bounded = paxos_conform(&[&base[..], &["--depth", "4"]].concat());
    assert_eq!(bounded.status.code(), Some(0), "{}", text(&bounded.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&bounded.stdout).expect("one JSON object");
    assert_eq!(report["complete"], false);
    assert_eq!(report["depth_bound"], 4);
}

/// Follows an explorer path (init index, then action indices into `actions()`) on the model.
fn follow(model: &synod::SynodModel, path: &str) -> synod::SynodModelState {
    let mut parts = path
        .split('/')
        .map(|p| p.parse::<usize>().expect("an index"));
    let mut state = model.init_states()[parts.next().expect("init index")].clone();
    for index in parts {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let action = actions[index].clone();
        state = model.next_state(&state, action).unwrap_or(state);
    }
    state
}

#[test]
fn a_divergence_is_a_shortest_trace_that_replays_and_opens_in_the_explorer() {
    let scratch = Scratch::new("divergence");
    let out = scratch.path("out");
    let output = paxos_conform(&["check", "synod", "--bug", "default-value", "--out", &out]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(summary.contains("divergences: 1"), "{summary}");
    assert!(summary.contains("model 0 | implementation"), "{summary}");

    let file = Path::new(&out).join("synod-divergence-default-value-1.json");
    let trace = read_trace(&file).expect("a paxos-trace/2 file");
    let record = trace.divergence.clone().expect("a divergence object");
    assert_eq!(record["format"], "paxos-divergence/1");
    assert_eq!(record["step"], trace.steps.len());
    assert!(!record["differences"].as_array().expect("a list").is_empty());
    // Shortest: a proposer's Retry timeout, its Prepare delivered to two acceptors (a
    // majority of 3) and their two Promises delivered; on the second it proposes v0.
    assert_eq!(trace.steps.len(), 5, "{:#?}", trace.steps);

    // The explorer path leads where the trace does.
    let model = synod::model(SynodConfig {
        bug: Some(SynodBug::DefaultValue),
        ..SynodConfig::default()
    });
    let reached = follow(&model, &trace.explorer_path);
    assert_eq!(
        paxos_model::runner::CheckTarget::state_json(&model, &reached),
        trace.steps.last().expect("steps").state
    );

    // `replay` re-runs it: a seeded bug's divergence must diverge again, so it passes.
    let output = paxos_conform(&["replay", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("as it must"));
    let report = trace::replay_file(&file).expect("replays");
    assert!(report.passed());

    // Read as a trace of the correct protocol (an impl that diverges from it), it fails.
    let mut as_correct = trace.clone();
    as_correct.config["bug"] = serde_json::Value::Null;
    as_correct.classification = paxos_model::runner::Classification::Divergence;
    for step in &mut as_correct.steps {
        step.state = serde_json::Value::Null;
    }
    let (expected, _) = trace::replay_trace(&as_correct).expect("replays");
    assert_eq!(expected, trace::Expected::Conform);
}

#[test]
fn replay_json_reports_each_file() {
    let traces = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/traces/");
    let walk = format!("{traces}synod-walk-p3-r3-crash2-lossy-dup-seed-1.json");
    let bug = format!("{traces}synod-validity-default-value.json");
    let output = paxos_conform(&["replay", "--json", &walk, &bug]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["format"], "paxos-replay-report/1");
    assert_eq!(report["passed"], true);
    assert_eq!(report["files"][0]["outcome"], "conforms");
    assert_eq!(report["files"][1]["expected"], "diverge");
    assert_eq!(
        report["files"][1]["divergence"]["format"],
        "paxos-divergence/1"
    );
}

#[test]
fn a_trace_whose_action_is_not_enabled_is_an_error_naming_the_step() {
    let scratch = Scratch::new("stale");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../specs/traces/synod-validity-default-value.json");
    let mut trace = read_trace(&src).expect("a trace");
    trace.steps[2].action["src"] = serde_json::json!(9);
    let file = scratch.0.join("stale.json");
    paxos_model::runner::write_trace_as(&file, &trace).expect("write");
    let output = paxos_conform(&["replay", &file.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains("step 3: action not enabled"),
        "{}",
        text(&output.stdout)
    );
}
