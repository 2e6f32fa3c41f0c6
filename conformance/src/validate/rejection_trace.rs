//! A trace file for a step trace validation rejected (specs/proposals/rejection-traces.md):
//! the run's state around the step as a state of the model in its `Unbounded` space, and the
//! step as the model's actions from it, for `paxos-model explore --trace FILE`.
//!
//! Validation runs each replica's lines on their own; the run has no global state at any
//! moment. The file's state is the causal past of the rejected step (a consistent cut):
//! - the rejected replica as the model had it before the step;
//! - every other replica after its last step the rejected one could have heard of: the
//!   earliest step that sent a message the rejected replica received, before or at the
//!   step, and transitively the steps those heard of (a replica with no such step has not
//!   started in the cut);
//! - in flight, every message a step in the cut sent that no step in the cut received, and
//!   the messages the rejected step delivers (a client's request included: clients are no
//!   actors of the unbounded model);
//! - every replica running, with the timers the model keeps armed in its state.
//!
//! The earliest send of a message stands for the send: the messages are equal, so the state
//! is one the model could be in, even when the run sent it again later.

use std::collections::BTreeMap;

use paxos_model::actor_trace;
use paxos_model::multi::{unbounded_model, UnboundedModel, UnboundedModelState};
use paxos_model::runner::{self, CheckTarget, Classification, Trace, TraceStep};
use serde_json::{json, Value as Json};
use stateright::actor::ActorModelAction;
use stateright::Model;

use super::*;

/// Where a trace file starts: the rejected replica's model before the step, and the model
/// events the logged input stands for.
pub(super) struct Seed {
    pub before: ModelReplica,
    pub events: Vec<ModelEvent>,
}

/// What validation leaves that a trace file is made of.
pub(super) struct Run<'a> {
    pub domain: &'a Domain,
    pub lines: &'a [Logged],
    pub nodes: &'a [Node],
    /// Per line, the index of its step in its replica's `steps`.
    pub line_steps: &'a [Option<usize>],
    /// Every message sent, with the first line that sent it.
    pub sent: &'a super::Sent,
}

/// The most model actions a file's path takes: a tick can stand for many clock ticks.
const PATH_ACTIONS_MAX: usize = 10_000;

/// Writes the trace file of the rejection of line `at` (an index into `run.lines`) into
/// `dir`; returns its path.
pub(super) fn write(
    dir: &Path,
    run: &Run<'_>,
    at: usize,
    seed: Seed,
    rejection: &Rejection,
) -> Result<PathBuf, String> {
    let trace = build(run, at, seed, rejection)?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let logged = &run.lines[at];
    let name = format!(
        "validation-n{}-{}-line-{}.json",
        logged.node(),
        logged
            .file
            .file_name()
            .map_or_else(|| "log".into(), |f| f.to_string_lossy().replace('.', "_")),
        logged.line
    );
    let path = dir.join(name);
    runner::write_trace_as(&path, &trace).map_err(|e| format!("{e:#}"))?;
    Ok(path)
}

/// The trace of the rejected line `at`.
fn build(run: &Run<'_>, at: usize, seed: Seed, rejection: &Rejection) -> Result<Trace, String> {
    let i = run.lines[at].node() as usize;
    // The model's catch-up timer is armed only where the exhaustive check bounds catch-ups
    // above 0; validation fires it from the core's ticks without the timer.
    let cfg = MultiConfig {
        catch_ups: run.domain.cfg.catch_ups.max(1),
        ..run.domain.cfg.clone()
    };
    let model = unbounded_model(cfg.clone());
    let actor = MultiActor::<Unbounded>::replica(cfg.clone());
    let cut = Cut::of(run, at)?;
    let mut replicas: Vec<ModelReplica> = Vec::with_capacity(cfg.replicas);
    for n in 0..cfg.replicas {
        let replica = if n == i {
            seed.before.clone()
        } else {
            cut.replica(run, n)
                .unwrap_or_else(|| not_started(&actor, n))
        };
        replicas.push(replica);
    }
    let network = in_flight(run, &cut, at, &replicas, &seed)?;
    let initial = json!({
        "actor_states": replicas
            .iter()
            .map(|r| json!({ "Replica": r.state }))
            .collect::<Vec<_>>(),
        "network": network,
        "timers_set": replicas
            .iter()
            .map(|r| actor.armed_timers(&r.state))
            .collect::<Vec<_>>(),
        "crashed": vec![false; cfg.replicas],
        "actor_storages": replicas.iter().map(|r| &r.storage).collect::<Vec<_>>(),
        "history": null,
    });
    let start = actor_trace::state_from_json(&model, initial)
        .map_err(|e| format!("the cut is no state of the model: {e}"))?;
    let (path, steps, stopped) = follow(&model, &start, i, &seed.events);
    let divergence = json!({
        "format": "paxos-validation-rejection/1",
        "node": rejection.node,
        "at": rejection.at,
        "event": rejection.event,
        "reason": rejection.reason,
        "model": rejection.expected,
        "logged": rejection.actual,
        "cut": cut.frontier_described(run),
        "path_stopped": stopped,
    });
    Ok(Trace {
        format: runner::TRACE_FORMAT.to_string(),
        variant: model.variant().to_string(),
        config: model.config_json(),
        property: "trace validation".to_string(),
        classification: Classification::Divergence,
        explorer_path: std::iter::once("0".to_string())
            .chain(path.iter().map(usize::to_string))
            .collect::<Vec<_>>()
            .join("/"),
        initial_state: model.state_json(&start),
        steps,
        divergence: Some(divergence),
    })
}

/// A replica with empty storage, as the model starts one.
fn not_started(actor: &MultiActor<Unbounded>, n: usize) -> ModelReplica {
    let mut out = Out::new();
    let state = match actor.on_start(Id::from(n), &None, &mut out) {
        MultiState::Replica(r) => r,
        MultiState::Client(_) | MultiState::Reader(_) => ReplicaState::empty(),
    };
    ModelReplica {
        state,
        storage: None,
        timer: false,
        ballots: VoteBallots::default(),
    }
}

/// The causal past of a line: per replica, the position (among its own lines) of its last
/// line in it.
struct Cut {
    /// Per replica, its lines' indices into `run.lines`, in order.
    node_lines: Vec<Vec<usize>>,
    /// Per line, its position among its replica's lines.
    position: Vec<usize>,
    frontier: Vec<Option<usize>>,
    /// The rejected line.
    at: usize,
}

impl Cut {
    fn of(run: &Run<'_>, at: usize) -> Result<Cut, String> {
        let replicas = run.nodes.len();
        let mut node_lines = vec![Vec::new(); replicas];
        let mut position = Vec::with_capacity(run.lines.len());
        for (index, logged) in run.lines.iter().enumerate() {
            let lines = node_lines
                .get_mut(logged.node() as usize)
                .ok_or_else(|| format!("n{} is no replica of the run", logged.node()))?;
            position.push(lines.len());
            lines.push(index);
        }
        let mut cut = Cut {
            node_lines,
            position,
            frontier: vec![None; replicas],
            at,
        };
        let i = run.lines[at].node() as usize;
        let mut todo: Vec<(usize, usize)> = Vec::new();
        if let Some(before) = cut.position[at].checked_sub(1) {
            todo.push((i, before));
        }
        todo.extend(cut.senders(run, at)?);
        while let Some((n, upto)) = todo.pop() {
            let from = cut.frontier[n].map_or(0, |f| f + 1);
            if from > upto {
                continue;
            }
            cut.frontier[n] = Some(upto);
            for p in from..=upto {
                let line = cut.node_lines[n][p];
                if line == at {
                    return Err("the rejected step is in its own causal past".into());
                }
                todo.extend(cut.senders(run, line)?);
            }
        }
        Ok(cut)
    }

    /// The (replica, position) of the first line that sent each message `line` received.
    fn senders(&self, run: &Run<'_>, line: usize) -> Result<Vec<(usize, usize)>, String> {
        let logged = &run.lines[line];
        let StepLine::Step {
            input: Input::Message { from, msg },
            ..
        } = &logged.entry
        else {
            return Ok(Vec::new());
        };
        let mut senders = Vec::new();
        for key in message_keys(&run.domain.message(msg)?) {
            if let Some(sent_at) = run.sent.first(*from, logged.node(), key) {
                senders.push((*from as usize, self.position[sent_at]));
            }
        }
        Ok(senders)
    }

    /// Whether `line` is in the cut (the rejected line is not: it is the step taken).
    fn holds(&self, run: &Run<'_>, line: usize) -> bool {
        let n = run.lines[line].node() as usize;
        self.frontier[n].is_some_and(|f| self.position[line] <= f)
    }

    /// Replica `n` at its last line in the cut (or the last before it the model followed),
    /// `None` when it has none.
    fn replica(&self, run: &Run<'_>, n: usize) -> Option<ModelReplica> {
        let upto = self.frontier[n]?;
        self.node_lines[n][..=upto].iter().rev().find_map(|&line| {
            let step = run.line_steps[line]?;
            run.nodes[n].steps[step].model_after.clone()
        })
    }

    /// `n0 at node-0.steps.jsonl:120, n1 not started, ...`.
    fn frontier_described(&self, run: &Run<'_>) -> Vec<String> {
        self.frontier
            .iter()
            .enumerate()
            .map(|(n, f)| match f {
                _ if run.lines[self.at].node() as usize == n => {
                    format!("n{n} before {}", run.lines[self.at].place())
                }
                Some(p) => format!("n{n} after {}", run.lines[self.node_lines[n][*p]].place()),
                None => format!("n{n} not started"),
            })
            .collect()
    }
}

/// The messages in flight in the cut, in the form `actor_trace::state_json` writes them: what
/// its steps sent and did not receive (as the model's messages; a heartbeat has none), and
/// what the rejected step delivers.
fn in_flight(
    run: &Run<'_>,
    cut: &Cut,
    at: usize,
    replicas: &[ModelReplica],
    seed: &Seed,
) -> Result<Vec<Json>, String> {
    // Per (from, to, one-slot message): sent less received.
    let mut count: BTreeMap<(u32, u32, MessageKey), (i64, ImplMessage)> = BTreeMap::new();
    for (line, logged) in run.lines.iter().enumerate() {
        if line == at || !cut.holds(run, line) {
            continue;
        }
        let (effects, input) = match &logged.entry {
            StepLine::Start { effects, .. } => (effects, None),
            StepLine::Step { effects, input, .. } => (effects, Some(input)),
            StepLine::Checkpoint { .. } => continue,
        };
        for effect in effects {
            if let Effect::Send { to, msg } = effect {
                for (key, part) in keyed_parts(&run.domain.message(msg)?) {
                    count
                        .entry((logged.node(), *to, key))
                        .or_insert((0, part))
                        .0 += 1;
                }
            }
        }
        if let Some(Input::Message { from, msg }) = input {
            for (key, part) in keyed_parts(&run.domain.message(msg)?) {
                count
                    .entry((*from, logged.node(), key))
                    .or_insert((0, part))
                    .0 -= 1;
            }
        }
    }
    // What the rejected step receives is delivered by its own model events below.
    if let StepLine::Step {
        input: Input::Message { from, msg },
        ..
    } = &run.lines[at].entry
    {
        for (key, _) in keyed_parts(&run.domain.message(msg)?) {
            count.remove(&(*from, run.lines[at].node(), key));
        }
    }
    let mut network: BTreeMap<(usize, usize, String), (Json, usize)> = BTreeMap::new();
    let mut add = |src: usize, dst: usize, msg: &MultiMsg<Unbounded>, copies: usize| {
        let json = serde_json::to_value(msg).unwrap_or(Json::Null);
        network
            .entry((src, dst, json.to_string()))
            .or_insert((json, 0))
            .1 += copies;
    };
    for ((from, to, _), (copies, part)) in count {
        let Ok(copies) = usize::try_from(copies) else {
            continue;
        };
        let Some(receiver) = replicas.get(to as usize) else {
            continue;
        };
        if copies == 0 {
            continue;
        }
        // An `Accepted` names the receiver's own proposals at its ballot.
        let votes = match &part {
            Message::Accepted { slot, .. } => votes_to_impl_in::<Unbounded>(
                &run.domain.cfg,
                &receiver.state.accepted,
                *slot..slot.saturating_add(1),
            ),
            _ => SlotMap::new(),
        };
        // A heartbeat is no model message; nor is an `Accepted` for a slot the receiver
        // holds no vote in, which the model would ignore.
        let Ok(msgs) = msg_to_model::<Unbounded>(&run.domain.cfg, &part, &votes) else {
            continue;
        };
        for msg in &msgs {
            add(from as usize, to as usize, msg, copies);
        }
    }
    let i = run.lines[at].node() as usize;
    for event in &seed.events {
        if let ModelEvent::Deliver(src, msg) = event {
            let key = (
                usize::from(*src),
                i,
                serde_json::to_value(msg).unwrap_or(Json::Null),
            );
            let text = key.2.to_string();
            network.entry((key.0, key.1, text)).or_insert((key.2, 1));
        }
    }
    Ok(network
        .into_iter()
        .map(|((src, dst, _), (msg, count))| json!({"src": src, "dst": dst, "msg": msg, "count": count}))
        .collect())
}

/// The model's actions for the rejected step's events at replica `i`, from `start`: their
/// indices among the enabled actions (the explorer's path), the trace's steps, and why the
/// path stops early when the model has no such action.
fn follow(
    model: &UnboundedModel,
    start: &UnboundedModelState,
    i: usize,
    events: &[ModelEvent],
) -> (Vec<usize>, Vec<TraceStep>, Option<String>) {
    let id = Id::from(i);
    let mut wanted = Vec::new();
    for event in events {
        match event {
            ModelEvent::Start => wanted.push(ActorModelAction::Recover(id)),
            ModelEvent::Deliver(src, msg) => wanted.push(ActorModelAction::Deliver {
                src: *src,
                dst: id,
                msg: msg.clone(),
            }),
            ModelEvent::Timeout(timer) => wanted.push(ActorModelAction::Timeout(id, *timer)),
            ModelEvent::Clock(ticks) => {
                let ticks = usize::try_from(*ticks).unwrap_or(usize::MAX);
                let room = PATH_ACTIONS_MAX.saturating_sub(wanted.len());
                wanted.extend(std::iter::repeat_n(
                    ActorModelAction::Timeout(id, MultiTimer::Clock),
                    ticks.min(room),
                ));
            }
        }
    }
    let mut state = start.clone();
    let mut path = Vec::new();
    let mut steps = Vec::new();
    for action in wanted.into_iter().take(PATH_ACTIONS_MAX) {
        let mut enabled = Vec::new();
        model.actions(&state, &mut enabled);
        let Some(index) = enabled.iter().position(|a| *a == action) else {
            let why = format!("the model has no action {action:?} here");
            return (path, steps, Some(why));
        };
        let next = model
            .next_state(&state, action.clone())
            .unwrap_or_else(|| state.clone());
        steps.push(TraceStep {
            index: steps.len() + 1,
            action: model.action_json(&action),
            description: model.describe_step(&state, &action, &next),
            state: model.state_json(&next),
        });
        path.push(index);
        state = next;
    }
    (path, steps, None)
}
