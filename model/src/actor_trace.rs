//! What the runner writes about a step of a stateright [`ActorModel`]: action and state as JSON
//! for trace files, and one readable line per step for counterexample listings. Shared by every
//! actor-based model (Synod, Multi-Paxos).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};
use std::hash::Hash;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Command, Envelope, Id, Network, Out,
};

/// The node name used in every listing: `n<id>`, plus its role when the model knows it.
pub trait NodeNames {
    fn node_name(&self, id: Id) -> String;
}

pub fn action_json<M, T, R>(action: &ActorModelAction<M, T, R>) -> Json
where
    M: Serialize,
    T: Serialize,
    R: Debug,
{
    let id = |id: &Id| usize::from(*id);
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            json!({"kind": "deliver", "src": id(src), "dst": id(dst), "msg": msg})
        }
        ActorModelAction::Drop(env) => {
            json!({"kind": "drop", "src": id(&env.src), "dst": id(&env.dst), "msg": env.msg})
        }
        ActorModelAction::Timeout(node, timer) => {
            json!({"kind": "timeout", "node": id(node), "timer": timer})
        }
        ActorModelAction::Crash(node) => json!({"kind": "crash", "node": id(node)}),
        ActorModelAction::Recover(node) => json!({"kind": "recover", "node": id(node)}),
        ActorModelAction::SelectRandom { actor, key, random } => {
            json!({"kind": "random", "node": id(actor), "key": key, "random": format!("{random:?}")})
        }
    }
}

/// A state as trace files record it: canonical, so that the same state always has the same
/// JSON (conformance replay compares them). stateright's own `Serialize` of a state cannot be
/// used: its network is a hash map keyed by envelopes (not a JSON object key) and its hash sets
/// iterate in a per-process random order. Here messages in flight are a list sorted by
/// `(src, dst, msg)` with a `count` for copies, and timers are sorted lists. Random choices are
/// left out: no model of this crate makes any.
pub fn state_json<A, H>(state: &ActorModelState<A, H>) -> Json
where
    A: Actor,
    A::State: Serialize,
    A::Msg: Serialize + Ord,
    A::Timer: Serialize + Ord,
    A::Storage: Serialize,
    H: Serialize,
{
    let mut in_flight: BTreeMap<(usize, usize, &A::Msg), usize> = BTreeMap::new();
    for env in state.network.iter_all() {
        *in_flight
            .entry((usize::from(env.src), usize::from(env.dst), env.msg))
            .or_default() += 1;
    }
    let network: Vec<Json> = in_flight
        .into_iter()
        .map(|((src, dst, msg), count)| json!({"src": src, "dst": dst, "msg": msg, "count": count}))
        .collect();
    let timers: Vec<Vec<&A::Timer>> = state
        .timers_set
        .iter()
        .map(|set| {
            let mut timers: Vec<&A::Timer> = set.iter().collect();
            timers.sort();
            timers
        })
        .collect();
    let states: Vec<&A::State> = state.actor_states.iter().map(|s| &**s).collect();
    json!({
        "actor_states": states,
        "network": network,
        "timers_set": timers,
        "crashed": state.crashed,
        "actor_storages": state.actor_storages,
        "history": state.history,
    })
}

/// A message in flight as [`state_json`] writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InFlight<M> {
    src: usize,
    dst: usize,
    msg: M,
    count: usize,
}

/// The parts of a state [`state_json`] writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateParts<S, M, T, St, H> {
    actor_states: Vec<S>,
    network: Vec<InFlight<M>>,
    timers_set: Vec<Vec<T>>,
    crashed: Vec<bool>,
    actor_storages: Vec<Option<St>>,
    history: H,
}

/// The most copies of one message a state read from a file may hold: a duplicating network
/// holds one, a non-duplicating one as many as were sent and not yet delivered.
const COPIES_MAX: usize = 1_000;

/// Reads back a state [`state_json`] wrote, for `model`: one state and timer set per actor,
/// messages between its actors or to ids past them (clients outside the model), into the
/// kind of network the model has. A state that does not fit the model is an error.
pub fn state_from_json<A, C, H>(
    model: &ActorModel<A, C, H>,
    json: Json,
) -> Result<ActorModelState<A, H>, String>
where
    A: Actor,
    A::State: DeserializeOwned,
    A::Msg: DeserializeOwned + Ord,
    A::Timer: DeserializeOwned + Ord,
    A::Storage: DeserializeOwned,
    H: DeserializeOwned + Clone + Debug + Hash,
{
    let parts: StateParts<A::State, A::Msg, A::Timer, A::Storage, H> =
        serde_json::from_value(json).map_err(|e| format!("not a state of this model: {e}"))?;
    let actors = model.actors.len();
    let per_actor = [
        ("actor_states", parts.actor_states.len()),
        ("timers_set", parts.timers_set.len()),
        ("crashed", parts.crashed.len()),
        ("actor_storages", parts.actor_storages.len()),
    ];
    for (field, len) in per_actor {
        if len != actors {
            return Err(format!(
                "{field} has {len} entries; the model has {actors} actors"
            ));
        }
    }
    let mut envelopes = Vec::new();
    for m in parts.network {
        if m.src == m.dst || m.count == 0 || m.count > COPIES_MAX {
            return Err(format!(
                "a message from n{} to n{} with {} copies cannot be in flight",
                m.src, m.dst, m.count
            ));
        }
        let copies = match model.init_network {
            Network::UnorderedDuplicating(..) => 1,
            _ => m.count,
        };
        for _ in 0..copies {
            envelopes.push(Envelope {
                src: Id::from(m.src),
                dst: Id::from(m.dst),
                msg: m.msg.clone(),
            });
        }
    }
    let network = match model.init_network {
        Network::UnorderedDuplicating(..) => Network::new_unordered_duplicating(envelopes),
        Network::UnorderedNonDuplicating(..) => Network::new_unordered_nonduplicating(envelopes),
        Network::Ordered(..) => Network::new_ordered(envelopes),
    };
    let timers_set = parts
        .timers_set
        .into_iter()
        .map(|timers| {
            let mut set = stateright::actor::Timers::new();
            for timer in timers {
                set.set(timer);
            }
            set
        })
        .collect();
    Ok(ActorModelState {
        actor_states: parts.actor_states.into_iter().map(Arc::new).collect(),
        network,
        timers_set,
        random_choices: vec![Default::default(); actors],
        crashed: parts.crashed,
        history: parts.history,
        actor_storages: parts.actor_storages,
    })
}

/// `n2 (acceptor) receives Prepare(1.0) from n0: OLD → NEW; persists …; sends …`.
pub fn describe_step<A, C, H>(
    model: &ActorModel<A, C, H>,
    prev: &ActorModelState<A, H>,
    action: &ActorModelAction<A::Msg, A::Timer, A::Random>,
    next: &ActorModelState<A, H>,
) -> String
where
    A: Actor,
    A::Msg: Ord,
    A::Timer: Ord,
    H: Clone + Debug + Hash,
    C: NodeNames,
{
    let names = &model.cfg;
    let mut out = Out::new();
    let (node, mut line) = match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let mut state = Cow::Borrowed(&*prev.actor_states[usize::from(*dst)]);
            model.actors[usize::from(*dst)].on_msg(*dst, &mut state, *src, msg.clone(), &mut out);
            let line = format!(
                "{} receives {msg:?} from {}",
                names.node_name(*dst),
                names.node_name(*src)
            );
            (*dst, line)
        }
        ActorModelAction::Timeout(node, timer) => {
            let mut state = Cow::Borrowed(&*prev.actor_states[usize::from(*node)]);
            model.actors[usize::from(*node)].on_timeout(*node, &mut state, timer, &mut out);
            (
                *node,
                format!("{}: timer {timer:?} fires", names.node_name(*node)),
            )
        }
        ActorModelAction::Drop(env) => {
            let line = format!(
                "the network loses {:?} from {} to {}",
                env.msg,
                names.node_name(env.src),
                names.node_name(env.dst)
            );
            return line;
        }
        ActorModelAction::Crash(node) => {
            let storage = &prev.actor_storages[usize::from(*node)];
            return format!(
                "{} crashes; its durable state is {storage:?}",
                names.node_name(*node)
            );
        }
        ActorModelAction::Recover(node) => {
            let storage = &prev.actor_storages[usize::from(*node)];
            (
                *node,
                format!("{} recovers from {storage:?}", names.node_name(*node)),
            )
        }
        ActorModelAction::SelectRandom { actor, random, .. } => (
            *actor,
            format!("{} chooses {random:?}", names.node_name(*actor)),
        ),
    };
    let index = usize::from(node);
    let (before, after) = (&prev.actor_states[index], &next.actor_states[index]);
    if before != after {
        let _ = write!(line, ": {before:?} → {after:?}");
    } else {
        line.push_str(": state unchanged");
    }
    for command in out.iter() {
        match command {
            Command::Save(storage) => {
                let _ = write!(line, "; persists {storage:?}");
            }
            Command::Send(to, msg) => {
                let _ = write!(line, "; sends {msg:?} to {}", names.node_name(*to));
            }
            _ => {}
        }
    }
    line
}
