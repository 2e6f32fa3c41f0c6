//! Random Multi-Paxos conformance in lockstep, far beyond the exhaustive bounds: a schedule
//! of choices drives one walk through the model (5 replicas, a dozen rounds and elections,
//! crashes, loss, duplication, hundreds of steps), and every step is applied both to the model
//! and to a cluster of real implementation replicas that evolve on their own.
//!
//! Unlike the exhaustive check ([`crate::check::check`]), which rebuilds the implementation
//! replica from the model state before every step, here the implementation's state is never
//! taken from the model: each replica starts from `Replica::new`, steps only on the inputs the
//! model's actions translate to, keeps its durable state as the fold of the records it
//! persisted, and on `Recover` restarts from that durable state alone. After each step the
//! same three comparisons are made (state, sends as a multiset, persisted state, plus the
//! election timer), and in every state the walk reaches the stuttering steps are replayed
//! ([`crate::multi::stutters`]). So this also catches implementation state the model does not
//! see that changes behaviour later.
//!
//! The model's `always` properties are checked on every state of the walk too, so a walk is
//! also a deep random test of the model itself.
//!
//! A schedule is a list of numbers; step `k` takes enabled action `choices[k] mod n` among the
//! `n` actions whose next state is within the model's boundary. Proptest shrinks a failing
//! schedule by dropping and lowering choices, which stays meaningful because every schedule is
//! a valid walk.
//!
//! Limits: the model holds 4 log slots, so walks are long in time (rounds, elections, crashes,
//! retries) rather than in log length.

use std::fmt;
use std::ops::ControlFlow;

use paxos_model::multi::{self, MultiConfig, MultiModelState, MultiMsg, MultiTimer};
use std::sync::Arc;

use paxos_protocol::multi::{Durable, Input, Message, Replica, Runs, Slot, Timers, Timing};
use paxos_protocol::sim::{ignore, Cluster as Sim, MemoryLog, Observer};
use paxos_protocol::step_log::{self, StepState};
use stateright::actor::{ActorModelAction, Id};
use stateright::{Expectation, Model};

use anyhow::Context;
use paxos_model::runner::{self, Classification, Trace};

use crate::ballot_to_impl;
use crate::conform::{multi_json, Mismatch};
use crate::multi::{
    abstraction, canonical, command_to_impl, entry_to_impl, guarded, impl_config,
    impl_recovery_view, input_of, model_outcome, model_recovery_view, outcome_from_impl, stutters,
    ImplEffect, ImplInput, ImplReplica, ImplSnapshot, ModelAction, Op, Sm, StepOutcome,
};

/// A catch-up interval no walk's clock reaches.
const CATCH_UP_NEVER_MS: u64 = 1 << 50;
use crate::trace::divergence_trace;
use paxos_model::types::Ballot;

/// A long-walk configuration: 5 replicas, 2 clients with 4 commands and retries, a reader with
/// 3 reads, 4 slots, rounds up to 12 with up to 10 elections, 2 crashes at a time, a lossy
/// duplicating network.
/// Beyond what the exhaustive checker can cover (its CLI limits rounds to 4, elections to 3).
pub fn long_walk_config(replicas: usize) -> MultiConfig {
    MultiConfig {
        replicas,
        clients: 2,
        commands: 4,
        slots: 4,
        window: 2,
        max_round: 12,
        elections: 10,
        retries: 2,
        spread_clients: false,
        crashes: 2,
        compactions: 12,
        catch_ups: 8,
        reads: 3,
        lossy: true,
        duplicating: true,
        bug: None,
        ..MultiConfig::default()
    }
}

/// [`long_walk_config`] with leader leases (L1–L6): grants of 3 ticks, clocks within 1 tick
/// of each other, 30 ticks of time in a walk.
pub fn lease_walk_config(replicas: usize) -> MultiConfig {
    MultiConfig {
        leases: 3,
        drift: 1,
        ticks: 30,
        ..long_walk_config(replicas)
    }
}

/// How a walk ended.
#[derive(Debug)]
pub struct Walk {
    /// Steps taken (each one an enabled model action).
    pub steps: usize,
    /// Steps that stepped an implementation replica and were compared.
    pub compared: usize,
    /// Stuttering steps (heartbeats, retransmission) replayed in the states walked through
    /// ([`crate::multi::stutters`]).
    pub stutters: usize,
    /// The actions taken, in order (`Debug` of stateright's action).
    pub trail: Vec<String>,
    /// The same actions, for [`Walk::trace`]: a run's parts one by one, in the model's order.
    pub taken: Vec<ModelAction>,
    /// The first disagreement, if any; the walk stops there.
    pub failure: Option<WalkFailure>,
}

impl Walk {
    /// How many actions of the trail start with `kind` (`"Recover"`, `"Timeout"`, ...) and
    /// mention `detail`.
    pub fn count(&self, kind: &str, detail: &str) -> usize {
        self.trail
            .iter()
            .filter(|a| a.starts_with(kind) && a.contains(detail))
            .count()
    }
}

/// Where and how a walk failed; the walk's trail ends with the failing action.
#[derive(Debug)]
pub struct WalkFailure {
    /// 0 for the initial state, else the 1-based step.
    pub step: usize,
    pub kind: FailureKind,
}

#[derive(Debug)]
pub enum FailureKind {
    /// The implementation replica `node` did not do what the model did.
    Divergence {
        node: usize,
        expected: Box<StepOutcome>,
        actual: Box<Result<StepOutcome, String>>,
    },
    /// A step the model takes as a stuttering step (a heartbeat, retransmission) did more
    /// than stutter, in the state the walk had reached.
    Stutter {
        node: usize,
        step: String,
        expected: Box<StepOutcome>,
        actual: Box<Result<StepOutcome, String>>,
    },
    /// A model `always` property failed (a model bug, or a seeded one).
    PropertyViolated(&'static str),
    /// The implementation cluster could not be started for this configuration.
    Startup(String),
}

impl Walk {
    /// The walk as a trace file (specs/trace-format.md) that `paxos-conform replay` re-runs
    /// and `paxos-model explore` opens: a divergence trace, with its record, when the walk
    /// ended in a divergence, else a walk trace. Replay takes every step on its own, so a
    /// divergence that only a run of slots or requests shows replays as conforming; the
    /// walk's `choices` reproduce it.
    pub fn trace(&self, cfg: &MultiConfig) -> anyhow::Result<Trace> {
        let model = multi::model(cfg.clone());
        let init = model
            .init_states()
            .into_iter()
            .next()
            .context("the model has no initial state")?;
        match &self.failure {
            Some(WalkFailure {
                kind:
                    FailureKind::Divergence {
                        node,
                        expected,
                        actual,
                    },
                ..
            }) if !self.taken.is_empty() => {
                let mismatch = Mismatch {
                    node: *node,
                    expected: multi_json(expected),
                    actual: actual
                        .as_ref()
                        .as_ref()
                        .map(multi_json)
                        .map_err(Clone::clone),
                };
                divergence_trace(&model, &init, &self.taken, &mismatch)
            }
            _ => runner::trace_of_actions(
                &model,
                "random lockstep walk",
                Classification::Walk,
                &init,
                &self.taken,
            ),
        }
    }
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(failure) = &self.failure else {
            return writeln!(
                f,
                "{} steps, {} compared, no failure",
                self.steps, self.compared
            );
        };
        writeln!(f, "walk failed at step {}:", failure.step)?;
        for (i, action) in self.trail.iter().enumerate() {
            writeln!(f, "  {:3}. {action}", i + 1)?;
        }
        let outcomes = |f: &mut fmt::Formatter<'_>,
                        expected: &StepOutcome,
                        actual: &Result<StepOutcome, String>| {
            writeln!(f, "  expected (model): {expected:?}")?;
            match actual {
                Ok(actual) => writeln!(f, "  actual (impl):    {actual:?}"),
                Err(why) => writeln!(f, "  actual (impl):    {why}"),
            }
        };
        match &failure.kind {
            FailureKind::Divergence {
                node,
                expected,
                actual,
            } => {
                writeln!(f, "replica n{node} diverges")?;
                outcomes(f, expected, actual)
            }
            FailureKind::Stutter {
                node,
                step,
                expected,
                actual,
            } => {
                writeln!(f, "replica n{node}: the stuttering step {step} diverges")?;
                outcomes(f, expected, actual)
            }
            FailureKind::PropertyViolated(name) => writeln!(f, "model property {name:?} fails"),
            FailureKind::Startup(why) => writeln!(f, "{why}"),
        }
    }
}

/// The implementation side of the lockstep: the protocol crate's in-memory cluster, one
/// replica per model replica. Its network stays empty: the model's network decides what each
/// implementation replica receives.
struct Cluster {
    sim: Sim<Sm>,
}

impl Cluster {
    fn start(cfg: &MultiConfig) -> Result<Self, String> {
        // The model's catch-up timer (K5) fires on its own, independent of the election
        // timer; the core's shares one clock with it. So the walk's replicas never reach
        // their catch-up deadline by the clock (an election tick fires no K5), and the
        // model's catch-up timer is a deadline set to the present ([`Cluster::catch_up`]).
        let configs = (0..cfg.replicas)
            .map(|i| {
                let mut config = impl_config(cfg, i);
                config.timing = Timing {
                    catch_up_interval_ms: CATCH_UP_NEVER_MS,
                    ..config.timing
                };
                config
            })
            .collect();
        let quiet = &mut ignore::<Sm>;
        let mut sim =
            guarded(|| Sim::start(configs, |_| Sm::default(), |_| MemoryLog::default(), quiet))??;
        sim.net.clear();
        Ok(Cluster { sim })
    }

    fn replica(&self, i: usize) -> Option<&ImplReplica> {
        self.sim.replica(i as u32)
    }

    /// What replica `i` has made durable, as recovery reads it: its log and its snapshot.
    fn durable(&self, i: usize) -> Result<(Durable<Op>, Option<ImplSnapshot>), String> {
        let node = self.sim.nodes.get(i).ok_or(format!("no replica {i}"))?;
        let durable = node
            .storage
            .durable()
            .map_err(|e| format!("the replica's records do not fold: {e}"))?;
        Ok((durable, node.storage.snapshot.clone().map(Arc::new)))
    }

    /// A model timer at replica `i` (the election timer M1, or the catch-up timer K5) as the
    /// core fires it: `deadline` picks its deadline, which moves to the present, and the
    /// replica ticks there, where no other deadline is due. So the core's clock moves only
    /// with the model's (its `Clock` timer, leases' time): the model's timers fire at no
    /// particular time. The input to step it with (`None`: the timer is not armed).
    fn fire(
        &mut self,
        i: usize,
        deadline: fn(&mut Timers) -> &mut Option<u64>,
    ) -> Option<ImplInput> {
        let node = self.sim.nodes.get_mut(i)?;
        let replica = node.replica.as_ref()?;
        let mut state = replica.state().clone();
        let now_ms = state.timers.now_ms;
        let at = deadline(&mut state.timers);
        (*at)?;
        *at = Some(now_ms);
        let snapshot = replica.snapshot().cloned();
        let sm = replica.state_machine().clone();
        let rebuilt = Replica::from_state(node.config.clone(), state, snapshot, sm).ok()?;
        node.replica = Some(rebuilt);
        Some(Input::Tick { now_ms })
    }

    /// Steps replica `i` on `input`; returns its effects. Every step also checks the step
    /// log's claim (`paxos-steps/8`): the state its line leaves out is what the step's records
    /// and effects say, so the line rebuilds the whole state from the one before.
    fn step(&mut self, i: usize, input: ImplInput) -> Result<Vec<ImplEffect>, String> {
        let before = self.sim.replica(i as u32).map(|r| r.state().clone());
        let effects = self.effects_of(i, |sim, observe| sim.step(i as u32, input, observe))?;
        if let (Some(before), Some(after)) = (before, self.sim.replica(i as u32)) {
            // Through JSON, as the runtime writes the line and validation reads it: a field
            // JSON cannot hold stops a real replica's step log.
            let previous = step_log::merged(&before.phase);
            let written = serde_json::to_string(&StepState::of(after.state(), &effects, previous))
                .map_err(|e| format!("the step log's line cannot be written: {e}"))?;
            let line: StepState<_, _> = serde_json::from_str(&written)
                .map_err(|e| format!("the step log's line cannot be read back: {e}: {written}"))?;
            let rebuilt = line
                .after(before, &effects)
                .map_err(|e| format!("the step's records do not fold onto its votes: {e:?}"))?;
            if rebuilt != *after.state() {
                return Err(format!(
                    "the step log's line rebuilds another state than the step left: {rebuilt:?} \
                     against {:?}",
                    after.state()
                ));
            }
        }
        Ok(effects)
    }

    /// Restarts replica `i` from what it persisted (M11); returns its effects.
    fn recover(&mut self, i: usize) -> Result<Vec<ImplEffect>, String> {
        self.effects_of(i, |sim, observe| {
            sim.recover(i as u32, Sm::default(), observe)
        })
    }

    /// Replica `i`'s effects in `act`, which may panic (a mutant's assertion): a panic is an
    /// error, as is a record the storage refuses.
    fn effects_of(
        &mut self,
        i: usize,
        act: impl FnOnce(&mut Sim<Sm>, &mut Observer<Sm>) -> Result<(), String>,
    ) -> Result<Vec<ImplEffect>, String> {
        let mut effects = Vec::new();
        let mut observe = |at: u32, effect: &ImplEffect| {
            if at as usize == i {
                effects.push(effect.clone());
            }
        };
        let sim = &mut self.sim;
        guarded(|| act(sim, &mut observe))??;
        self.sim.net.clear();
        Ok(effects)
    }
}

/// The model's replica `i` in `state`, compared with the implementation replica as a whole
/// (used for the initial state, which has no step).
fn compare_at_rest(
    cfg: &MultiConfig,
    state: &MultiModelState,
    cluster: &Cluster,
    i: usize,
) -> Result<(), String> {
    let Some(replica) = cluster.replica(i) else {
        return Ok(());
    };
    let Some(multi::MultiState::Replica(model)) = state.actor_states.get(i).map(|s| &**s) else {
        return Err(format!("actor {i} is not a replica"));
    };
    let actual = abstraction(cfg, replica)?;
    if actual != canonical(*model) {
        return Err(format!(
            "n{i}: model {:?}, impl {actual:?}",
            canonical(*model)
        ));
    }
    let (durable, snapshot) = cluster.durable(i)?;
    let persisted = impl_recovery_view(cfg, &durable, snapshot.as_ref(), replica.now_ms())?;
    let expected = model_recovery_view(state.actor_storages[i].as_ref());
    if persisted != expected {
        return Err(format!(
            "n{i}: model persisted {expected:?}, impl {persisted:?}"
        ));
    }
    Ok(())
}

/// Applies `action` to the implementation cluster; returns the replica it stepped and the
/// outcome, or None when no implementation replica steps (clients, drops, crashes,
/// deliveries to a crashed replica).
fn impl_step(
    cfg: &MultiConfig,
    cluster: &mut Cluster,
    action: &ModelAction,
) -> Option<(usize, Result<StepOutcome, String>)> {
    let replica_index = |id: &Id| Some(usize::from(*id)).filter(|&i| i < cfg.replicas);
    let (i, input) = match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let i = replica_index(dst)?;
            cluster.replica(i)?;
            (i, input_of(cfg, *src, *msg))
        }
        ActorModelAction::Timeout(id, MultiTimer::Election) => {
            let i = replica_index(id)?;
            cluster.replica(i)?;
            (i, cluster.fire(i, |timers| &mut timers.election_at_ms))
        }
        ActorModelAction::Timeout(id, MultiTimer::Clock) => {
            let i = replica_index(id)?;
            let now_ms = cluster.replica(i)?.now_ms() + 1;
            (i, Some(Input::Tick { now_ms }))
        }
        ActorModelAction::Timeout(id, MultiTimer::Compact) => {
            let i = replica_index(id)?;
            cluster.replica(i)?;
            (i, Some(Input::Compact))
        }
        ActorModelAction::Timeout(id, MultiTimer::CatchUp) => {
            let i = replica_index(id)?;
            (
                i,
                Some(cluster.fire(i, |timers| &mut timers.catch_up_at_ms)?),
            )
        }
        ActorModelAction::Crash(id) => {
            cluster.sim.crash(replica_index(id)? as u32);
            return None;
        }
        ActorModelAction::Recover(id) => {
            let i = replica_index(id)?;
            let outcome = cluster.durable(i).and_then(|before| {
                let effects = cluster.recover(i)?;
                let replica = cluster.replica(i).ok_or("the replica did not recover")?;
                outcome_from_impl(cfg, replica, effects, before, None)
            });
            return Some((i, outcome));
        }
        _ => return None,
    };
    step_replica(cfg, cluster, i, input)
}

/// Steps the implementation replica `i` (if it is up) on `input` (`None`: no input, as for the
/// model's client retry timer at a replica, which has none).
fn step_replica(
    cfg: &MultiConfig,
    cluster: &mut Cluster,
    i: usize,
    input: Option<ImplInput>,
) -> Option<(usize, Result<StepOutcome, String>)> {
    cluster.replica(i)?;
    let outcome = cluster.durable(i).and_then(|before| {
        let effects = match input {
            Some(input) => cluster.step(i, input)?,
            None => Vec::new(),
        };
        let replica = cluster.replica(i).ok_or("the replica stopped")?;
        outcome_from_impl(cfg, replica, effects, before, None)
    });
    Some((i, outcome))
}

/// Walks `cfg`'s model along `choices`, in lockstep with an implementation cluster.
pub fn lockstep(cfg: &MultiConfig, choices: &[u32]) -> Walk {
    let model = multi::model(cfg.clone());
    let always: Vec<_> = model
        .properties()
        .into_iter()
        .filter(|p| matches!(p.expectation, Expectation::Always))
        .collect();
    let mut walk = Walk {
        steps: 0,
        compared: 0,
        stutters: 0,
        trail: Vec::new(),
        taken: Vec::new(),
        failure: None,
    };
    let fail = |step: usize, kind: FailureKind| Some(WalkFailure { step, kind });
    let Some(mut state) = model.init_states().into_iter().next() else {
        return walk;
    };
    let mut cluster = match Cluster::start(cfg) {
        Ok(cluster) => cluster,
        Err(why) => {
            walk.failure = fail(0, FailureKind::Startup(why));
            return walk;
        }
    };
    for i in 0..cfg.replicas {
        if let Err(why) = compare_at_rest(cfg, &state, &cluster, i) {
            walk.failure = fail(
                0,
                FailureKind::Divergence {
                    node: i,
                    expected: Box::new(initial_outcome(&model, &state, i)),
                    actual: Box::new(Err(why)),
                },
            );
            return walk;
        }
    }
    let mut actions = Vec::new();
    for &choice in choices {
        for stutter in stutters(&model, &state) {
            walk.stutters += 1;
            if !stutter.agrees() {
                walk.failure = fail(
                    walk.steps,
                    FailureKind::Stutter {
                        node: stutter.node,
                        step: stutter.label,
                        expected: Box::new(stutter.expected),
                        actual: Box::new(stutter.actual),
                    },
                );
                return walk;
            }
        }
        actions.clear();
        model.actions(&state, &mut actions);
        let mut enabled: Vec<(ModelAction, MultiModelState)> = actions
            .drain(..)
            .filter_map(|a| {
                let next = model.next_state(&state, a.clone()).unwrap_or(state.clone());
                Model::within_boundary(&model, &next).then_some((a, next))
            })
            .collect();
        if enabled.is_empty() {
            break;
        }
        let (action, next) = enabled.swap_remove(pick(&enabled, choice));
        if choice.rotate_left(11) % 4 == 0 {
            if let Some(run) = run_from(cfg, &model, &state, &action, &enabled) {
                match take_run(cfg, &model, &always, &mut cluster, &mut walk, state, &run) {
                    ControlFlow::Continue(after) => {
                        state = after;
                        continue;
                    }
                    ControlFlow::Break(()) => return walk,
                }
            }
        }
        walk.steps += 1;
        walk.trail.push(format!("{action:?}"));
        walk.taken.push(action.clone());
        if let Some((i, actual)) = impl_step(cfg, &mut cluster, &action) {
            walk.compared += 1;
            let expected = model_outcome(&model, &state, &action, i, &next);
            if actual.as_ref() != Ok(&expected) {
                walk.failure = fail(
                    walk.steps,
                    FailureKind::Divergence {
                        node: i,
                        expected: Box::new(expected),
                        actual: Box::new(actual),
                    },
                );
                return walk;
            }
        }
        state = next;
        if let Some(p) = always.iter().find(|p| !(p.condition)(&model, &state)) {
            walk.failure = fail(walk.steps, FailureKind::PropertyViolated(p.name));
            return walk;
        }
    }
    walk
}

/// Deliveries the implementation receives as one input: several requests at one replica, or
/// phase 2 messages from one sender for consecutive slots, which the core takes as a run.
struct Run {
    /// The model's deliveries, in the order the run stands for them (ascending `(client, seq)`
    /// for requests, ascending slot otherwise).
    actions: Vec<ModelAction>,
    dst: usize,
    input: ImplInput,
}

/// A run starting with the delivery `first` and going on with other deliveries enabled now
/// (`enabled`), if there is one of at least two.
fn run_from(
    cfg: &MultiConfig,
    model: &multi::MultiModel,
    state: &MultiModelState,
    first: &ModelAction,
    enabled: &[(ModelAction, MultiModelState)],
) -> Option<Run> {
    let ActorModelAction::Deliver { src, dst, msg } = first else {
        return None;
    };
    let dst_index = usize::from(*dst);
    if dst_index >= cfg.replicas || state.crashed[dst_index] {
        return None;
    }
    let deliveries = enabled.iter().filter_map(|(a, _)| match a {
        ActorModelAction::Deliver {
            src: s,
            dst: d,
            msg: m,
        } if d == dst => Some((*s, *m)),
        _ => None,
    });
    let from = usize::from(*src) as u32;
    let slot_run = |key: &dyn Fn(MultiMsg) -> Option<(Ballot, u8, multi::Cmd)>| {
        let (ballot, first_slot, first_cmd) = key(*msg)?;
        let mut same_sender: Vec<(Slot, multi::Cmd)> = deliveries
            .clone()
            .filter(|(s, _)| s == src)
            .filter_map(|(_, m)| {
                key(m)
                    .filter(|(b, s, _)| *b == ballot && *s != first_slot)
                    .map(|(_, s, c)| (Slot::from(s), c))
            })
            .collect();
        same_sender.push((Slot::from(first_slot), first_cmd));
        same_sender.sort_by_key(|&(slot, _)| slot);
        same_sender.dedup_by_key(|&mut (slot, _)| slot);
        // The stretch of consecutive slots that holds the chosen delivery.
        let holds = |(start, cmds): &(Slot, Vec<multi::Cmd>)| {
            (*start..*start + cmds.len() as Slot).contains(&Slot::from(first_slot))
        };
        let (start, cmds) = Runs::cut(same_sender).into_iter().find(holds)?;
        let run: Vec<(u8, multi::Cmd)> = (start..)
            .zip(cmds)
            .filter_map(|(slot, cmd)| Some((u8::try_from(slot).ok()?, cmd)))
            .collect();
        (run.len() > 1).then_some((ballot, run))
    };
    let to_action = |m: MultiMsg| ActorModelAction::Deliver {
        src: *src,
        dst: *dst,
        msg: m,
    };
    let (actions, input): (Vec<ModelAction>, ImplInput) = match msg {
        MultiMsg::Request(_) => {
            let mut requests: Vec<(Id, multi::Cmd)> = deliveries
                .filter_map(|(s, m)| match m {
                    MultiMsg::Request(cmd) => Some((s, cmd)),
                    _ => None,
                })
                .collect();
            requests.sort_by_key(|(_, cmd)| command_to_impl(cfg, *cmd).id());
            requests.dedup_by_key(|(_, cmd)| *cmd);
            if requests.len() < 2 {
                return None;
            }
            let commands = requests
                .iter()
                .map(|(_, c)| command_to_impl(cfg, *c))
                .collect();
            let actions = requests
                .iter()
                .map(|(s, c)| ActorModelAction::Deliver {
                    src: *s,
                    dst: *dst,
                    msg: MultiMsg::Request(*c),
                })
                .collect();
            (actions, Input::ClientRequests(commands))
        }
        MultiMsg::Accept(..) => {
            let (ballot, run) = slot_run(&|m| match m {
                MultiMsg::Accept(b, s, c) => Some((b, s, c)),
                _ => None,
            })?;
            let actions = run
                .iter()
                .map(|&(s, c)| to_action(MultiMsg::Accept(ballot, s, c)))
                .collect();
            let entries = run.iter().map(|&(_, c)| entry_to_impl(cfg, c)).collect();
            let accept = Message::Accept {
                ballot: ballot_to_impl(ballot),
                slot: u64::from(run[0].0),
                entries,
            };
            (actions, Input::Message { from, msg: accept })
        }
        MultiMsg::Accepted(..) => {
            let (ballot, run) = slot_run(&|m| match m {
                MultiMsg::Accepted(b, s, c) => Some((b, s, c)),
                _ => None,
            })?;
            let actions = run
                .iter()
                .map(|&(s, c)| to_action(MultiMsg::Accepted(ballot, s, c)))
                .collect();
            let accepted = Message::Accepted {
                ballot: ballot_to_impl(ballot),
                slot: u64::from(run[0].0),
                count: run.len() as u64,
            };
            (
                actions,
                Input::Message {
                    from,
                    msg: accepted,
                },
            )
        }
        MultiMsg::Decide(..) => {
            let (_, run) = slot_run(&|m| match m {
                MultiMsg::Decide(s, c) => Some((Ballot::new(0, 0), s, c)),
                _ => None,
            })?;
            let actions = run
                .iter()
                .map(|&(s, c)| to_action(MultiMsg::Decide(s, c)))
                .collect();
            let entries = run.iter().map(|&(_, c)| entry_to_impl(cfg, c)).collect();
            let decide = Message::Decide {
                slot: u64::from(run[0].0),
                entries,
            };
            (actions, Input::Message { from, msg: decide })
        }
        _ => return None,
    };
    // Each delivery must stay enabled and within bounds after the ones before it.
    let mut at = state.clone();
    for action in &actions {
        let next = model.next_state(&at, action.clone())?;
        if !Model::within_boundary(model, &next) {
            return None;
        }
        at = next;
    }
    Some(Run {
        actions,
        dst: dst_index,
        input,
    })
}

/// Takes `run`: the model's deliveries one by one, the implementation's one input; compares
/// the implementation's outcome with the model's steps together (sends as one multiset, the
/// state, storage and timer after the last). Returns the model state after the run, or
/// `Break` once the walk has failed.
fn take_run(
    cfg: &MultiConfig,
    model: &multi::MultiModel,
    always: &[stateright::Property<multi::MultiModel>],
    cluster: &mut Cluster,
    walk: &mut Walk,
    mut state: MultiModelState,
    run: &Run,
) -> ControlFlow<(), MultiModelState> {
    let fail = |step: usize, kind: FailureKind| Some(WalkFailure { step, kind });
    let mut sends = Vec::new();
    let mut last = None;
    for action in &run.actions {
        let Some(next) = model.next_state(&state, action.clone()) else {
            break;
        };
        walk.steps += 1;
        walk.trail.push(format!("{action:?} (run)"));
        walk.taken.push(action.clone());
        let outcome = model_outcome(model, &state, action, run.dst, &next);
        sends.extend(outcome.sends.iter().cloned());
        last = Some(outcome);
        state = next;
        if let Some(p) = always.iter().find(|p| !(p.condition)(model, &state)) {
            walk.failure = fail(walk.steps, FailureKind::PropertyViolated(p.name));
            return ControlFlow::Break(());
        }
    }
    let Some(mut expected) = last else {
        return ControlFlow::Continue(state);
    };
    sends.sort();
    // A refused run is refused once (M6'), and its slots below the compaction point answered
    // with one snapshot (K7); slot by slot the model sends one Nack or Snapshot per slot.
    sends.dedup_by(|a, b| a == b && matches!(a.1, MultiMsg::Nack(..) | MultiMsg::Snapshot(..)));
    expected.sends = sends;
    if let Some((_, actual)) = step_replica(cfg, cluster, run.dst, Some(run.input.clone())) {
        walk.compared += 1;
        if actual.as_ref() != Ok(&expected) {
            walk.trail.push(format!("  as one input: {:?}", run.input));
            walk.failure = fail(
                walk.steps,
                FailureKind::Divergence {
                    node: run.dst,
                    expected: Box::new(expected),
                    actual: Box::new(actual),
                },
            );
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(state)
}

/// The kinds of action a walk chooses between, and how often (per mille): mostly deliveries,
/// so that protocol rounds complete between the faults. A uniform choice over all enabled
/// actions spends most steps crashing, recovering and timing out (measured: 1,078 recoveries
/// and 5 decisions in 20 walks of 300 steps).
const WEIGHTS: [(ActionKind, u32); 5] = [
    (ActionKind::Deliver, 850),
    (ActionKind::Timeout, 70),
    (ActionKind::Drop, 40),
    (ActionKind::Crash, 20),
    (ActionKind::Recover, 20),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum ActionKind {
    Deliver,
    Timeout,
    Drop,
    Crash,
    Recover,
}

fn kind(action: &ModelAction) -> Option<ActionKind> {
    Some(match action {
        ActorModelAction::Deliver { .. } => ActionKind::Deliver,
        ActorModelAction::Timeout(..) => ActionKind::Timeout,
        ActorModelAction::Drop(_) => ActionKind::Drop,
        ActorModelAction::Crash(_) => ActionKind::Crash,
        ActorModelAction::Recover(_) => ActionKind::Recover,
        ActorModelAction::SelectRandom { .. } => return None,
    })
}

/// The index in `enabled` that `choice` selects: its low part picks a kind of action by
/// [`WEIGHTS`], its high part one action of that kind (of any kind when none is enabled).
fn pick(enabled: &[(ModelAction, MultiModelState)], choice: u32) -> usize {
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut roll = choice % total;
    let wanted = WEIGHTS
        .iter()
        .find(|(_, w)| {
            let hit = roll < *w;
            roll = roll.saturating_sub(*w);
            hit
        })
        .map(|(k, _)| *k);
    let of_kind: Vec<usize> = (0..enabled.len())
        .filter(|&i| kind(&enabled[i].0) == wanted)
        .collect();
    let high = (choice / total) as usize;
    if of_kind.is_empty() {
        high % enabled.len()
    } else {
        of_kind[high % of_kind.len()]
    }
}

/// The model's replica `i` as the outcome of "no step" (for reporting the initial state).
fn initial_outcome(model: &multi::MultiModel, state: &MultiModelState, i: usize) -> StepOutcome {
    let action = ActorModelAction::Recover(Id::from(i));
    model_outcome(model, state, &action, i, state)
}

#[cfg(test)]
mod tests {
    use paxos_protocol::multi::mutants::{with_mutant, Mutant};
    use proptest::prelude::*;

    use crate::trace::{replay_trace, Walked};

    use super::*;

    fn assert_walks(cfg: &MultiConfig, choices: &[u32]) -> Result<(), TestCaseError> {
        let walk = lockstep(cfg, choices);
        if walk.failure.is_some() {
            // Kept as a trace file: `paxos-conform replay` re-runs it, and once fixed it
            // belongs in specs/traces/ (named *-divergence-*).
            let dir = std::env::temp_dir().join("paxos-walk-divergences");
            let saved = std::fs::create_dir_all(&dir)
                .map_err(anyhow::Error::from)
                .and_then(|()| runner::write_trace(&dir, &walk.trace(cfg)?));
            let saved = match saved {
                Ok(path) => format!("trace written to {}", path.display()),
                Err(why) => format!("no trace written: {why:#}"),
            };
            return Err(TestCaseError::fail(format!("{walk}{saved}")));
        }
        prop_assert!(
            walk.compared > 0,
            "nothing compared in {} steps",
            walk.steps
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// 5 replicas, hundreds of steps with crashes, loss and duplication.
        #[test]
        fn five_replicas_walk_in_lockstep(choices in prop::collection::vec(any::<u32>(), 200..400)) {
            assert_walks(&long_walk_config(5), &choices)?;
        }

        #[test]
        fn three_replicas_walk_in_lockstep(choices in prop::collection::vec(any::<u32>(), 200..400)) {
            assert_walks(&long_walk_config(3), &choices)?;
        }

        /// With leases: time passes (each replica's clock), grants hold elections back, and
        /// reads are answered under leases.
        #[test]
        fn replicas_with_leases_walk_in_lockstep(
            replicas in prop::sample::select(vec![3usize, 5]),
            choices in prop::collection::vec(any::<u32>(), 200..400),
        ) {
            assert_walks(&lease_walk_config(replicas), &choices)?;
        }
    }

    /// Lease walks go where leases matter: clocks tick (so grants and leases expire),
    /// elections still happen past the grants, and reads are answered.
    #[test]
    fn lease_walks_tick_elect_and_read_under_leases() {
        let cfg = lease_walk_config(3);
        let (mut ticks, mut elections, mut reads) = (0, 0, 0);
        for seed in 0..20 {
            let walk = lockstep(&cfg, &schedule(seed, 300));
            assert!(walk.failure.is_none(), "{walk}");
            ticks += walk.count("Timeout", "Clock");
            elections += walk.count("Timeout", "Election");
            reads += walk.count("Deliver", "ReadReply");
        }
        eprintln!("20 lease walks: {ticks} ticks, {elections} elections, {reads} reads answered");
        assert!(
            ticks >= 40 && elections >= 10 && reads >= 10,
            "{ticks} {elections} {reads}"
        );
    }

    /// A deterministic pseudo-random schedule (Knuth's multiplicative hash of the index).
    fn schedule(seed: u32, len: u32) -> Vec<u32> {
        (0..len)
            .map(|k| (k ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761))
            .collect()
    }

    /// Walks really go deep: elections, crashes, recoveries and decisions all happen (a walk
    /// that never leaves the bootstrap would prove little).
    #[test]
    fn walks_reach_elections_recoveries_and_decisions() {
        let cfg = long_walk_config(5);
        let (mut elections, mut recoveries, mut decides) = (0, 0, 0);
        let (mut compactions, mut snapshots, mut catch_ups) = (0, 0, 0);
        let mut in_runs = std::collections::BTreeMap::new();
        for seed in 0..20 {
            let walk = lockstep(&cfg, &schedule(seed, 300));
            assert!(walk.failure.is_none(), "{walk}");
            elections += walk.count("Timeout", "Election");
            recoveries += walk.count("Recover", "");
            decides += walk.count("Deliver", "Decide");
            compactions += walk.count("Timeout", "Compact");
            snapshots += walk.count("Deliver", "Snapshot");
            catch_ups += walk.count("Deliver", "CatchUp");
        }
        // Runs: with 3 replicas a single vote chooses, so more slots are decided together.
        for walk_cfg in [cfg.clone(), long_walk_config(3)] {
            for seed in 0..20 {
                let walk = lockstep(&walk_cfg, &schedule(seed, 300));
                assert!(walk.failure.is_none(), "{walk}");
                for kind in ["Request", "Accept(", "Accepted", "Decide"] {
                    let taken = walk.trail.iter().filter(|a| a.ends_with("(run)"));
                    *in_runs.entry(kind).or_insert(0) += taken.filter(|a| a.contains(kind)).count();
                }
            }
        }
        eprintln!(
            "20 walks: {elections} elections, {recoveries} recoveries, {decides} decides, \
             {compactions} compactions, {snapshots} snapshots and {catch_ups} catch-ups \
             delivered; deliveries taken as runs: {in_runs:?}"
        );
        assert!(
            elections >= 20 && recoveries >= 5 && decides >= 20,
            "elections {elections}, recoveries {recoveries}, decides {decides}"
        );
        assert!(
            compactions >= 20 && snapshots >= 5 && catch_ups >= 5,
            "compactions {compactions}, snapshots {snapshots}, catch-ups {catch_ups}"
        );
        assert!(
            in_runs.values().all(|&n| n >= 4),
            "every kind of run is taken: {in_runs:?}"
        );
    }

    /// The walks a mutant is looked for in: the lease mutants' rules run only with leases.
    fn walk_config_for(mutant: Mutant) -> MultiConfig {
        match mutant {
            Mutant::LeaseOutlivesPromise
            | Mutant::LeaseGrantorCampaigns
            | Mutant::LeaseBeyondDrift
            | Mutant::LeaseFromArrival
            | Mutant::LeaseForgottenOnRestart => lease_walk_config(5),
            _ => long_walk_config(5),
        }
    }

    /// Power: every implementation mutant fails some walk of a few dozen.
    #[test]
    fn every_mutant_fails_some_walk() {
        let mut survivors = Vec::new();
        for &mutant in Mutant::ALL {
            let cfg = walk_config_for(mutant);
            let caught = (0..40).find(|&seed| {
                with_mutant(mutant, || lockstep(&cfg, &schedule(seed, 300)))
                    .failure
                    .is_some()
            });
            eprintln!("{}: caught by walk {caught:?}", mutant.name());
            if caught.is_none() {
                survivors.push(mutant.name());
            }
        }
        assert!(survivors.is_empty(), "{survivors:?} survived 40 walks");
    }

    /// A failed walk becomes a divergence trace that replay reproduces: the implementation
    /// with the mutant diverges from it, the correct one conforms. (A divergence that only a
    /// run shows cannot be replayed step by step; such a walk is skipped.)
    #[test]
    fn a_failed_walk_is_a_trace_that_replays_the_divergence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut replayed = Vec::new();
        for &mutant in Mutant::ALL {
            let cfg = walk_config_for(mutant);
            let walk = (0..40)
                .map(|seed| with_mutant(mutant, || lockstep(&cfg, &schedule(seed, 300))))
                .find(|walk| walk.failure.is_some())
                .expect("every mutant fails a walk");
            let trace = walk.trace(&cfg).expect("the walk's trace");
            assert_eq!(trace.steps.len(), walk.steps);
            let diverged = matches!(
                walk.failure,
                Some(WalkFailure {
                    step: 1..,
                    kind: FailureKind::Divergence { .. }
                })
            );
            if !diverged {
                eprintln!("{}: {walk}", mutant.name());
                continue;
            }
            assert_eq!(trace.classification, Classification::Divergence);
            let path = runner::write_trace(dir.path(), &trace).expect("written");
            let read = runner::read_trace(&path).expect("read back");
            if walk
                .trail
                .last()
                .is_some_and(|a| a.contains("(run)") || a.contains("as one input"))
            {
                continue;
            }
            let (_, walked) = with_mutant(mutant, || replay_trace(&read)).expect("replayed");
            assert!(
                matches!(walked, Walked::Diverges(ref d) if d.step == walk.steps),
                "{}: {walked:?}\n{walk}",
                mutant.name()
            );
            let (_, walked) = replay_trace(&read).expect("replayed");
            assert!(
                matches!(walked, Walked::Conforms { .. }),
                "{}: the correct core diverges: {walked:?}",
                mutant.name()
            );
            replayed.push(mutant.name());
        }
        eprintln!("replayed: {replayed:?}");
        assert!(replayed.len() * 2 > Mutant::ALL.len(), "{replayed:?}");
    }
}
