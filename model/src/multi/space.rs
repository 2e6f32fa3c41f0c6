//! The two representations of the Multi-Paxos model's state, one transition code over both
//! (specs/proposals/unbounded-validation.md).
//!
//! - [`Small`], for the exhaustive check: fixed arrays and bit sets with `u8` slot numbers,
//!   command ids and read numbers, so that states are `Copy`, small and cheap to hash. Its
//!   bounds are [`MAX_SLOTS`], [`MAX_COMMANDS`] and [`MAX_READS`].
//! - [`Unbounded`], for trace validation of real runs of any length: persistent maps and
//!   vectors (a clone shares the tree) with `u64` numbers.
//!
//! The handlers reach a slot vector, the state machine, the applied set, a set of commands
//! and the waiting reads only through the traits here, never by indexing, so neither
//! representation leaks into the rules.

use std::fmt;
use std::hash::Hash;
use std::ops::{Add, AddAssign};
use std::sync::Arc;

use imbl::ordmap::DiffItem;
use imbl::{OrdMap, OrdSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    CloneFields, LeaderPhase, MultiMsg, MultiState, ReadIndex, ReplicaState, ReplicaStorage,
};
use crate::types::Ballot;

/// The most slots a [`Small`] configuration may have.
pub const MAX_SLOTS: usize = 4;
/// The most client commands a [`Small`] configuration may have ([`CmdSet`] is a 16-bit set,
/// and id 15 is reserved for the fabricated command of a seeded bug).
pub const MAX_COMMANDS: usize = 6;
/// The most reads a [`Small`] configuration's reader may invoke (Q1–Q5).
pub const MAX_READS: usize = 3;

/// Slot numbers, command ids, read numbers and confirmation rounds: `u8` in [`Small`], `u64`
/// in [`Unbounded`]. The handlers count in it and compare with the configuration in `u64`.
pub trait Number:
    Copy
    + Default
    + Ord
    + Hash
    + fmt::Debug
    + fmt::Display
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
    + From<u8>
    + Into<u64>
    + TryFrom<u64>
    + Add<Output = Self>
    + AddAssign
{
    /// The id of the command the `gap-fill-fabricates` bug writes into gaps: one no client
    /// ever sends.
    const FABRICATED: Self;

    /// `x`, which the space's bounds (the configuration's, checked before the model runs)
    /// keep within this type.
    fn of(x: u64) -> Self {
        Self::try_from(x).unwrap_or_else(|_| panic!("{x} is beyond the model's bounds"))
    }

    fn get(self) -> u64 {
        self.into()
    }

    fn next(self) -> Self {
        self + Self::from(1)
    }
}

impl Number for u8 {
    const FABRICATED: u8 = 15;
}

impl Number for u64 {
    const FABRICATED: u64 = u64::MAX;
}

/// A log entry: `c0` is the no-op, `c1..=cN` are client commands (see
/// [`super::MultiConfig::command_owner`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cmd<N = u8>(pub N);

impl Cmd {
    pub const NOOP: Cmd = Cmd(0);
    /// What the `gap-fill-fabricates` bug writes into gaps: no client ever sends it.
    pub const FABRICATED: Cmd = Cmd(u8::FABRICATED);
}

impl<N: Number> Cmd<N> {
    pub fn noop() -> Self {
        Cmd(N::default())
    }

    pub fn fabricated() -> Self {
        Cmd(N::FABRICATED)
    }

    pub fn is_noop(self) -> bool {
        self == Cmd::noop()
    }

    /// The id as a number.
    pub fn id(self) -> u64 {
        self.0.get()
    }
}

impl<N: Number> fmt::Debug for Cmd<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() {
            f.write_str("noop")
        } else {
            write!(f, "c{}", self.0)
        }
    }
}

/// A vote: the ballot and command an acceptor accepted in a slot.
pub type Vote<N = u8> = (Ballot<N>, Cmd<N>);

/// What a slot vector holds per slot; `T::default()` is the empty entry.
pub trait SlotEntry:
    Copy + Default + Eq + Hash + Ord + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<
        T: Copy
            + Default
            + Eq
            + Hash
            + Ord
            + fmt::Debug
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    > SlotEntry for T
{
}

/// The derives every part of a state needs (stateright hashes and compares states, the
/// explorer and traces serialize them).
pub trait StatePart:
    Clone
    + Default
    + Eq
    + Hash
    + Ord
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<
        T: Clone
            + Default
            + Eq
            + Hash
            + Ord
            + fmt::Debug
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    > StatePart for T
{
}

/// One entry per slot, every one empty but those in use: a slot-indexed part of a replica's
/// state or of a message.
pub trait SlotVec<N: Number, T: SlotEntry>: StatePart {
    /// The entry of slot `s` (empty where nothing is stored).
    fn get(&self, s: N) -> T;
    /// Sets slot `s`'s entry.
    fn set(&mut self, s: N, entry: T);
    /// The entries in use, by ascending slot.
    fn entries(&self) -> impl Iterator<Item = (N, T)> + '_;
    /// Empties every slot below `c`.
    fn clear_below(&mut self, c: N);
    /// Applies `f` to every entry in use (`f` must not empty one).
    fn map(&self, f: impl Fn(T) -> T) -> Self;
    /// How many slots a trace shows: the whole log where it is short, up to the last in use
    /// where it is not.
    fn shown(&self) -> u64;

    /// The highest slot in use.
    fn last_used(&self) -> Option<N> {
        self.entries().last().map(|(s, _)| s)
    }

    /// The entries in use at slot `from` and above, by ascending slot.
    fn entries_from(&self, from: N) -> impl Iterator<Item = (N, T)> + '_ {
        self.entries().filter(move |&(s, _)| s >= from)
    }

    /// Every slot whose entry differs between `earlier` and this vector, ascending, with
    /// its entry there and here.
    fn changes_since<'a>(&'a self, earlier: &'a Self) -> impl Iterator<Item = (N, T, T)> + 'a {
        let slots: std::collections::BTreeSet<N> = earlier
            .entries()
            .chain(self.entries())
            .map(|(s, _)| s)
            .collect();
        slots
            .into_iter()
            .map(|s| (s, earlier.get(s), self.get(s)))
            .filter(|(_, was, is)| was != is)
    }
}

/// The state machine as the client commands it executed, in order.
pub trait StateMachine<N: Number>: StatePart {
    fn iter(&self) -> impl Iterator<Item = Cmd<N>> + '_;
    /// Newest first.
    fn iter_rev(&self) -> impl Iterator<Item = Cmd<N>> + '_;
    fn len(&self) -> usize;
    fn push(&mut self, cmd: Cmd<N>);
    /// The state machine after its first `len` commands (`None`: it executed fewer).
    fn prefix(&self, len: usize) -> Option<Self>;
    /// The state machine that executed `commands`, in order, or `None` when this space
    /// cannot hold that many.
    fn from_commands(commands: impl IntoIterator<Item = Cmd<N>>) -> Option<Self>;
    /// As traces show a snapshot.
    fn fmt_padded(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The slots applied to the state machine: a prefix, unless a seeded bug applies out of
/// order.
pub trait AppliedSet<N: Number>: StatePart + Copy {
    /// The length of the applied prefix.
    fn prefix(&self) -> N;
    fn contains(&self, s: N) -> bool;
    fn insert(&mut self, s: N);
    /// Every slot below `c` is applied (K1, K4).
    fn insert_below(&mut self, c: N);
    /// The applied slots, ascending.
    fn slots(&self) -> impl Iterator<Item = N> + '_;
}

/// A set of commands.
pub trait CommandSet<N: Number>: StatePart {
    fn insert(&mut self, cmd: Cmd<N>);
    fn remove(&mut self, cmd: Cmd<N>);
    fn contains(&self, cmd: Cmd<N>) -> bool;
    fn is_empty(&self) -> bool;
    /// Ascending.
    fn iter(&self) -> impl Iterator<Item = Cmd<N>> + '_;
}

/// Per read `k`, the confirmation round it waits for at a leader; 0 when it does not wait
/// there.
pub trait WaitingReads<N: Number>: StatePart {
    /// Whether `k` names a read this space can hold (reads count from 1).
    fn holds(k: N) -> bool;
    /// The round read `k` waits for (0: none).
    fn round(&self, k: N) -> N;
    /// Read `k` waits for `round` (0: no longer). `k` must be one [`WaitingReads::holds`].
    fn set(&mut self, k: N, round: N);
    /// The waiting reads `(k, round)`, by ascending `k`.
    fn entries(&self) -> impl Iterator<Item = (N, N)> + '_;
}

/// A representation of the model's state: the number type and the containers.
pub trait Space:
    Copy + Default + Eq + Hash + Ord + fmt::Debug + Serialize + Send + Sync + 'static
{
    type N: Number;
    type Slots<T: SlotEntry>: SlotVec<Self::N, T>;
    type Executed: StateMachine<Self::N>;
    type Applied: AppliedSet<Self::N>;
    type CmdSet: CommandSet<Self::N>;
    type Waiting: WaitingReads<Self::N>;
    /// How many slots its slot vectors hold (slots `0..SLOTS`).
    const SLOTS: u64;

    // `Clone` of the generic states and messages (see `clone_through_space` in the parent
    // module): a copy in `Small`, where they are `Copy`; field by field elsewhere.
    fn clone_msg(x: &MultiMsg<Self>) -> MultiMsg<Self>;
    fn clone_phase(x: &LeaderPhase<Self>) -> LeaderPhase<Self>;
    fn clone_reads(x: &ReadIndex<Self>) -> ReadIndex<Self>;
    fn clone_replica(x: &ReplicaState<Self>) -> ReplicaState<Self>;
    fn clone_state(x: &MultiState<Self>) -> MultiState<Self>;
    fn clone_storage(x: &ReplicaStorage<Self>) -> ReplicaStorage<Self>;
}

/// The clones of [`Space`] for a space whose states are `Copy` (`copy`) or not (`fields`).
macro_rules! space_clones {
    (copy) => {
        space_clones!(@each |x| *x);
    };
    (fields) => {
        space_clones!(@each |x| x.clone_fields());
    };
    (@each |$x:ident| $body:expr) => {
        fn clone_msg($x: &MultiMsg<Self>) -> MultiMsg<Self> {
            $body
        }
        fn clone_phase($x: &LeaderPhase<Self>) -> LeaderPhase<Self> {
            $body
        }
        fn clone_reads($x: &ReadIndex<Self>) -> ReadIndex<Self> {
            $body
        }
        fn clone_replica($x: &ReplicaState<Self>) -> ReplicaState<Self> {
            $body
        }
        fn clone_state($x: &MultiState<Self>) -> MultiState<Self> {
            $body
        }
        fn clone_storage($x: &ReplicaStorage<Self>) -> ReplicaStorage<Self> {
            $body
        }
    };
}

/// The exhaustive check's representation (see the module notes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Small;

impl Space for Small {
    type N = u8;
    type Slots<T: SlotEntry> = Slots<T>;
    type Executed = Executed;
    type Applied = Applied;
    type CmdSet = CmdSet;
    type Waiting = Waiting;
    const SLOTS: u64 = MAX_SLOTS as u64;

    space_clones!(copy);
}

/// Trace validation's representation (see the module notes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Unbounded;

impl Space for Unbounded {
    type N = u64;
    type Slots<T: SlotEntry> = SparseSlots<T>;
    type Executed = ExecutedLog;
    type Applied = AppliedSlots;
    type CmdSet = CmdIds;
    type Waiting = WaitingMap;
    const SLOTS: u64 = u64::MAX;

    space_clones!(fields);
}

// ------------------------------------------------------------------------------ Small

/// A set of commands (ids below 16).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CmdSet(u16);

impl CmdSet {
    pub fn insert(&mut self, cmd: Cmd) {
        self.0 |= 1 << cmd.0;
    }

    pub fn remove(&mut self, cmd: Cmd) {
        self.0 &= !(1 << cmd.0);
    }

    pub fn contains(self, cmd: Cmd) -> bool {
        self.0 & (1 << cmd.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Cmd> {
        (0..16u8).filter(move |k| self.0 & (1 << k) != 0).map(Cmd)
    }
}

impl CommandSet<u8> for CmdSet {
    fn insert(&mut self, cmd: Cmd) {
        CmdSet::insert(self, cmd)
    }

    fn remove(&mut self, cmd: Cmd) {
        CmdSet::remove(self, cmd)
    }

    fn contains(&self, cmd: Cmd) -> bool {
        CmdSet::contains(*self, cmd)
    }

    fn is_empty(&self) -> bool {
        CmdSet::is_empty(*self)
    }

    fn iter(&self) -> impl Iterator<Item = Cmd> + '_ {
        CmdSet::iter(*self)
    }
}

impl fmt::Debug for CmdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// [`Small`]'s slot vector: one entry per slot of the log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slots<T>([T; MAX_SLOTS]);

/// The entries without the length an array's `Hash` writes first (it is always
/// [`MAX_SLOTS`]): the checker hashes every state it reaches, and this is most of one.
impl<T: Hash> Hash for Slots<T> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for entry in &self.0 {
            entry.hash(state);
        }
    }
}

impl<T: SlotEntry> Default for Slots<T> {
    fn default() -> Self {
        Slots([T::default(); MAX_SLOTS])
    }
}

impl<T: SlotEntry> fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl<T: SlotEntry> Slots<T> {
    /// The entry of slot `s` (empty beyond the bound: nothing is ever stored there).
    pub fn get(&self, s: u8) -> T {
        self.0.get(usize::from(s)).copied().unwrap_or_default()
    }

    /// Sets slot `s`'s entry. Panics beyond [`MAX_SLOTS`]: the configuration's `slots`
    /// bound keeps every handler below it, and a mapping from outside refuses larger slots.
    pub fn set(&mut self, s: u8, entry: T) {
        self.0[usize::from(s)] = entry;
    }

    /// The entries in use, by ascending slot.
    pub fn entries(&self) -> impl Iterator<Item = (u8, T)> + '_ {
        let empty = T::default();
        (0u8..)
            .zip(self.0.iter().copied())
            .filter(move |(_, e)| *e != empty)
    }

    /// The highest slot in use.
    pub fn last_used(&self) -> Option<u8> {
        self.entries().last().map(|(s, _)| s)
    }
}

impl<T: SlotEntry> SlotVec<u8, T> for Slots<T> {
    fn get(&self, s: u8) -> T {
        Slots::get(self, s)
    }

    fn set(&mut self, s: u8, entry: T) {
        Slots::set(self, s, entry)
    }

    fn entries(&self) -> impl Iterator<Item = (u8, T)> + '_ {
        Slots::entries(self)
    }

    fn entries_from(&self, from: u8) -> impl Iterator<Item = (u8, T)> + '_ {
        let empty = T::default();
        let rest = self.0.get(usize::from(from)..).unwrap_or_default();
        (from..)
            .zip(rest.iter().copied())
            .filter(move |(_, e)| *e != empty)
    }

    fn clear_below(&mut self, c: u8) {
        for entry in self.0.iter_mut().take(usize::from(c)) {
            *entry = T::default();
        }
    }

    fn map(&self, f: impl Fn(T) -> T) -> Self {
        let empty = T::default();
        Slots(self.0.map(|e| if e == empty { e } else { f(e) }))
    }

    fn shown(&self) -> u64 {
        MAX_SLOTS as u64
    }
}

/// [`Small`]'s state machine (a slot executes at most one command, so a log of
/// [`MAX_SLOTS`] slots executes at most that many).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Executed([Option<Cmd>; MAX_SLOTS]);

/// As [`Slots`]' `Hash`.
impl Hash for Executed {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for cmd in &self.0 {
            cmd.hash(state);
        }
    }
}

impl Executed {
    /// The state machine that executed `commands`, or `None` if they are more than a log of
    /// [`MAX_SLOTS`] slots executes.
    pub fn of(commands: impl IntoIterator<Item = Cmd>) -> Option<Self> {
        let mut executed = Executed::default();
        for cmd in commands {
            if executed.len() == MAX_SLOTS {
                return None;
            }
            executed.push(cmd);
        }
        Some(executed)
    }

    pub fn iter(&self) -> impl Iterator<Item = Cmd> + '_ {
        self.0.iter().map_while(|c| *c)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }
}

impl StateMachine<u8> for Executed {
    fn iter(&self) -> impl Iterator<Item = Cmd> + '_ {
        Executed::iter(self)
    }

    /// The commands fill a prefix of the array (`push` takes the first free place).
    fn iter_rev(&self) -> impl Iterator<Item = Cmd> + '_ {
        self.0.iter().rev().filter_map(|c| *c)
    }

    fn prefix(&self, len: usize) -> Option<Self> {
        (len <= self.len()).then(|| {
            let mut prefix = *self;
            prefix.0[len..].fill(None);
            prefix
        })
    }

    fn len(&self) -> usize {
        Executed::len(self)
    }

    fn from_commands(commands: impl IntoIterator<Item = Cmd>) -> Option<Self> {
        Executed::of(commands)
    }

    fn push(&mut self, cmd: Cmd) {
        if let Some(free) = self.0.iter_mut().find(|c| c.is_none()) {
            *free = Some(cmd);
        }
    }

    /// `[c1 c2 - -]`: as long as the log, as snapshots have always been shown in traces.
    fn fmt_padded(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (s, cmd) in self.0.iter().enumerate() {
            let sep = if s > 0 { " " } else { "" };
            match cmd {
                None => write!(f, "{sep}-")?,
                Some(cmd) => write!(f, "{sep}{cmd:?}")?,
            }
        }
        f.write_str("]")
    }
}

/// `[c1 c2]`.
fn fmt_commands<N: Number>(
    f: &mut fmt::Formatter<'_>,
    commands: impl Iterator<Item = Cmd<N>>,
) -> fmt::Result {
    f.write_str("[")?;
    for (i, c) in commands.enumerate() {
        write!(f, "{}{c:?}", if i > 0 { " " } else { "" })?;
    }
    f.write_str("]")
}

impl fmt::Debug for Executed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_commands(f, self.iter())
    }
}

/// [`Small`]'s applied set: a bit per slot, so that a seeded bug can apply out of order.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Applied(u8);

impl Applied {
    /// The slots below `c`: an applied prefix of length `c`.
    pub fn below(c: u8) -> Self {
        let mut applied = Applied::default();
        applied.insert_below(c);
        applied
    }

    /// The length of the applied prefix.
    pub fn prefix(self) -> u8 {
        self.0.trailing_ones() as u8
    }
}

impl AppliedSet<u8> for Applied {
    fn prefix(&self) -> u8 {
        Applied::prefix(*self)
    }

    fn contains(&self, s: u8) -> bool {
        s < 8 && self.0 & (1 << s) != 0
    }

    fn insert(&mut self, s: u8) {
        self.0 |= 1 << s;
    }

    fn insert_below(&mut self, c: u8) {
        self.0 |= ((1u16 << c) - 1) as u8;
    }

    fn slots(&self) -> impl Iterator<Item = u8> + '_ {
        (0..8).filter(|&s| self.contains(s))
    }
}

impl fmt::Debug for Applied {
    /// `[s0 s1]`: the slot numbers, not the bitmask ("applied 0001" read as slot 3 to most
    /// people).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        let shown = self.slots().filter(|&s| usize::from(s) < MAX_SLOTS);
        for (i, s) in shown.enumerate() {
            write!(f, "{}s{s}", if i > 0 { " " } else { "" })?;
        }
        f.write_str("]")
    }
}

/// [`Small`]'s waiting reads: one round per read of the configuration.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Waiting([u8; MAX_READS]);

impl Waiting {
    /// Whether `k` names a read the configuration can have (reads count from 1).
    pub fn holds(k: u8) -> bool {
        (1..=MAX_READS).contains(&usize::from(k))
    }

    /// The waiting reads `(k, round)`, by ascending `k`.
    pub fn entries(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (1u8..)
            .zip(self.0.iter().copied())
            .filter(|(_, round)| *round > 0)
    }

    /// Read `k` waits for `round` (0: no longer). `k` must be one [`Waiting::holds`].
    pub fn set(&mut self, k: u8, round: u8) {
        self.0[usize::from(k) - 1] = round;
    }
}

impl WaitingReads<u8> for Waiting {
    fn holds(k: u8) -> bool {
        Waiting::holds(k)
    }

    fn round(&self, k: u8) -> u8 {
        usize::from(k)
            .checked_sub(1)
            .and_then(|i| self.0.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn set(&mut self, k: u8, round: u8) {
        Waiting::set(self, k, round)
    }

    fn entries(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        Waiting::entries(self)
    }
}

impl fmt::Debug for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

// ------------------------------------------------------------------------------ Unbounded

/// [`Unbounded`]'s slot vector: the entries in use, by slot.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SparseSlots<T: Ord + Clone>(OrdMap<u64, T>);

/// Through [`SlotVec::set`], so that an empty entry written out is not stored.
impl<'de, T: SlotEntry> Deserialize<'de> for SparseSlots<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut slots = SparseSlots::default();
        for (s, entry) in std::collections::BTreeMap::<u64, T>::deserialize(deserializer)? {
            slots.set(s, entry);
        }
        Ok(slots)
    }
}

impl<T: SlotEntry> SlotVec<u64, T> for SparseSlots<T> {
    fn get(&self, s: u64) -> T {
        self.0.get(&s).copied().unwrap_or_default()
    }

    fn set(&mut self, s: u64, entry: T) {
        // Empty entries are not stored, so that equal vectors are equal maps.
        if entry == T::default() {
            self.0.remove(&s);
        } else {
            self.0.insert(s, entry);
        }
    }

    fn entries(&self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.0.iter().map(|(s, e)| (*s, *e))
    }

    fn clear_below(&mut self, c: u64) {
        // One entry at a time: each is removed once in a run, where `split_lookup` rebuilt
        // the kept part by insertion whenever it was called, which trace validation does
        // at every step.
        while let Some(first) = self.0.get_min().map(|(s, _)| *s).filter(|s| *s < c) {
            self.0.remove(&first);
        }
    }

    fn map(&self, f: impl Fn(T) -> T) -> Self {
        SparseSlots(self.0.iter().map(|(s, e)| (*s, f(*e))).collect())
    }

    fn shown(&self) -> u64 {
        self.last_used().map_or(0, |s| s + 1)
    }

    fn last_used(&self) -> Option<u64> {
        self.0.get_max().map(|(s, _)| *s)
    }

    fn entries_from(&self, from: u64) -> impl Iterator<Item = (u64, T)> + '_ {
        self.0.range(from..).map(|(s, e)| (*s, *e))
    }

    /// Skips the subtrees the two maps share: a vector moved by a step from the one
    /// before it differs in that step's slots only.
    fn changes_since<'a>(&'a self, earlier: &'a Self) -> impl Iterator<Item = (u64, T, T)> + 'a {
        earlier.0.diff(&self.0).map(|change| match change {
            DiffItem::Add(s, e) => (*s, T::default(), *e),
            DiffItem::Update { old, new } => (*old.0, *old.1, *new.1),
            DiffItem::Remove(s, e) => (*s, *e, T::default()),
        })
    }
}

impl<T: SlotEntry> fmt::Debug for SparseSlots<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

/// [`Unbounded`]'s state machine: a persistent list, newest command first, each node holding
/// the length of the sequence it ends. Trace validation abstracts a replica's sequence by
/// extending the model's sequence of the previous step, so the two share every node but the
/// step's own: equality walks back only over the commands they do not share, and a read's
/// answer (a prefix) is one of the sequence's own nodes. A flat vector (as before) compared
/// the whole run's commands at every step.
#[derive(Clone, Default)]
pub struct ExecutedLog {
    last: Option<Arc<ExecutedNode>>,
}

struct ExecutedNode {
    cmd: Cmd<u64>,
    /// The length of the sequence this command ends.
    len: usize,
    before: Option<Arc<ExecutedNode>>,
}

impl ExecutedLog {
    pub fn of(commands: impl IntoIterator<Item = Cmd<u64>>) -> Self {
        let mut log = ExecutedLog::default();
        for cmd in commands {
            log.push(cmd);
        }
        log
    }

    fn nodes(&self) -> impl Iterator<Item = &ExecutedNode> + '_ {
        std::iter::successors(self.last.as_deref(), |n| n.before.as_deref())
    }
}

/// Node by node: a list of a million commands dropped recursively would overflow the stack.
/// `Arc::into_inner`, not `try_unwrap`: two threads dropping the last two handles of a node
/// at once could both fail `try_unwrap`, and the node would then drop recursively.
impl Drop for ExecutedLog {
    fn drop(&mut self) {
        let mut next = self.last.take();
        while let Some(node) = next {
            next = Arc::into_inner(node).and_then(|mut node| node.before.take());
        }
    }
}

/// By content; two sequences that share a node share everything before it, so the walk
/// stops there.
impl PartialEq for ExecutedLog {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.last.as_ref(), other.last.as_ref());
        loop {
            match (a, b) {
                (None, None) => return true,
                (Some(x), Some(y)) => {
                    if Arc::ptr_eq(x, y) {
                        return true;
                    }
                    if x.len != y.len || x.cmd != y.cmd {
                        return false;
                    }
                    (a, b) = (x.before.as_ref(), y.before.as_ref());
                }
                _ => return false,
            }
        }
    }
}

impl Eq for ExecutedLog {}

/// By content, consistent with `PartialEq`.
impl Hash for ExecutedLog {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for cmd in self.iter_rev() {
            cmd.hash(state);
        }
    }
}

/// As the sequences compare, oldest command first.
impl Ord for ExecutedLog {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            return std::cmp::Ordering::Equal;
        }
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for ExecutedLog {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for ExecutedLog {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The commands in execution order, as [`Serialize`] writes them.
impl<'de> Deserialize<'de> for ExecutedLog {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ExecutedLog::of(Vec::<Cmd<u64>>::deserialize(deserializer)?))
    }
}

impl StateMachine<u64> for ExecutedLog {
    fn iter(&self) -> impl Iterator<Item = Cmd<u64>> + '_ {
        let mut oldest_first: Vec<Cmd<u64>> = self.iter_rev().collect();
        oldest_first.reverse();
        oldest_first.into_iter()
    }

    fn iter_rev(&self) -> impl Iterator<Item = Cmd<u64>> + '_ {
        self.nodes().map(|n| n.cmd)
    }

    fn len(&self) -> usize {
        self.last.as_ref().map_or(0, |n| n.len)
    }

    fn push(&mut self, cmd: Cmd<u64>) {
        let len = self.len() + 1;
        let before = self.last.take();
        self.last = Some(Arc::new(ExecutedNode { cmd, len, before }));
    }

    fn prefix(&self, len: usize) -> Option<Self> {
        if len == 0 {
            return Some(ExecutedLog::default());
        }
        let mut at = self.last.as_ref();
        while let Some(node) = at {
            if node.len == len {
                return Some(ExecutedLog {
                    last: Some(Arc::clone(node)),
                });
            }
            if node.len < len {
                return None;
            }
            at = node.before.as_ref();
        }
        None
    }

    fn from_commands(commands: impl IntoIterator<Item = Cmd<u64>>) -> Option<Self> {
        Some(ExecutedLog::of(commands))
    }

    fn fmt_padded(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_commands(f, self.iter())
    }
}

impl fmt::Debug for ExecutedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_commands(f, self.iter())
    }
}

/// [`Unbounded`]'s applied set: the prefix, and the slots applied above it (only a seeded
/// bug applies any).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawAppliedSlots")]
pub struct AppliedSlots {
    prefix: u64,
    /// Out of order above the prefix. A bit set is enough: trace validation runs no seeded
    /// bugs, and a run that applies out of order past it is rejected, not modelled.
    above: u64,
}

/// [`AppliedSlots`] as written, normalized when read.
#[derive(Deserialize)]
struct RawAppliedSlots {
    prefix: u64,
    above: u64,
}

impl TryFrom<RawAppliedSlots> for AppliedSlots {
    type Error = &'static str;

    fn try_from(raw: RawAppliedSlots) -> Result<Self, Self::Error> {
        if raw.prefix.checked_add(u64::from(u64::BITS)).is_none() {
            return Err("an applied prefix beyond any slot");
        }
        let mut applied = AppliedSlots {
            prefix: raw.prefix,
            above: raw.above,
        };
        applied.normalize();
        Ok(applied)
    }
}

impl AppliedSlots {
    pub fn below(c: u64) -> Self {
        AppliedSlots {
            prefix: c,
            above: 0,
        }
    }

    fn normalize(&mut self) {
        while self.above & 1 != 0 {
            self.above >>= 1;
            self.prefix += 1;
        }
    }
}

impl AppliedSet<u64> for AppliedSlots {
    fn prefix(&self) -> u64 {
        self.prefix
    }

    fn contains(&self, s: u64) -> bool {
        s < self.prefix || (s - self.prefix < 64 && self.above & (1 << (s - self.prefix)) != 0)
    }

    fn insert(&mut self, s: u64) {
        if s < self.prefix {
            return;
        }
        let offset = s - self.prefix;
        assert!(
            offset < 64,
            "slot {s} applied 64 or more slots past the prefix"
        );
        self.above |= 1 << offset;
        self.normalize();
    }

    fn insert_below(&mut self, c: u64) {
        if c > self.prefix {
            let shift = c - self.prefix;
            self.above = if shift >= 64 { 0 } else { self.above >> shift };
            self.prefix = c;
            self.normalize();
        }
    }

    fn slots(&self) -> impl Iterator<Item = u64> + '_ {
        let above = (0..64)
            .filter(|i| self.above & (1 << i) != 0)
            .map(|i| self.prefix + i);
        (0..self.prefix).chain(above)
    }
}

impl fmt::Debug for AppliedSlots {
    /// `[..s41]`, `[]` when empty, `[..s41 s43]` out of order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        if self.prefix > 0 {
            write!(f, "..s{}", self.prefix - 1)?;
        }
        let above = (0..64).filter(|i| self.above & (1 << i) != 0);
        for s in above.map(|i| self.prefix + i) {
            write!(f, " s{s}")?;
        }
        f.write_str("]")
    }
}

/// [`Unbounded`]'s set of commands.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CmdIds(OrdSet<Cmd<u64>>);

impl CommandSet<u64> for CmdIds {
    fn insert(&mut self, cmd: Cmd<u64>) {
        self.0.insert(cmd);
    }

    fn remove(&mut self, cmd: Cmd<u64>) {
        self.0.remove(&cmd);
    }

    fn contains(&self, cmd: Cmd<u64>) -> bool {
        self.0.contains(&cmd)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = Cmd<u64>> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Debug for CmdIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

/// [`Unbounded`]'s waiting reads.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WaitingMap(OrdMap<u64, u64>);

impl WaitingReads<u64> for WaitingMap {
    fn holds(k: u64) -> bool {
        k >= 1
    }

    fn round(&self, k: u64) -> u64 {
        self.0.get(&k).copied().unwrap_or(0)
    }

    fn set(&mut self, k: u64, round: u64) {
        if round == 0 {
            self.0.remove(&k);
        } else {
            self.0.insert(k, round);
        }
    }

    fn entries(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(k, n)| (*k, *n))
    }
}

impl fmt::Debug for WaitingMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ids: &[u64]) -> ExecutedLog {
        ExecutedLog::of(ids.iter().map(|&c| Cmd(c)))
    }

    #[test]
    fn executed_logs_compare_by_content_whether_or_not_they_share_nodes() {
        let base = log(&[1, 2, 3]);
        let (mut a, mut b) = (base.clone(), base.clone());
        a.push(Cmd(4));
        b.push(Cmd(4));
        assert_eq!(a, b, "shared up to the last command");
        assert_eq!(a, log(&[1, 2, 3, 4]), "nothing shared");
        b.push(Cmd(5));
        assert_ne!(a, b, "longer");
        assert_ne!(log(&[1, 2, 3, 5]), a, "equal length, another last command");
        assert_ne!(log(&[9, 2, 3, 4]), a, "another first command");
        assert!(log(&[1, 2]) < log(&[1, 3]) && log(&[1, 2]) < log(&[1, 2, 0]));
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(state.hash_one(&a), state.hash_one(log(&[1, 2, 3, 4])));
    }

    #[test]
    fn an_executed_logs_prefix_is_its_own_node_and_iteration_runs_both_ways() {
        let l = log(&[1, 2, 3, 4]);
        assert_eq!(l.prefix(2), Some(log(&[1, 2])));
        assert_eq!(l.prefix(0), Some(ExecutedLog::default()));
        assert_eq!(l.prefix(4), Some(l.clone()));
        assert_eq!(l.prefix(5), None);
        assert_eq!(l.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(l.iter_rev().map(|c| c.0).collect::<Vec<_>>(), [4, 3, 2, 1]);
        let small = Executed::of([Cmd(1), Cmd(2)]).expect("fits");
        assert_eq!(small.iter_rev().map(|c| c.0).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(small.prefix(1), Executed::of([Cmd(1)]));
        assert_eq!(small.prefix(3), None);
    }

    #[test]
    fn a_long_executed_log_drops_without_recursion() {
        let long = ExecutedLog::of((0..2_000_000).map(Cmd));
        let shared = long.prefix(1_000_000).expect("long enough");
        drop(long);
        assert_eq!(shared.len(), 1_000_000);
    }

    #[test]
    fn sparse_slots_store_only_what_is_in_use_so_equal_vectors_are_equal() {
        let mut a: SparseSlots<Option<Cmd<u64>>> = SparseSlots::default();
        a.set(7, Some(Cmd(3)));
        a.set(9, Some(Cmd(4)));
        a.set(9, None);
        let mut b = SparseSlots::default();
        b.set(7, Some(Cmd(3)));
        assert_eq!(a, b);
        a.set(1_000_000, Some(Cmd(5)));
        a.clear_below(8);
        assert_eq!(a.entries().collect::<Vec<_>>(), [(1_000_000, Some(Cmd(5)))]);
        assert_eq!(a.last_used(), Some(1_000_000));
        a.set(8, Some(Cmd(6)));
        a.clear_below(8);
        assert_eq!(a.get(8), Some(Cmd(6)), "clearing below 8 keeps slot 8");
    }

    #[test]
    fn an_unbounded_applied_set_absorbs_what_joins_its_prefix() {
        let mut applied = AppliedSlots::default();
        applied.insert(1);
        assert_eq!((applied.prefix(), applied.contains(1)), (0, true));
        applied.insert(0);
        assert_eq!(applied, AppliedSlots::below(2));
        applied.insert_below(1_000);
        applied.insert(1_002);
        assert_eq!(applied.prefix(), 1_000);
        assert!(applied.contains(999) && applied.contains(1_002) && !applied.contains(1_001));
        applied.insert_below(1_001);
        assert_eq!(format!("{applied:?}"), "[..s1000 s1002]");
        applied.insert(1_001);
        assert_eq!(applied, AppliedSlots::below(1_003));
    }

    #[test]
    fn the_small_applied_set_counts_its_prefix() {
        let mut applied = Applied::below(2);
        applied.insert(3);
        assert_eq!(AppliedSet::prefix(&applied), 2);
        applied.insert(2);
        assert_eq!(AppliedSet::prefix(&applied), 4);
        assert_eq!(applied.slots().collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}
