//! Trace validation of real runs: `paxos-node chaos --step-logs` runs 3- and 5-replica
//! clusters (one process per replica, real TCP and WALs, `kill -9`, torn WAL tails, partitions)
//! on a workload within the Multi-Paxos model's bounds, and `paxos_conformance::validate`
//! checks every logged transition against the model. A seeded core bug and tampered logs must
//! be rejected.
//!
//! The `paxos-node` binary is the workspace build's (`cargo nextest run --workspace` builds it,
//! with the `mutants` feature the conformance tests switch on); `PAXOS_NODE` overrides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

use paxos_conformance::validate::{self, Report};
use paxos_protocol::step_log::STEP_LOG_FORMAT;
use serde_json::Value;

/// The tests start real clusters whose elections depend on timers: one at a time, also under
/// `cargo test`, which runs a binary's tests on parallel threads.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn paxos_node() -> PathBuf {
    if let Some(exe) = std::env::var_os("PAXOS_NODE") {
        return PathBuf::from(exe);
    }
    // target/<profile>/deps/<this test> → target/<profile>/paxos-node
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let node = profile_dir.join("paxos-node");
    assert!(
        node.exists(),
        "{} is missing: run the workspace's tests (`cargo nextest run --workspace`), or build \
         it first (`cargo build -p paxos-impl --features mutants`), or set PAXOS_NODE",
        node.display()
    );
    node
}

/// A chaos run on a workload the model can hold: 2 clients of 2 operations each on one key,
/// 4 slots, window 2, faults held up to 800 ms unless `extra` says otherwise. Returns the exit
/// code, the chaos report and the step logs.
fn bounded_chaos(dir: &Path, nodes: u32, seed: u64, extra: &[&str]) -> (Option<i32>, Value) {
    let hold: &[&str] = match extra.contains(&"--hold-ms") {
        true => &[],
        false => &["--hold-ms", "800"],
    };
    let bounded = [
        "--clients",
        "2",
        "--keys",
        "1",
        "--ops-per-client",
        "2",
        "--slot-limit",
        "4",
        "--window",
        "2",
        "--duration-secs",
        "6",
    ];
    let args: Vec<&str> = bounded.iter().chain(hold).chain(extra).copied().collect();
    chaos(dir, nodes, seed, &args)
}

/// `paxos-node chaos --step-logs` with `args`; the exit code and the chaos report.
fn chaos(dir: &Path, nodes: u32, seed: u64, args: &[&str]) -> (Option<i32>, Value) {
    let report = dir.join("report.json");
    let output = Command::new(paxos_node())
        .arg("chaos")
        .args(["--nodes", &nodes.to_string(), "--seed", &seed.to_string()])
        .arg("--step-logs")
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("cluster"))
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run paxos-node chaos");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no report: {e}"));
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    (output.status.code(), report)
}

fn step_logs(report: &Value) -> Vec<PathBuf> {
    let logs: Vec<PathBuf> = report["step_logs"]
        .as_array()
        .expect("the report lists the step logs")
        .iter()
        .filter_map(Value::as_str)
        .map(PathBuf::from)
        .collect();
    assert!(!logs.is_empty(), "no step logs: {report:#}");
    logs
}

fn validated(logs: &[PathBuf]) -> Report {
    let report = validate::validate(logs).unwrap_or_else(|e| panic!("cannot validate: {e}"));
    eprintln!("{}", report.render());
    report
}

#[test]
fn chaos_runs_of_3_and_5_replicas_are_transitions_the_model_allows() {
    let _cluster = one_cluster_at_a_time();
    for (nodes, seed) in [(3, 31), (5, 32)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (code, chaos) = bounded_chaos(dir.path(), nodes, seed, &[]);
        assert_eq!(chaos["linearizable"], true, "{chaos:#}");
        assert_eq!(code, Some(0), "{chaos:#}");
        let report = validated(&step_logs(&chaos));
        assert!(report.passed(), "{}", report.render());
        assert_eq!(report.replicas, nodes as usize);
        assert!(report.starts >= nodes as usize);
        let kinds = [
            "request",
            "accept",
            "accepted",
            "decide",
            "read",
            "confirm",
            "confirmed",
        ];
        for kind in kinds {
            assert!(
                report.by_kind.get(kind).copied().unwrap_or(0) > 0,
                "no {kind} step validated: {}",
                report.render()
            );
        }
        assert!(report.messages_received > 0);
    }
}

/// A run with leases (L1–L6): every tick is the model's clock advancing by its
/// milliseconds, and reads answered under a lease are the model's lease reads.
#[test]
fn a_run_with_leases_is_transitions_the_model_allows() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    // The reader's 40 reads come every 146 ms, inside the 196 ms a round's lease lasts.
    let extra = ["--read-policy", "lease", "--reader-ops", "40"];
    let (code, chaos) = bounded_chaos(dir.path(), 3, 34, &extra);
    assert_eq!(chaos["linearizable"], true, "{chaos:#}");
    assert_eq!(code, Some(0), "{chaos:#}");
    let report = validated(&step_logs(&chaos));
    assert!(report.passed(), "{}", report.render());
    assert!(report.model_config.leases > 0, "{}", report.render());
    // L5: some read was answered in the step it arrived in, from the lease.
    let logs = step_logs(&chaos);
    assert!(reads_answered_on_arrival(&logs) > 0, "no lease read");
    for kind in ["tick", "read", "confirm", "confirmed", "recover"] {
        assert!(
            report.by_kind.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} step validated: {}",
            report.render()
        );
    }
}

/// A leader that trusts its lease beyond the drift bound (core mutant `lease-beyond-drift`)
/// is rejected at the step that starts its first round: the model's lease ends `2D` earlier.
/// (The chaos history check cannot see it: within the drift bound no clock runs fast enough
/// for the 4 ms to matter.)
#[test]
fn a_lease_trusted_beyond_the_drift_bound_in_a_real_run_is_rejected() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = [
        "--read-policy",
        "lease",
        "--seeded-bug",
        "lease-beyond-drift",
    ];
    let (_, chaos) = bounded_chaos(dir.path(), 3, 35, &extra);
    let report = validated(&step_logs(&chaos));
    assert!(!report.passed(), "{}", report.render());
    // The initial leader's bootstrap round (L5'), sent at its clock's 0: the model trusts
    // the 200 ms grant for 196 ms (margin 4), the mutant for all 200.
    let first = &report.rejections[0];
    let bootstrap = first.node == 0
        && first.event == "start on empty storage"
        && first
            .expected
            .as_deref()
            .is_some_and(|e| e.contains("round lease until 196"))
        && first
            .actual
            .as_deref()
            .is_some_and(|a| a.contains("round lease until 200"));
    assert!(bootstrap, "{}", report.render());
}

#[test]
fn a_seeded_core_bug_in_a_real_run_is_rejected() {
    let _cluster = one_cluster_at_a_time();
    // Five replicas: with three, a majority counted one short (1) still needs one peer's
    // vote besides the leader's, which is what the correct count (2) needs too.
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, chaos) = bounded_chaos(dir.path(), 5, 33, &["--seeded-bug", "quorum-one-short"]);
    let traces = dir.path().join("traces");
    let report = validate::validate_with_traces(&step_logs(&chaos), Some(&traces))
        .unwrap_or_else(|e| panic!("cannot validate: {e}"));
    eprintln!("{}", report.render());
    assert!(!report.passed(), "{}", report.render());
    for rejection in report.rejections.iter().filter(|r| r.trace.is_some()) {
        opens_on_the_rejected_step(rejection);
    }
    // The leader chooses on too few Accepteds (phase 2), or leads on too few Promises (phase 1).
    let quorum_step = report.rejections.iter().find(|r| {
        r.reason.contains("the model does otherwise")
            && (r.event.contains("Accepted") || r.event.contains("Promise"))
    });
    assert!(
        quorum_step.is_some_and(|r| r.trace.is_some()),
        "no rejected Accepted or Promise step with a trace file: {}",
        report.render()
    );
}

/// A rejection's trace file (`validate --trace-dir`) is a `multi-unbounded` trace whose
/// initial state holds the rejected replica as the rejection shows it, and whose path is the
/// model's actions for the step, each enabled where it is taken; the explorer model starts
/// there. What `paxos-model explore --trace` does with the file, without the server.
fn opens_on_the_rejected_step(rejection: &validate::Rejection) {
    use paxos_model::actor_trace;
    use paxos_model::explorer_view::Readable;
    use paxos_model::multi::{self, MultiConfig, MultiState};
    use stateright::Model;

    let file = rejection.trace.as_deref().expect("a trace file");
    let trace = paxos_model::runner::read_trace(Path::new(file)).expect("a trace file");
    assert_eq!(trace.variant, "multi-unbounded");
    let divergence = trace.divergence.as_ref().expect("the rejection");
    assert_eq!(divergence["at"], rejection.at.as_str());
    let cfg: MultiConfig = serde_json::from_value(trace.config.clone()).expect("a configuration");
    cfg.validate_unbounded().expect("valid");
    let model = multi::unbounded_model(cfg.clone());
    let start = actor_trace::state_from_json(&model, trace.initial_state.clone())
        .expect("the initial state is a state of the model");
    assert_eq!(start.actor_states.len(), cfg.replicas);
    let MultiState::Replica(replica) = &*start.actor_states[rejection.node as usize] else {
        panic!("n{} is a replica", rejection.node)
    };
    // The rejection shows the replica's model state before the step, shortened.
    let shown = rejection
        .model_before
        .split(" … (")
        .next()
        .unwrap_or_default();
    assert!(
        format!("{replica:?}").starts_with(shown),
        "{file}: {replica:?} against {shown}"
    );
    let explorer = Readable::starting_at(model.clone(), start.clone());
    let mut state = explorer.init_states().remove(0);
    let mut indices = trace.explorer_path.split('/');
    assert_eq!(indices.next(), Some("0"), "{file}");
    let mut taken = 0;
    for index in indices {
        let index: usize = index.parse().expect("an action index");
        let mut actions = Vec::new();
        explorer.actions(&state, &mut actions);
        assert!(
            index < actions.len(),
            "{file}: action {index} of {}",
            actions.len()
        );
        let action = actions.swap_remove(index);
        state = explorer.next_state(&state, action).unwrap_or(state);
        taken += 1;
    }
    assert_eq!(taken, trace.steps.len(), "{file}");
    assert!(
        taken > 0 || divergence["path_stopped"].is_string(),
        "{file}"
    );
    if let Some(last) = trace.steps.last() {
        assert_eq!(actor_trace::state_json(&state.0), last.state, "{file}");
    }
}

/// Rewrites every line of every log with `edit` (which returns whether it changed the line),
/// into `dir`; panics when no line was changed.
/// A step line with its broadcasts written out, one `Send` per recipient, and no `also_to`
/// (a line may leave it out): an edit that removes or moves effects would otherwise shift the
/// indices `also_to` names.
fn with_every_send(line: &mut Value) {
    let Some(step) = line.get_mut("step").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(also_to) = step.remove("also_to") else {
        return;
    };
    let also_to: Vec<(usize, Vec<u64>)> =
        serde_json::from_value(also_to).expect("also_to as the format has it");
    let effects = step
        .get_mut("effects")
        .and_then(Value::as_array_mut)
        .expect("a step's effects");
    for (i, peers) in also_to.into_iter().rev() {
        let again: Vec<Value> = peers
            .into_iter()
            .map(|to| {
                let mut send = effects[i].clone();
                send["Send"]["to"] = to.into();
                send
            })
            .collect();
        effects.splice(i + 1..i + 1, again);
    }
}

fn tampered(
    logs: &[PathBuf],
    dir: &Path,
    mut edit: impl FnMut(&mut Value) -> bool,
) -> Vec<PathBuf> {
    let mut changed = false;
    let mut out = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).expect("read a step log");
        let mut lines = Vec::new();
        for line in text.lines() {
            // A torn last line (a process killed while it wrote) stays as it is.
            let Ok(mut value) = serde_json::from_str::<Value>(line) else {
                lines.push(line.to_string());
                continue;
            };
            with_every_send(&mut value);
            if !changed && edit(&mut value) {
                changed = true;
            }
            lines.push(value.to_string());
        }
        let path = dir.join(log.file_name().expect("a file name"));
        std::fs::write(&path, lines.join("\n") + "\n").expect("write a tampered log");
        out.push(path);
    }
    assert!(changed, "the tampering found nothing to change");
    out
}

/// A tampering for [`tampered`]: the number at `pointer` of the first line that has one,
/// raised by `by`.
fn raised(pointer: &'static str, by: u64) -> impl FnMut(&mut Value) -> bool {
    move |line| match line.pointer_mut(pointer) {
        Some(number) => {
            *number = (number.as_u64().unwrap_or(0) + by).into();
            true
        }
        None => false,
    }
}

/// The field at `pointer` of the first of a step line's effects that has it.
fn effect_field<'a>(line: &'a mut Value, pointer: &str) -> Option<&'a mut Value> {
    line.pointer_mut("/step/effects")?
        .as_array_mut()?
        .iter_mut()
        .find_map(|e| e.pointer_mut(pointer))
}

fn reasons(report: &Report) -> String {
    report
        .rejections
        .iter()
        .map(|r| r.reason.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A rotated step log (`--step-log-segment-mib`): every segment after a replica's first
/// begins with a checkpoint line, which validation checks is the state the lines before it
/// rebuilt (a checkpoint that is not is rejected), and from which a replica whose earlier
/// files were deleted is validated.
#[test]
fn a_rotated_run_validates_and_its_checkpoints_are_checked() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    // The harness's own workload for 8 s writes a few MiB per replica; snapshots every 200
    // slots put one below every replica's second file.
    let args = [
        "--duration-secs",
        "8",
        "--step-log-segment-mib",
        "1",
        "--snapshot-interval-slots",
        "200",
    ];
    let (code, chaos) = chaos(dir.path(), 3, 36, &args);
    assert_eq!(chaos["linearizable"], true, "{chaos:#}");
    assert_eq!(code, Some(0), "{chaos:#}");
    let logs = step_logs(&chaos);
    let begins_with_checkpoint = |log: &PathBuf| {
        let text = std::fs::read_to_string(log).expect("read a step log");
        text.starts_with(r#"{"checkpoint":"#)
    };
    let checkpoints = logs
        .iter()
        .filter(|log| begins_with_checkpoint(log))
        .count();
    assert!(
        checkpoints >= 3,
        "{checkpoints} segments begin with a checkpoint: {logs:?}"
    );
    let report = validated(&logs);
    assert!(report.passed(), "{}", report.render());
    // A kill in the middle of writing a checkpoint leaves it torn, and skipped.
    assert!(
        report.checkpoints >= 3 && report.checkpoints <= checkpoints,
        "{checkpoints} files begin with a checkpoint: {}",
        report.render()
    );

    // A checkpoint whose state is not the one the lines before it rebuilt.
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).expect("mkdir");
    let logs_forged = tampered(&logs, &forged, raised("/checkpoint/state/applied", 1));
    let report = validated(&logs_forged);
    assert!(
        reasons(&report).contains("not the one its lines rebuilt"),
        "{}",
        report.render()
    );

    // Every replica's first file deleted (as `serve --step-log-keep` does): each replica is
    // validated from its first checkpoint, the commands below the lowest snapshot among
    // them standing in as each client's last; what a replica sent before its first line is
    // taken as sent. It still validates, and a step tampered after a window is rejected.
    let replica = |log: &PathBuf| {
        let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.split('.').next().unwrap_or_default().to_string()
    };
    let windowed: Vec<PathBuf> = logs
        .iter()
        .enumerate()
        .filter(|(k, log)| {
            let first_of_replica = *k == 0 || replica(&logs[k - 1]) != replica(log);
            let rotated = logs
                .get(k + 1)
                .is_some_and(|next| replica(next) == replica(log));
            !(first_of_replica && rotated)
        })
        .map(|(_, log)| log.clone())
        .collect();
    let report = validated(&windowed);
    assert!(report.passed(), "{}", report.render());
    assert!(report.windows >= 1, "{}", report.render());
    let forged_step = dir.path().join("forged-step");
    std::fs::create_dir(&forged_step).expect("mkdir");
    let windowed_forged = tampered(
        &windowed,
        &forged_step,
        raised("/step/state/promised/round", 7),
    );
    let report = validated(&windowed_forged);
    assert!(!report.passed(), "{}", report.render());
    // A message received from a replica whose lines begin at a checkpoint, and not among its
    // sends, names a ballot above the one it had promised there: it was not sent before.
    let forged_receipt = dir.path().join("forged-receipt");
    std::fs::create_dir(&forged_receipt).expect("mkdir");
    let windowed_forged = tampered(
        &windowed,
        &forged_receipt,
        raised("/step/input/Message/msg/Confirmed/ballot/round", 100),
    );
    let report = validated(&windowed_forged);
    assert!(
        reasons(&report).contains("never sent"),
        "{}",
        report.render()
    );
}

#[test]
fn tampered_step_logs_are_rejected() {
    let _cluster = one_cluster_at_a_time();
    // The tampering needs a run with a restart, an Accept received, a Decide received and a
    // read: a run whose faults kept every command out (it happens on a loaded machine) is run again.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut logs = Vec::new();
    for seed in 34..37 {
        let run = dir.path().join(format!("seed-{seed}"));
        let (_, chaos) = bounded_chaos(&run, 3, seed, &["--faults", "kill,torn-wal,partition"]);
        logs = step_logs(&chaos);
        let report = validated(&logs);
        assert!(report.passed(), "{}", report.render());
        let has = |kind: &str| report.by_kind.get(kind).copied().unwrap_or(0) > 0;
        if report.starts > 3 && has("accept") && has("decide") && has("read") {
            break;
        }
    }

    // A received message nobody sent: the first Accept a follower received now names slot 3.
    let forged = tempfile::tempdir().expect("temp dir");
    let forged = tampered(&logs, forged.path(), |line| {
        match line.pointer_mut("/step/input/Message/msg/Accept/slot") {
            Some(slot) if *slot != 3 => {
                *slot = 3.into();
                true
            }
            _ => false,
        }
    });
    let report = validated(&forged);
    // Sends and receipts are matched by a digest of each message: the rejection shows the
    // message itself again.
    assert!(
        reasons(&report).contains("never sent") && reasons(&report).contains(r#""slot":3"#),
        "{}",
        report.render()
    );

    // A step that forgets a record it must persist.
    let unpersisted = tempfile::tempdir().expect("temp dir");
    let unpersisted = tampered(&logs, unpersisted.path(), |line| {
        let Some(effects) = line
            .pointer_mut("/step/effects")
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = effects.len();
        effects.retain(|e| e.get("Persist").is_none());
        effects.len() != before
    });
    let report = validated(&unpersisted);
    assert!(!report.passed(), "{}", report.render());
    assert!(
        reasons(&report).contains("persisted"),
        "{}",
        report.render()
    );

    // A state the transition does not lead to: a follower promises a ballot nobody sent.
    let wrong_state = tempfile::tempdir().expect("temp dir");
    let wrong_state = tampered(&logs, wrong_state.path(), |line| {
        if line.pointer("/step/input/Message/msg/Decide").is_none() {
            return false;
        }
        match line.pointer_mut("/step/state/promised/round") {
            Some(round) => {
                *round = 9.into();
                true
            }
            None => false,
        }
    });
    let report = validated(&wrong_state);
    assert!(reasons(&report).contains("state"), "{}", report.render());

    // A restart that recovers what was never persisted: the WAL invented a record.
    let lossy_wal = tempfile::tempdir().expect("temp dir");
    let mut first_start = std::collections::BTreeSet::new();
    let lossy_wal = tampered(&logs, lossy_wal.path(), |line| {
        let Some(start) = line.get_mut("start") else {
            return false;
        };
        // A replica's first start recovers nothing; a restart is any later one.
        let node = start["node"].as_u64();
        if first_start.insert(node) {
            return false;
        }
        match start.pointer_mut("/recovered/round") {
            Some(round) => {
                *round = (round.as_u64().unwrap_or(0) + 7).into();
                true
            }
            None => false,
        }
    });
    let report = validated(&lossy_wal);
    assert!(
        reasons(&report).contains("no prefix"),
        "{}",
        report.render()
    );

    // A read answered with a value the replica's applied prefix does not hold.
    let forged_read = tempfile::tempdir().expect("temp dir");
    let forged_read = tampered(&logs, forged_read.path(), |line| {
        let Some(output) = effect_field(line, "/ReadReply/output") else {
            return false;
        };
        *output = serde_json::json!({ "Value": "forged" });
        true
    });
    let report = validated(&forged_read);
    assert!(
        reasons(&report).contains("below its applied slot"),
        "{}",
        report.render()
    );

    // A read answered the moment it arrived, before any confirmation round (Q1, Q3).
    let early = tempfile::tempdir().expect("temp dir");
    let early = answered_on_arrival(&logs, early.path());
    let report = validated(&early);
    assert!(
        reasons(&report).contains("the model does otherwise"),
        "{}",
        report.render()
    );

    // A kill in the middle of a write tears the last line, whose step was never performed
    // (nothing of it was sent): the torn end is skipped. A torn line with steps after it is
    // damage, and refused.
    let torn = tempfile::tempdir().expect("temp dir");
    let torn_end = torn.path().join("end");
    let torn_middle = torn.path().join("middle");
    for dir in [&torn_end, &torn_middle] {
        std::fs::create_dir(dir).expect("a directory");
    }
    let mut at_end = Vec::new();
    let mut in_middle = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).expect("read a step log");
        let name = log.file_name().expect("a file name");
        let (end, middle) = if i == 0 {
            let lines: Vec<&str> = text.lines().collect();
            let fragment = &lines[1][..lines[1].len() / 2];
            let middle = [lines[0], fragment]
                .into_iter()
                .chain(lines[1..].iter().copied())
                .collect::<Vec<_>>()
                .join("\n");
            (format!("{text}{fragment}"), middle + "\n")
        } else {
            (text.clone(), text)
        };
        std::fs::write(torn_end.join(name), end).expect("write");
        std::fs::write(torn_middle.join(name), middle).expect("write");
        at_end.push(torn_end.join(name));
        in_middle.push(torn_middle.join(name));
    }
    let report = validated(&at_end);
    assert!(report.passed(), "{}", report.render());
    let refused = validate::validate(&in_middle).err().unwrap_or_default();
    let expected = format!("not a {STEP_LOG_FORMAT} line");
    assert!(refused.contains(&expected), "{refused}");
}

/// How many reads were answered in the step they arrived in.
fn reads_answered_on_arrival(logs: &[PathBuf]) -> usize {
    let mut answered = 0;
    for log in logs {
        let text = std::fs::read_to_string(log).expect("read a step log");
        for line in text.lines() {
            // A torn last line answered nothing.
            let Ok(line) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(id) = line.pointer("/step/input/Read/id") else {
                continue;
            };
            let effects = line.pointer("/step/effects").and_then(Value::as_array);
            answered += usize::from(effects.is_some_and(|effects| {
                effects
                    .iter()
                    .any(|e| e.pointer("/ReadReply/id") == Some(id))
            }));
        }
    }
    answered
}

/// Copies the logs into `dir` with the first read answer of the first log that has one moved
/// to the step where that read arrived.
fn answered_on_arrival(logs: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let mut moved = false;
    let mut out = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).expect("read a step log");
        let mut lines: Vec<Value> = text
            .lines()
            // A torn last line, which validation skips, is left out.
            .filter_map(|l| serde_json::from_str(l).ok())
            .map(|mut line| {
                with_every_send(&mut line);
                line
            })
            .collect();
        if !moved {
            let answer = lines.iter_mut().enumerate().find_map(|(at, line)| {
                let effects = line.pointer_mut("/step/effects")?.as_array_mut()?;
                let i = effects.iter().position(|e| e.get("ReadReply").is_some())?;
                Some((at, effects.remove(i)))
            });
            if let Some((answered_at, answer)) = answer {
                let id = answer.pointer("/ReadReply/id").cloned();
                let arrival = lines[..answered_at]
                    .iter_mut()
                    .rev()
                    .find(|l| l.pointer("/step/input/Read/id").cloned() == id)
                    .expect("the read's arrival precedes its answer");
                arrival
                    .pointer_mut("/step/effects")
                    .and_then(Value::as_array_mut)
                    .expect("a step's effects")
                    .push(answer);
                moved = true;
            }
        }
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        let path = dir.join(log.file_name().expect("a file name"));
        std::fs::write(&path, text.join("\n") + "\n").expect("write a tampered log");
        out.push(path);
    }
    assert!(moved, "no read was answered in these logs");
    out
}

/// A 3-replica cluster of `paxos-node serve` processes with step logs, snapshotting after
/// every applied slot (K1), where a follower is killed, two writes are chosen and compacted
/// past while it is down, and it restarts and catches up by installing a snapshot (K5, K6,
/// K4), then restarts again from that snapshot. Returns the step logs and the restarted
/// replica's log.
fn run_with_a_replica_behind_a_snapshot(dir: &Path) -> (Vec<PathBuf>, String) {
    let node = paxos_node();
    let ports: Vec<u16> = {
        let held: Vec<std::net::TcpListener> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        held.iter()
            .map(|l| l.local_addr().expect("an address").port())
            .collect()
    };
    let secret = dir.join("cluster.secret");
    let made = Command::new(&node)
        .args(["secret", "--out"])
        .arg(&secret)
        .status()
        .expect("paxos-node secret");
    assert!(made.success());
    let mut toml = String::from(
        "cluster_id = \"snapshots\"\n[auth]\nsecret_file = \"cluster.secret\"\n\
         [limits]\nwindow = 2\nslot_limit = 4\nsnapshot_interval_slots = 1\n",
    );
    for id in 0..3 {
        toml += &format!(
            "[[nodes]]\nid = {id}\npeer_addr = \"127.0.0.1:{}\"\nclient_addr = \"127.0.0.1:{}\"\n",
            ports[2 * id],
            ports[2 * id + 1]
        );
    }
    let config = dir.join("cluster.toml");
    std::fs::write(&config, toml).expect("write the configuration");
    let endpoints: Vec<String> = (0..3)
        .map(|id| format!("127.0.0.1:{}", ports[2 * id + 1]))
        .collect();
    let all = endpoints.join(",");
    let serve = |id: usize| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node-{id}.log")))
            .expect("a log file");
        Command::new(&node)
            .args(["serve", "--config"])
            .arg(&config)
            .args([
                "--id",
                &id.to_string(),
                "--seed",
                &id.to_string(),
                "--data-dir",
            ])
            .arg(dir.join(format!("node-{id}")))
            .arg("--step-log")
            .arg(dir.join(format!("node-{id}.steps.jsonl")))
            .stderr(log)
            .spawn()
            .expect("paxos-node serve")
    };
    let statuses = |endpoints: &str| -> Vec<Value> {
        let out = Command::new(&node)
            .args(["status", "--endpoints", endpoints])
            .output()
            .expect("paxos-node status");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let mut nodes: Vec<std::process::Child> = (0..3).map(serve).collect();
    wait_until("a leader", &|| {
        statuses(&all).iter().any(|s| s["role"] == "leading")
    });
    let leader = statuses(&all)
        .iter()
        .find(|s| s["role"] == "leading")
        .and_then(|s| s["id"].as_u64())
        .expect("a leader") as usize;
    let behind = (leader + 1) % 3;
    nodes[behind].kill().expect("kill -9");
    nodes[behind].wait().expect("reap");
    for (client, key) in [(1, "a"), (2, "b")] {
        let put = Command::new(&node)
            .args(["put", key, "v", "--client-id", &client.to_string()])
            .args(["--endpoints", &all])
            .output()
            .expect("paxos-node put");
        assert!(put.status.success(), "{put:?}");
    }
    // Both writes applied at the replica that was down.
    let caught_up = || {
        statuses(&endpoints[behind])
            .first()
            .and_then(|s| s["applied"].as_u64())
            .is_some_and(|applied| applied >= 2)
    };
    nodes[behind] = serve(behind);
    wait_until("the restarted replica to catch up", &caught_up);
    // It restarts once more, now from the snapshot it installed.
    nodes[behind].kill().expect("kill -9");
    nodes[behind].wait().expect("reap");
    nodes[behind] = serve(behind);
    wait_until("the replica to restart from its snapshot", &caught_up);
    for child in &nodes {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for child in &mut nodes {
        let _ = child.wait();
    }
    let logs = (0..3)
        .map(|id| dir.join(format!("node-{id}.steps.jsonl")))
        .collect();
    let log = std::fs::read_to_string(dir.join(format!("node-{behind}.log"))).unwrap_or_default();
    (logs, log)
}

/// Snapshots in a real run: every compaction, snapshot message and install is a transition
/// the model allows; a snapshot that is not the state after the commands below it, and a
/// restart from a snapshot never taken, are rejected.
#[test]
fn a_real_run_with_compaction_and_an_install_is_transitions_the_model_allows() {
    let _cluster = one_cluster_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    let (logs, behind_log) = run_with_a_replica_behind_a_snapshot(dir.path());
    assert!(
        behind_log.contains("snapshot installed from a peer"),
        "the restarted replica did not install a snapshot:\n{behind_log}"
    );
    let report = validated(&logs);
    assert!(report.passed(), "{}", report.render());
    for kind in ["compact", "snapshot", "status", "recover"] {
        assert!(
            report.by_kind.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} step validated: {}",
            report.render()
        );
    }

    // A snapshot whose key-value state is not what its commands leave.
    let forged = tempfile::tempdir().expect("temp dir");
    let forged = tampered(&logs, forged.path(), |line| {
        let Some(state) = effect_field(line, "/Snapshot/state_machine") else {
            return false;
        };
        state["forged"] = "value".into();
        true
    });
    let report = validated(&forged);
    assert!(
        reasons(&report).contains("is not the state after"),
        "{}",
        report.render()
    );

    // A restart from a snapshot the replica never took.
    let invented = tempfile::tempdir().expect("temp dir");
    let invented = tampered(&logs, invented.path(), raised("/start/snapshot/applied", 1));
    let report = validated(&invented);
    assert!(!report.passed(), "{}", report.render());
}
