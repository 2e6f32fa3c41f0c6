//! The `paxos-model` binary as a user runs it: exit codes, JSON summaries, trace files.

use std::path::Path;
use std::process::{Command, Output};

use paxos_model::runner::read_trace;
use paxos_model::types::BugCatalogue;

fn paxos_model(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paxos-model"))
        .args(args)
        .output()
        .expect("the paxos-model binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 8] = [
        (&["check", "multi", "--replicas", "1"], "--replicas"),
        (&["check", "multi", "--bug", "no-such-bug"], "known bugs"),
        (
            &["check", "multi", "--slots", "2", "--window", "3"],
            "--window",
        ),
        (&["check", "synod", "--acceptors", "0"], "--acceptors"),
        (&["check", "synod", "--bug", "no-such-bug"], "known bugs"),
        (&["check", "synod", "--rounds", "0"], "--rounds"),
        (
            &["check", "lamport", "--bug", "accept-below-promise"],
            "lamport",
        ),
        (&["check", "synod", "--threads", "0"], "--threads"),
    ];
    for (args, expected) in cases {
        let output = paxos_model(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn bugs_lists_every_seeded_bug_with_its_property() {
    let output = paxos_model(&["bugs"]);
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    for bug in paxos_model::synod::SynodBug::ALL {
        let line = listing
            .lines()
            .find(|l| l.contains(bug.name()))
            .expect("bug listed");
        assert!(line.contains(bug.violates()[0]), "{line}");
    }
    for bug in paxos_model::multi::MultiBug::ALL {
        let line = listing
            .lines()
            .find(|l| l.contains(bug.name()))
            .expect("bug listed");
        assert!(line.contains(bug.violates()[0]), "{line}");
    }
    for bug in paxos_model::lamport::LamportBug::ALL {
        assert!(listing.contains(bug.name()), "{} missing", bug.name());
    }
}

#[test]
fn correct_default_check_exits_0_with_every_property_holding() {
    let dir = tempdir("correct");
    let output = paxos_model(&["check", "synod", "--json", "--trace-dir", &dir]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints one JSON object");
    assert_eq!(report["format"], "paxos-check-report/1");
    assert_eq!(report["complete"], true);
    for property in report["properties"].as_array().expect("properties") {
        assert!(passes(property), "{property}");
    }
}

/// A property line of a passing run: an invariant that holds, an example found, or a
/// scenario witness this configuration does not reach (reported, not a failure).
fn passes(property: &serde_json::Value) -> bool {
    let verdict = property["verdict"].as_str().expect("verdict");
    match property["expectation"].as_str().expect("expectation") {
        "witness" => verdict == "reachable" || verdict == "not-reached",
        _ => verdict == "holds" || verdict == "reachable",
    }
}

#[test]
fn an_expected_witness_not_reached_exits_1_and_an_unknown_one_2() {
    let dir = tempdir("witness");
    let base = ["check", "multi", "--commands", "1", "--trace-dir", &dir];
    // One election only: no candidate can be preempted.
    let output = paxos_model(&[&base[..], &["--expect-witness", "candidate preempted"]].concat());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("NOT REACHED (expected)"), "{text}");
    let reached = ["--expect-witness", "minority vote re-proposed"];
    let output = paxos_model(&[&base[..], &reached].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = paxos_model(&[&base[..], &["--expect-witness", "no such thing"]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("candidate preempted"));
}

#[test]
fn a_seeded_bug_exits_1_and_saves_a_replayable_trace() {
    let dir = tempdir("bug");
    let output = paxos_model(&[
        "check",
        "synod",
        "--bug",
        "default-value",
        "--json",
        "--trace-dir",
        &dir,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let validity = report["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "Validity")
        .expect("Validity reported");
    assert_eq!(validity["verdict"], "violated");
    let file = validity["discovery"]["trace_file"]
        .as_str()
        .expect("trace file");
    let trace = read_trace(Path::new(file)).expect("trace reads back");
    assert_eq!(trace.property, "Validity");
    assert_eq!(trace.config["bug"], "default-value");
    assert!(!trace.steps.is_empty());
}

#[test]
fn multi_check_of_a_small_configuration_holds_everywhere() {
    let dir = tempdir("multi");
    let args = [
        "check",
        "multi",
        "--commands",
        "1",
        "--retries",
        "1",
        "--json",
        "--trace-dir",
        &dir,
    ];
    let output = paxos_model(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["variant"], "multi");
    assert_eq!(report["complete"], true);
    let properties = report["properties"].as_array().expect("properties");
    assert_eq!(properties.len(), 32);
    for property in properties {
        assert!(passes(property), "{property}");
    }
}

#[test]
fn a_multi_bug_exits_1_with_its_counterexample() {
    let dir = tempdir("multi-bug");
    let output = paxos_model(&[
        "check",
        "multi",
        "--commands",
        "1",
        "--bug",
        "reply-before-commit",
        "--json",
        "--trace-dir",
        &dir,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let property = report["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "Reply safety")
        .expect("Reply safety reported");
    assert_eq!(property["verdict"], "violated");
    let file = property["discovery"]["trace_file"]
        .as_str()
        .expect("trace file");
    let trace = read_trace(Path::new(file)).expect("trace reads back");
    assert_eq!(trace.config["bug"], "reply-before-commit");
    assert!(!trace.steps.is_empty());
}

#[test]
fn lamport_check_counts_tlc_states() {
    let dir = tempdir("lamport");
    let output = paxos_model(&[
        "check",
        "lamport",
        "--max-ballot",
        "1",
        "--json",
        "--trace-dir",
        &dir,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["unique_states"], 3_921);
}

fn tempdir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("paxos-model-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.to_string_lossy().into_owned()
}

/// `explore --bug` finds the counterexample first and prints a URL that opens the explorer on
/// it; the server answers for that path.
#[test]
fn explore_with_a_bug_serves_the_counterexample_path() {
    explore_serves(&["synod", "--bug", "learner-mixed-ballots"], "Learner");
    explore_serves(&["multi", "--bug", "promise-merge-off-by-one"], "Replica");
}

/// `explore --trace FILE` serves the trace's model and opens it on the trace's path.
#[test]
fn explore_with_a_trace_serves_its_path() {
    let traces = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/traces/");
    let synod = format!("{traces}synod-validity-default-value.json");
    explore_serves(&["--trace", &synod], "Proposer");
    let multi = format!("{traces}multi-i1-skip-phase-1-after-nack.json");
    explore_serves(&["--trace", &multi], "Replica");
}

/// A `multi-unbounded` trace (what `paxos-conform validate --trace-dir` writes for a rejected
/// step of a real run) opens on its path from its own initial state; one whose state does not
/// fit its configuration is refused, naming the file.
#[test]
fn explore_opens_a_trace_from_a_state_of_a_real_run() {
    use paxos_model::actor_trace;
    use paxos_model::multi::{self, MultiConfig};
    use paxos_model::runner::{write_trace_as, CheckTarget, Classification, Trace};
    use stateright::actor::ActorModelAction;
    use stateright::Model;

    let cfg = MultiConfig {
        commands: 500,
        slots: usize::MAX,
        ..MultiConfig::default()
    };
    let model = multi::unbounded_model(cfg.clone());
    let mut initial = actor_trace::state_json(&model.init_states().remove(0));
    let client = usize::from(cfg.client_id(0));
    let request = serde_json::json!({"src": client, "dst": 0, "msg": {"Request": 400}, "count": 1});
    initial["network"]
        .as_array_mut()
        .expect("a list")
        .push(request);
    let start = actor_trace::state_from_json(&model, initial.clone()).expect("a state");
    let mut actions = Vec::new();
    model.actions(&start, &mut actions);
    let deliver = actions
        .iter()
        .position(
            |a| matches!(a, ActorModelAction::Deliver { src, .. } if usize::from(*src) == client),
        )
        .expect("the request can be delivered");
    let trace = Trace {
        format: paxos_model::runner::TRACE_FORMAT.to_string(),
        variant: model.variant().to_string(),
        config: model.config_json(),
        property: "trace validation".to_string(),
        classification: Classification::Divergence,
        explorer_path: format!("0/{deliver}"),
        initial_state: initial,
        steps: Vec::new(),
        divergence: None,
    };
    let dir = tempdir("unbounded");
    let good = format!("{dir}/rejected.json");
    write_trace_as(Path::new(&good), &trace).expect("written");
    explore_serves(&["--trace", &good], "Replica");

    let mut edited = trace.clone();
    edited.initial_state["crashed"] = serde_json::json!([false]);
    let bad = format!("{dir}/edited.json");
    write_trace_as(Path::new(&bad), &edited).expect("written");
    let output = paxos_model(&["explore", "--trace", &bad, "--addr", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&bad) && stderr(&output).contains("initial_state"),
        "{}",
        stderr(&output)
    );
    let mut client = trace.clone();
    client.initial_state["actor_states"][1] =
        serde_json::json!({"Client": {"index": 0, "seq": 1, "retries": 0}});
    let bad = format!("{dir}/client.json");
    write_trace_as(Path::new(&bad), &client).expect("written");
    let output = paxos_model(&["explore", "--trace", &bad, "--addr", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("actor 1 is not a replica"),
        "{}",
        stderr(&output)
    );
    let mut far = trace;
    far.explorer_path = "0/9999".into();
    let bad = format!("{dir}/far.json");
    write_trace_as(Path::new(&bad), &far).expect("written");
    let output = paxos_model(&["explore", "--trace", &bad, "--addr", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&bad) && stderr(&output).contains("action 9999 of"),
        "{}",
        stderr(&output)
    );
}

fn explore_serves(variant: &[&str], role: &str) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paxos-model"))
        .arg("explore")
        .args(variant)
        .args(["--addr", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("explore starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut url = None;
    while url.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            url = line.strip_prefix("Discovery: ").map(str::to_owned);
        }
    }
    let url = url.expect("explore prints a Discovery URL within 60 s");
    let path = url
        .split("#/steps/")
        .nth(1)
        .expect("URL opens a step path")
        .to_owned();
    let mut stream = TcpStream::connect(&addr).expect("explorer listens");
    write!(
        stream,
        "GET /.states/{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    child.kill().expect("explore stops");
    let _ = child.wait();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{response}"
    );
    assert!(
        response.contains(role),
        "the state view names the roles: {response}"
    );
}
