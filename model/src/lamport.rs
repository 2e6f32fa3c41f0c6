//! A state-for-state mirror of Lamport's `Paxos.tla` (TLA+ Examples,
//! `specifications/PaxosHowToWinATuringAward/Paxos.tla`, checked with `MCPaxos.tla`: acceptors
//! `a1..aN`, values `v1..vK`, quorums the majorities, `Ballot = 0..MaxBallot`).
//!
//! The model implements [`stateright::Model`] directly. A state is exactly the tuple of the spec's
//! variables `<<maxBal, maxVBal, maxVal, msgs>>`, so the number of unique states the checker
//! reports is the number of distinct reachable tuples, the number TLC reports as "distinct states"
//! for the same constants (TLC counts the initial state too, as stateright does).
//!
//! - `Phase1a(b)`: add `1a(b)`.
//! - `Phase1b(a)`: for a `1a(b)` in `msgs` with `b > maxBal[a]`: `maxBal[a] := b`, add
//!   `1b(a, b, maxVBal[a], maxVal[a])`.
//! - `Phase2a(b, v)`: if no `2a` with ballot `b` was sent and some quorum `Q` sent `1b(b)` from
//!   every member, and either none of those `1b` reports a vote or `v` is the value of one with the
//!   highest `mbal`: add `2a(b, v)`.
//! - `Phase2b(a)`: for a `2a(b, v)` in `msgs` with `b >= maxBal[a]`: `maxBal[a] := maxVBal[a] := b`,
//!   `maxVal[a] := v`, add `2b(a, b, v)`.
//!
//! TLC's stuttering steps (re-sending a message already in `msgs`, re-voting the same vote) are not
//! offered as actions: [`LamportModel`]'s `actions` only lists steps that change the state, and
//! `next_state` returns `None` for a disabled or stuttering action. This leaves the set of reachable
//! states unchanged and keeps the "generated" count to real transitions (so it is lower than TLC's
//! "states generated", which counts every successor it computes).
//!
//! Unique states with acceptors 3, values 2 (checked state for state against a literal
//! transcription of the spec in the tests for max_ballot 0 to 2): 73 (max_ballot 0), 3,921 (1),
//! 185,369 (2), 8,220,065 (3). With 1 acceptor, 1 value, max_ballot 1: 25, the number the TLA+
//! Examples record for TLC on that configuration of `specifications/Paxos/MCPaxos`.
//!
//! ## Encoding
//! The message universe is finite: [`LamportState`] holds `msgs` as a 256-bit set (`[u64; 4]`).
//! Bits are grouped by ballot, and inside the block of ballot `b` (with `N` acceptors and
//! `V = values + 1` value codes, the last one the *bogus* value that only
//! [`LamportBug::Phase2aInventsValue`] can produce):
//!
//! ```text
//! 1a(b)                    1 bit
//! 2a(b, v)                 V bits          (v = 0..V)
//! 2b(a, b, v)              V*N bits        (v-major, then a: the acceptors of (b, v) are one run)
//! 1b(a, b, mbal, mval)     N*(1 + b*V)     (per acceptor one run: code 0 = "no vote",
//!                                           1 + mbal*V + mval otherwise; mbal < b always)
//! ```
//!
//! Acceptor variables are `i8`/`u8` arrays. The state is `Copy`, 64 bytes: it also carries the
//! number of acceptors and values, so that its `Debug` output can name messages without the
//! model, and a cache of the chosen (ballot, value) pairs (a function of `msgs`, updated by
//! `Phase2b`). Neither is hashed; neither changes which states are equal.
//! [`LamportConfig::validate`] rejects configurations whose message universe does not fit.
//!
//! ## Properties
//! The same names as the Synod model (DESIGN.md §3); "chosen" means: a majority of acceptors sent
//! `2b` with the same ballot and value. "Validity", "Agreement", "R2", "R2a", "R2'", "I1" and
//! "P1a" are `always` properties, "Non-vacuity" (some value is chosen) is `sometimes`; the methods
//! [`LamportModel::validity`] … [`LamportModel::p1a`] state each one exactly.
//!
//! ## Seeded bugs
//! [`LamportBug`]: each changes one conjunct of one action and targets one property
//! ([`LamportBug::violates`]); the tests record every property each one violates.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::json;
use stateright::{Model, Property};

use crate::types::BugCatalogue;

/// The largest number of acceptors a configuration may have.
pub const MAX_ACCEPTORS: usize = 5;
/// The largest number of (real) values a configuration may have.
pub const MAX_VALUES: usize = 3;
/// Ballots are `0..=max_ballot` with `max_ballot < MAX_BALLOTS`.
pub const MAX_BALLOTS: usize = 16;
/// Number of 64-bit words of the message set.
const WORDS: usize = 4;
/// How many distinct messages a state can hold (the size of the message bitset).
pub const MESSAGE_CAPACITY: usize = 64 * WORDS;
/// `max_val` of an acceptor that has not voted (TLA+'s `None`).
const NO_VALUE: u8 = u8::MAX;

// ---------------------------------------------------------------------------------------------
// Configuration and seeded bugs
// ---------------------------------------------------------------------------------------------

/// A seeded bug: a small change to one action of the spec that breaks one of the properties.
/// Serialized as its [`BugCatalogue::name`] (the `--bug` argument), in both directions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[serde(into = "&'static str", try_from = "String")]
pub enum LamportBug {
    /// `Phase2a` ignores the votes reported in the `1b` messages and may send any value once a
    /// majority has promised.
    #[strum(
        serialize = "lamport-phase2a-ignores-votes",
        message = "Phase2a ignores the votes reported in 1b messages and proposes any value"
    )]
    Phase2aIgnoresVotes,
    /// `Phase2a` accepts a quorum of `⌊N/2⌋` acceptors (a minority) instead of a majority.
    #[strum(
        serialize = "lamport-phase2a-minority-quorum",
        message = "Phase2a proceeds with 1b messages from a minority (floor(N/2) acceptors)"
    )]
    Phase2aMinorityQuorum,
    /// `Phase2a` drops the conjunct "no `2a` was sent for this ballot yet": a ballot's leader may
    /// propose a second, different value in the same ballot.
    #[strum(
        serialize = "lamport-phase2a-reuses-ballot",
        message = "Phase2a may send a second 2a with a different value in the same ballot"
    )]
    Phase2aReusesBallot,
    /// `Phase2a`, when no vote is reported, may propose a value outside the value set.
    #[strum(
        serialize = "lamport-phase2a-invents-value",
        message = "Phase2a may propose a value outside the value set when no vote is reported"
    )]
    Phase2aInventsValue,
    /// `Phase1b` reports no previous vote (`mbal = -1`, `mval = None`) even when the acceptor
    /// has voted.
    #[strum(
        serialize = "lamport-phase1b-hides-vote",
        message = "Phase1b reports no previous vote (mbal -1) even when the acceptor has voted"
    )]
    Phase1bHidesVote,
    /// `Phase2b` drops the guard `b >= maxBal[a]`: an acceptor votes in a ballot below its promise.
    #[strum(
        serialize = "lamport-phase2b-ignores-promise",
        message = "Phase2b accepts a 2a whose ballot is below the acceptor's maxBal"
    )]
    Phase2bIgnoresPromise,
    /// `Phase2b`: an acceptor that has voted before votes its old value again in the new ballot,
    /// whatever value the `2a` message carries.
    #[strum(
        serialize = "lamport-phase2b-keeps-old-value",
        message = "Phase2b votes the acceptor's previously accepted value instead of the 2a's value"
    )]
    Phase2bKeepsOldValue,
}

impl LamportBug {
    /// The name of the property this bug is designed to violate (it may violate others too).
    pub fn violates(&self) -> &'static str {
        match self {
            LamportBug::Phase2aIgnoresVotes => "Agreement",
            LamportBug::Phase2aMinorityQuorum => "R2",
            LamportBug::Phase2aReusesBallot => "R2'",
            LamportBug::Phase2aInventsValue => "Validity",
            LamportBug::Phase1bHidesVote => "I1",
            LamportBug::Phase2bIgnoresPromise => "P1a",
            LamportBug::Phase2bKeepsOldValue => "R2a",
        }
    }
}

impl BugCatalogue for LamportBug {
    const SUBJECT: &'static str = "lamport";
    const PREFIX: &'static str = "lamport-";
}

crate::types::bug_names!(LamportBug);

/// The constants of the spec: `Acceptor = {a1..aN}`, `Value = {v1..vK}`, `Ballot = 0..max_ballot`,
/// quorums the majorities of the acceptors; plus an optional seeded bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LamportConfig {
    /// Number of acceptors, `1..=5`.
    pub acceptors: usize,
    /// Number of values, `1..=3`.
    pub values: usize,
    /// The highest ballot: ballots are `0..=max_ballot`.
    pub max_ballot: u8,
    /// A seeded bug, or `None` for the spec itself.
    pub bug: Option<LamportBug>,
}

impl Default for LamportConfig {
    fn default() -> Self {
        LamportConfig {
            acceptors: 3,
            values: 2,
            max_ballot: 2,
            bug: None,
        }
    }
}

impl LamportConfig {
    /// Checks the bounds of the configuration, with a message saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.acceptors == 0 || self.acceptors > MAX_ACCEPTORS {
            return Err(format!(
                "lamport: acceptors must be between 1 and {MAX_ACCEPTORS} (got {})",
                self.acceptors
            ));
        }
        if self.values == 0 || self.values > MAX_VALUES {
            return Err(format!(
                "lamport: values must be between 1 and {MAX_VALUES} (got {})",
                self.values
            ));
        }
        if usize::from(self.max_ballot) >= MAX_BALLOTS {
            return Err(format!(
                "lamport: max_ballot must be at most {} (got {})",
                MAX_BALLOTS - 1,
                self.max_ballot
            ));
        }
        let needed = Layout::universe(self.acceptors, self.values, self.ballots());
        if needed > MESSAGE_CAPACITY {
            return Err(format!(
                "lamport: acceptors={}, values={}, max_ballot={} have {} possible messages but a \
                 state holds at most {}; lower max_ballot, values or acceptors",
                self.acceptors, self.values, self.max_ballot, needed, MESSAGE_CAPACITY
            ));
        }
        Ok(())
    }

    /// The number of ballots, `max_ballot + 1`.
    pub fn ballots(&self) -> usize {
        usize::from(self.max_ballot) + 1
    }

    /// The size of a majority of the acceptors.
    pub fn majority(&self) -> usize {
        self.acceptors / 2 + 1
    }
}

// ---------------------------------------------------------------------------------------------
// Message layout and the message bitset
// ---------------------------------------------------------------------------------------------

/// Where each message lives in the bitset. Depends only on the number of acceptors and of value
/// codes (ballots are the outermost dimension), so a state can be decoded without its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    n: usize,
    /// Value codes: the real values plus the bogus one.
    vc: usize,
    /// Ballots covered by `base`.
    ballots: usize,
    /// `base[b]`: first bit of ballot b's block.
    base: [u16; MAX_BALLOTS + 1],
}

impl Layout {
    fn block(n: usize, vc: usize, b: usize) -> usize {
        1 + vc + vc * n + n * (1 + b * vc)
    }

    /// Bits needed for `ballots` ballots.
    fn universe(n: usize, values: usize, ballots: usize) -> usize {
        (0..ballots).map(|b| Self::block(n, values + 1, b)).sum()
    }

    fn new(n: usize, values: usize, ballots: usize) -> Layout {
        let vc = values + 1;
        let mut base = [0u16; MAX_BALLOTS + 1];
        for b in 1..=MAX_BALLOTS {
            let off = usize::from(base[b - 1]) + Self::block(n, vc, b - 1);
            base[b] = u16::try_from(off).unwrap_or(u16::MAX);
        }
        Layout {
            n,
            vc,
            ballots,
            base,
        }
    }

    /// The layout of every ballot whose block fits in the bitset (for decoding a bare state).
    fn fitting(n: usize, values: usize) -> Layout {
        let mut ballots = 0;
        while ballots < MAX_BALLOTS && Self::universe(n, values, ballots + 1) <= MESSAGE_CAPACITY {
            ballots += 1;
        }
        Self::new(n, values, ballots)
    }

    #[inline]
    fn i1a(&self, b: usize) -> usize {
        usize::from(self.base[b])
    }
    #[inline]
    fn start2a(&self, b: usize) -> usize {
        usize::from(self.base[b]) + 1
    }
    #[inline]
    fn i2a(&self, b: usize, v: usize) -> usize {
        self.start2a(b) + v
    }
    /// First bit of the `2b` messages of ballot b (`V*N` bits, value-major).
    #[inline]
    fn start2b(&self, b: usize) -> usize {
        usize::from(self.base[b]) + 1 + self.vc
    }
    #[inline]
    fn i2b(&self, a: usize, b: usize, v: usize) -> usize {
        self.start2b(b) + v * self.n + a
    }
    /// First bit of acceptor a's `1b` messages for ballot b (`1 + b*V` bits).
    #[inline]
    fn start1b(&self, a: usize, b: usize) -> usize {
        usize::from(self.base[b]) + 1 + self.vc + self.vc * self.n + a * (1 + b * self.vc)
    }
    #[inline]
    fn len1b(&self, b: usize) -> usize {
        1 + b * self.vc
    }
    #[inline]
    fn i1b(&self, a: usize, b: usize, mbal: i8, mval: u8) -> usize {
        let code = if mbal < 0 {
            0
        } else {
            1 + mbal as usize * self.vc + usize::from(mval)
        };
        self.start1b(a, b) + code
    }
}

/// The set of messages ever sent, one bit per possible message.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct MsgBits([u64; WORDS]);

impl MsgBits {
    #[inline]
    fn has(&self, i: usize) -> bool {
        (self.0[i >> 6] >> (i & 63)) & 1 != 0
    }

    #[inline]
    fn insert(&mut self, i: usize) {
        self.0[i >> 6] |= 1u64 << (i & 63);
    }

    /// The `len` bits starting at `start` (1 <= len <= 64), as the low bits of a word.
    #[inline]
    fn run(&self, start: usize, len: usize) -> u64 {
        debug_assert!((1..=64).contains(&len) && start + len <= MESSAGE_CAPACITY);
        let w = start >> 6;
        let s = start & 63;
        let mut x = self.0[w] >> s;
        if s != 0 && s + len > 64 {
            x |= self.0[w + 1] << (64 - s);
        }
        if len < 64 {
            x & ((1u64 << len) - 1)
        } else {
            x
        }
    }
}

/// Iterates over the set bits of a word, lowest first.
#[inline]
/// The highest vote ballot among the acceptors in `quorum` (-1 when none voted) and the
/// value mask of the votes at that ballot, given each acceptor's top ballot and value mask.
fn highest_vote(
    quorum: impl Into<u64>,
    top: &[i8; MAX_ACCEPTORS],
    top_vals: &[u8; MAX_ACCEPTORS],
) -> (i8, u8) {
    let mut m = -1i8;
    let mut vals = 0u8;
    for a in bits(quorum.into()) {
        if top[a] > m {
            m = top[a];
            vals = top_vals[a];
        } else if top[a] == m {
            vals |= top_vals[a];
        }
    }
    (m, vals)
}

fn bits(mut x: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if x == 0 {
            None
        } else {
            let i = x.trailing_zeros() as usize;
            x &= x - 1;
            Some(i)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Messages, states, actions
// ---------------------------------------------------------------------------------------------

/// A message of the spec, decoded. Acceptors and values are 0-based indices (`a1` is 0, `v1`
/// is 0); the value index equal to the configuration's `values` is the bogus value that only
/// [`LamportBug::Phase2aInventsValue`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LamportMsg {
    /// `[type |-> "1a", bal |-> bal]`
    #[serde(rename = "1a")]
    M1a { bal: u8 },
    /// `[type |-> "1b", acc |-> acc, bal |-> bal, mbal |-> mbal, mval |-> mval]`
    #[serde(rename = "1b")]
    M1b {
        acc: u8,
        bal: u8,
        mbal: i8,
        mval: Option<u8>,
    },
    /// `[type |-> "2a", bal |-> bal, val |-> val]`
    #[serde(rename = "2a")]
    M2a { bal: u8, val: u8 },
    /// `[type |-> "2b", acc |-> acc, bal |-> bal, val |-> val]`
    #[serde(rename = "2b")]
    M2b { acc: u8, bal: u8, val: u8 },
}

/// `a1`, `a2`, … for acceptor index 0, 1, …
fn acc_name(a: usize) -> String {
    format!("a{}", a + 1)
}

/// `v1`, `v2`, … for value index 0, 1, …; `bogus` for the invented value.
fn val_name(v: u8, values: usize) -> String {
    if usize::from(v) >= values {
        "bogus".to_string()
    } else {
        format!("v{}", v + 1)
    }
}

fn opt_val_name(v: Option<u8>, values: usize, none: &str) -> String {
    v.map_or_else(|| none.to_string(), |v| val_name(v, values))
}

impl LamportMsg {
    /// Renders the message like `1b(a1,0,-1,-)` (compact) or `1b(a1, 0, -1, none)`.
    pub fn render(&self, values: usize, compact: bool) -> String {
        let (sep, none) = if compact { (",", "-") } else { (", ", "none") };
        match *self {
            LamportMsg::M1a { bal } => format!("1a({bal})"),
            LamportMsg::M1b {
                acc,
                bal,
                mbal,
                mval,
            } => format!(
                "1b({}{sep}{bal}{sep}{mbal}{sep}{})",
                acc_name(acc.into()),
                opt_val_name(mval, values, none)
            ),
            LamportMsg::M2a { bal, val } => format!("2a({bal}{sep}{})", val_name(val, values)),
            LamportMsg::M2b { acc, bal, val } => format!(
                "2b({}{sep}{bal}{sep}{})",
                acc_name(acc.into()),
                val_name(val, values)
            ),
        }
    }
}

/// A state of the spec: `maxBal`, `maxVBal`, `maxVal` per acceptor and the set `msgs` of every
/// message ever sent. `Copy`; hashing is over exactly those variables (the other fields are
/// constant per model or a function of `msgs`, so equality is too).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LamportState {
    max_bal: [i8; MAX_ACCEPTORS],
    max_vbal: [i8; MAX_ACCEPTORS],
    max_val: [u8; MAX_ACCEPTORS],
    /// Constant per model: number of acceptors and of values (for decoding and display).
    n: u8,
    values: u8,
    msgs: MsgBits,
    /// Cache, a function of `msgs`: the chosen (ballot, value) pairs as bits `b * (values + 1)
    /// + v`, updated when a `2b` is added (six properties read it on every state).
    chosen: u64,
}

impl Hash for LamportState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // `n` and `values` are the same in every state of a model, `chosen` is a function of
        // `msgs`: leave them out.
        for w in self.msgs.0 {
            h.write_u64(w);
        }
        let mut acc = [0u8; 16];
        for a in 0..MAX_ACCEPTORS {
            acc[a] = self.max_bal[a] as u8;
            acc[MAX_ACCEPTORS + a] = self.max_vbal[a] as u8;
            acc[2 * MAX_ACCEPTORS + a] = self.max_val[a];
        }
        h.write_u128(u128::from_le_bytes(acc));
    }
}

impl LamportState {
    fn initial(n: usize, values: usize) -> LamportState {
        LamportState {
            max_bal: [-1; MAX_ACCEPTORS],
            max_vbal: [-1; MAX_ACCEPTORS],
            max_val: [NO_VALUE; MAX_ACCEPTORS],
            n: n as u8,
            values: values as u8,
            msgs: MsgBits::default(),
            chosen: 0,
        }
    }

    /// Number of acceptors.
    pub fn acceptors(&self) -> usize {
        self.n.into()
    }

    /// `maxBal[a]` (0-based acceptor index), `-1` initially.
    pub fn max_bal(&self, a: usize) -> i8 {
        self.max_bal[a]
    }

    /// `maxVBal[a]`, `-1` if `a` has not voted.
    pub fn max_vbal(&self, a: usize) -> i8 {
        self.max_vbal[a]
    }

    /// `maxVal[a]` as a 0-based value index, `None` if `a` has not voted.
    pub fn max_val(&self, a: usize) -> Option<u8> {
        (self.max_val[a] != NO_VALUE).then_some(self.max_val[a])
    }

    fn layout(&self) -> Layout {
        Layout::fitting(self.n.into(), self.values.into())
    }

    /// Every message in `msgs`, ordered by kind (1a, 1b, 2a, 2b), then ballot, acceptor, value.
    pub fn messages(&self) -> Vec<LamportMsg> {
        let l = self.layout();
        let n = l.n;
        let mut out = Vec::new();
        for b in 0..l.ballots {
            if self.msgs.has(l.i1a(b)) {
                out.push(LamportMsg::M1a { bal: b as u8 });
            }
        }
        for b in 0..l.ballots {
            for a in 0..n {
                for code in bits(self.msgs.run(l.start1b(a, b), l.len1b(b))) {
                    let (mbal, mval) = if code == 0 {
                        (-1, None)
                    } else {
                        (((code - 1) / l.vc) as i8, Some(((code - 1) % l.vc) as u8))
                    };
                    out.push(LamportMsg::M1b {
                        acc: a as u8,
                        bal: b as u8,
                        mbal,
                        mval,
                    });
                }
            }
        }
        for b in 0..l.ballots {
            for v in bits(self.msgs.run(l.start2a(b), l.vc)) {
                out.push(LamportMsg::M2a {
                    bal: b as u8,
                    val: v as u8,
                });
            }
        }
        for b in 0..l.ballots {
            for a in 0..n {
                for v in 0..l.vc {
                    if self.msgs.has(l.i2b(a, b, v)) {
                        out.push(LamportMsg::M2b {
                            acc: a as u8,
                            bal: b as u8,
                            val: v as u8,
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether `m` is in `msgs` (false for a message outside the configuration's universe).
    pub fn contains(&self, m: &LamportMsg) -> bool {
        let l = self.layout();
        let fits = |a: u8, b: u8, v: Option<u8>| {
            usize::from(a) < l.n
                && usize::from(b) < l.ballots
                && v.iter().all(|&v| usize::from(v) < l.vc)
        };
        match *m {
            LamportMsg::M1a { bal } => fits(0, bal, None) && self.msgs.has(l.i1a(bal.into())),
            LamportMsg::M1b {
                acc,
                bal,
                mbal,
                mval,
            } => {
                let consistent = match mval {
                    None => mbal == -1,
                    Some(_) => mbal >= 0 && (mbal as u8) < bal,
                };
                consistent
                    && fits(acc, bal, mval)
                    && self
                        .msgs
                        .has(l.i1b(acc.into(), bal.into(), mbal, mval.unwrap_or(0)))
            }
            LamportMsg::M2a { bal, val } => {
                fits(0, bal, Some(val)) && self.msgs.has(l.i2a(bal.into(), val.into()))
            }
            LamportMsg::M2b { acc, bal, val } => {
                fits(acc, bal, Some(val))
                    && self.msgs.has(l.i2b(acc.into(), bal.into(), val.into()))
            }
        }
    }
}

impl fmt::Debug for LamportState {
    /// `{:?}`: one line; `{:#?}` (the explorer): one line per acceptor, then the messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = usize::from(self.values);
        let accs: Vec<String> = (0..self.acceptors())
            .map(|a| {
                format!(
                    "{}: maxBal={} maxVBal={} maxVal={}",
                    acc_name(a),
                    self.max_bal[a],
                    self.max_vbal[a],
                    opt_val_name(self.max_val(a), values, "-")
                )
            })
            .collect();
        let msgs: Vec<String> = self
            .messages()
            .iter()
            .map(|m| m.render(values, true))
            .collect();
        if f.alternate() {
            writeln!(f, "LamportState {{")?;
            for line in &accs {
                writeln!(f, "    {line}")?;
            }
            writeln!(f, "    msgs ({}): {{{}}}", msgs.len(), msgs.join(", "))?;
            write!(f, "}}")
        } else {
            write!(
                f,
                "LamportState {{ {}; msgs: {{{}}} }}",
                accs.join("; "),
                msgs.join(", ")
            )
        }
    }
}

/// A step of the spec, with the message it acts on (TLA+'s `\E m \in msgs` made explicit).
/// Acceptors and values are 0-based indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LamportAction {
    /// The leader of ballot `bal` sends `1a(bal)`.
    Phase1a { bal: u8 },
    /// Acceptor `acc` receives `1a(bal)`, promises `bal` and sends its `1b`.
    Phase1b { acc: u8, bal: u8 },
    /// The leader of ballot `bal` sends `2a(bal, val)`.
    Phase2a { bal: u8, val: u8 },
    /// Acceptor `acc` receives `2a(bal, val)` and votes.
    Phase2b { acc: u8, bal: u8, val: u8 },
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// The stateright model of `Paxos.tla` for a [`LamportConfig`].
#[derive(Clone, Debug)]
pub struct LamportModel {
    cfg: LamportConfig,
    layout: Layout,
    /// Number of ballots.
    ballots: usize,
    /// Real values (the bogus value code is `values`).
    values: usize,
    majority: usize,
    /// Minimal majorities, as acceptor masks (quorums for the properties).
    majorities: Vec<u8>,
    /// The quorums `Phase2a` accepts (the minimal majorities, or minorities under a bug).
    /// Checking minimal quorums only is exact: if a larger quorum Q enables `Phase2a(b, v)`
    /// through a `1b` of acceptor x, the minimal quorum inside Q that contains x does too.
    phase2a_quorums: Vec<u8>,
    /// Mask of the real value codes.
    real_values: u8,
    /// Mask of the pair bits (b*V + v) whose value is the bogus one.
    bogus_pairs: u64,
    /// `div_vc[i] = i / (values + 1)`: the ballot of bit i of a 1b run (after its "no vote" bit).
    div_vc: [u8; 64],
}

fn subsets_of_size(n: usize, k: usize) -> Vec<u8> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| m as u8)
        .collect()
}

/// Per-acceptor vote history computed from the `2b` messages: for each acceptor a bitmask of
/// the ballots it voted in, and for each (acceptor, ballot) the mask of values it voted for.
struct Votes {
    ballots: [u16; MAX_ACCEPTORS],
    vals: [[u8; MAX_BALLOTS]; MAX_ACCEPTORS],
}

impl LamportModel {
    /// Builds the model. Panics if the configuration is invalid (see [`LamportConfig::validate`]);
    /// use [`LamportModel::try_new`] to get the message instead.
    pub fn new(cfg: LamportConfig) -> LamportModel {
        match Self::try_new(cfg) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the model, or says why the configuration is invalid.
    pub fn try_new(cfg: LamportConfig) -> Result<LamportModel, String> {
        cfg.validate()?;
        let n = cfg.acceptors;
        let ballots = cfg.ballots();
        let layout = Layout::new(n, cfg.values, ballots);
        let majority = cfg.majority();
        let majorities = subsets_of_size(n, majority);
        let phase2a_quorums = if cfg.bug == Some(LamportBug::Phase2aMinorityQuorum) {
            subsets_of_size(n, n / 2)
        } else {
            majorities.clone()
        };
        let vc = cfg.values + 1;
        let bogus_pairs = (0..ballots).fold(0u64, |m, b| m | 1u64 << (b * vc + cfg.values));
        Ok(LamportModel {
            cfg,
            layout,
            ballots,
            values: cfg.values,
            majority,
            majorities,
            phase2a_quorums,
            real_values: ((1u16 << cfg.values) - 1) as u8,
            bogus_pairs,
            div_vc: std::array::from_fn(|i| (i / vc) as u8),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LamportConfig {
        &self.cfg
    }

    /// The configuration as JSON.
    pub fn config_json(&self) -> serde_json::Value {
        json!({
            "acceptors": self.cfg.acceptors,
            "values": self.cfg.values,
            "max_ballot": self.cfg.max_ballot,
            "bug": self.cfg.bug.map(|b| b.name()),
        })
    }

    /// The initial state (`Init`).
    pub fn initial_state(&self) -> LamportState {
        LamportState::initial(self.cfg.acceptors, self.cfg.values)
    }

    fn has_bug(&self, bug: LamportBug) -> bool {
        self.cfg.bug == Some(bug)
    }

    fn vc(&self) -> usize {
        self.values + 1
    }

    // ---- the actions ------------------------------------------------------------------------

    /// The values (as a mask of value codes) that `Phase2a(b, v)` may propose in `s`, ignoring
    /// the conjunct "no 2a for b yet".
    fn phase2a_values(&self, s: &LamportState, b: usize) -> u8 {
        let l = &self.layout;
        let vc = self.vc();
        let vmask = (1u64 << vc) - 1;
        let len = l.len1b(b);
        let mut sent = 0u8;
        let mut top = [-1i8; MAX_ACCEPTORS];
        let mut top_vals = [0u8; MAX_ACCEPTORS];
        for a in 0..l.n {
            let r = s.msgs.run(l.start1b(a, b), len);
            if r == 0 {
                continue;
            }
            sent |= 1 << a;
            let votes = r >> 1;
            if votes != 0 {
                let m = usize::from(self.div_vc[63 - votes.leading_zeros() as usize]);
                top[a] = m as i8;
                top_vals[a] = ((votes >> (m * vc)) & vmask) as u8;
            }
        }
        let free = if self.has_bug(LamportBug::Phase2aInventsValue) {
            self.real_values | 1 << self.values
        } else {
            self.real_values
        };
        let mut allowed = 0u8;
        for &q in &self.phase2a_quorums {
            if q & sent != q {
                continue;
            }
            if self.has_bug(LamportBug::Phase2aIgnoresVotes) {
                return self.real_values;
            }
            let (m, vals) = highest_vote(q, &top, &top_vals);
            allowed |= if m < 0 { free } else { vals };
        }
        allowed
    }

    /// The value acceptor `a` votes for when it receives `2a(_, v)`.
    #[inline]
    fn vote_value(&self, s: &LamportState, a: usize, v: u8) -> u8 {
        if self.has_bug(LamportBug::Phase2bKeepsOldValue) && s.max_val[a] != NO_VALUE {
            s.max_val[a]
        } else {
            v
        }
    }

    /// Whether `Phase2b` of acceptor `a` on `2a(b, v)` is enabled and changes the state.
    #[inline]
    fn phase2b_changes(&self, s: &LamportState, a: usize, b: usize, v: u8) -> bool {
        let bb = b as i8;
        if bb < s.max_bal[a] && !self.has_bug(LamportBug::Phase2bIgnoresPromise) {
            return false;
        }
        let w = self.vote_value(s, a, v);
        !(s.max_bal[a] == bb
            && s.max_vbal[a] == bb
            && s.max_val[a] == w
            && s.msgs.has(self.layout.i2b(a, b, w.into())))
    }

    // ---- the properties ---------------------------------------------------------------------

    /// The chosen (ballot, value) pairs as a mask of bits `b * (values + 1) + v` (cached in the
    /// state).
    #[inline]
    fn chosen_mask(&self, s: &LamportState) -> u64 {
        debug_assert_eq!(s.chosen, self.compute_chosen_mask(s));
        s.chosen
    }

    /// [`Self::chosen_mask`] computed from the `2b` messages.
    fn compute_chosen_mask(&self, s: &LamportState) -> u64 {
        let l = &self.layout;
        let n = l.n;
        let vc = self.vc();
        let nmask = (1u64 << n) - 1;
        let mut chosen = 0u64;
        for b in 0..self.ballots {
            let r = s.msgs.run(l.start2b(b), vc * n);
            if r == 0 {
                continue;
            }
            for v in 0..vc {
                if ((r >> (v * n)) & nmask).count_ones() as usize >= self.majority {
                    chosen |= 1u64 << (b * vc + v);
                }
            }
        }
        chosen
    }

    /// The chosen (ballot, value) pairs: a majority of acceptors sent `2b(_, ballot, value)`.
    /// Values are 0-based indices.
    pub fn chosen(&self, s: &LamportState) -> Vec<(u8, u8)> {
        let vc = self.vc();
        bits(self.chosen_mask(s))
            .map(|p| ((p / vc) as u8, (p % vc) as u8))
            .collect()
    }

    /// Mask of the values of the `2a` messages of ballot b.
    #[inline]
    fn vals_2a(&self, s: &LamportState, b: usize) -> u8 {
        s.msgs.run(self.layout.start2a(b), self.vc()) as u8
    }

    /// Mask of the values of the `2b` messages of ballot b (any acceptor).
    fn vals_2b(&self, s: &LamportState, b: usize) -> u8 {
        let n = self.layout.n;
        let r = s.msgs.run(self.layout.start2b(b), self.vc() * n);
        let nmask = (1u64 << n) - 1;
        (0..self.vc()).fold(0u8, |m, v| {
            if (r >> (v * n)) & nmask != 0 {
                m | 1 << v
            } else {
                m
            }
        })
    }

    fn votes(&self, s: &LamportState) -> Votes {
        let l = &self.layout;
        let n = l.n;
        let mut votes = Votes {
            ballots: [0; MAX_ACCEPTORS],
            vals: [[0; MAX_BALLOTS]; MAX_ACCEPTORS],
        };
        let nmask = (1u64 << n) - 1;
        for b in 0..self.ballots {
            let r = s.msgs.run(l.start2b(b), self.vc() * n);
            if r == 0 {
                continue;
            }
            for v in 0..self.vc() {
                for a in bits((r >> (v * n)) & nmask) {
                    votes.ballots[a] |= 1 << b;
                    votes.vals[a][b] |= 1 << v;
                }
            }
        }
        votes
    }

    /// For every chosen (n, v), whether every pair (m, w) with m > n in `later(m)` (a mask of
    /// values per ballot) has w = v.
    fn later_agree(&self, s: &LamportState, later: impl Fn(usize) -> u8) -> bool {
        let chosen = self.chosen_mask(s);
        if chosen == 0 {
            return true;
        }
        // Values chosen in ballots below m: every value in `later(m)` must equal each of them.
        let mut below = 0u8;
        for m in 0..self.ballots {
            if below != 0 {
                let vals = later(m);
                if vals != 0 && (below.count_ones() > 1 || vals != below) {
                    return false;
                }
            }
            below |= self.chosen_at(chosen, m);
        }
        true
    }

    /// The values chosen in ballot b, given the chosen mask.
    #[inline]
    fn chosen_at(&self, chosen: u64, b: usize) -> u8 {
        ((chosen >> (b * self.vc())) & ((1u64 << self.vc()) - 1)) as u8
    }

    /// **Validity** (C1): only a value of the value set is chosen (never the bogus value).
    pub fn validity(&self, s: &LamportState) -> bool {
        self.chosen_mask(s) & self.bogus_pairs == 0
    }

    /// **Agreement** (C2): all chosen pairs have the same value.
    pub fn agreement(&self, s: &LamportState) -> bool {
        let chosen = self.chosen_mask(s);
        if chosen == 0 {
            return true;
        }
        let vals = (0..self.ballots).fold(0u8, |m, b| m | self.chosen_at(chosen, b));
        vals.count_ones() <= 1
    }

    /// **R2** (P2): if (n, v) is chosen, every chosen (m, w) with m > n has w = v.
    pub fn r2(&self, s: &LamportState) -> bool {
        let chosen = self.chosen_mask(s);
        self.later_agree(s, |m| self.chosen_at(chosen, m))
    }

    /// **R2a** (P2a): if (n, v) is chosen, every `2b(_, m, w)` with m > n has w = v.
    pub fn r2a(&self, s: &LamportState) -> bool {
        self.later_agree(s, |m| self.vals_2b(s, m))
    }

    /// **R2'** (P2b): if (n, v) is chosen, every `2a(m, w)` with m > n has w = v.
    pub fn r2_prime(&self, s: &LamportState) -> bool {
        self.later_agree(s, |m| self.vals_2a(s, m))
    }

    /// **I1** (P2c), stated on the voting history (the `2b` messages): for every `2a(n, v)`
    /// there is a majority S such that either no acceptor in S sent a `2b` with a ballot < n, or
    /// v is the value of a highest-ballot `2b` with ballot < n sent by a member of S.
    ///
    /// Why it holds for the spec at every later state, not only when `2a(n, v)` is sent: take
    /// for S the quorum Q whose `1b(n)` messages enabled `Phase2a(n, v)`. A member of Q votes
    /// below n only before its `1b(n)` (afterwards `maxBal >= n`), and `maxVBal` never
    /// decreases, so its `1b(n)` reports its highest vote below n, forever; Phase2a picked the
    /// value of the highest of those. (Checking minimal majorities suffices, by the same argument
    /// as for `Phase2a`.)
    ///
    /// This is deliberately not the restatement of Phase2a's guard over the `1b(n)` messages:
    /// that one is true by construction whenever Phase2a is unchanged, and would miss
    /// [`LamportBug::Phase1bHidesVote`], where the `1b` messages lie about the votes.
    pub fn i1(&self, s: &LamportState) -> bool {
        let n_acc = self.layout.n;
        let mut votes: Option<Votes> = None;
        for n in 0..self.ballots {
            let issued = self.vals_2a(s, n);
            if issued == 0 {
                continue;
            }
            let votes = votes.get_or_insert_with(|| self.votes(s));
            let mut top = [-1i8; MAX_ACCEPTORS];
            let mut top_vals = [0u8; MAX_ACCEPTORS];
            for a in 0..n_acc {
                let below = votes.ballots[a] & ((1u16 << n) - 1);
                if below != 0 {
                    let m = 15 - below.leading_zeros() as usize;
                    top[a] = m as i8;
                    top_vals[a] = votes.vals[a][m];
                }
            }
            for v in bits(issued.into()) {
                let safe = self.majorities.iter().any(|&q| {
                    let (m, vals) = highest_vote(q, &top, &top_vals);
                    m < 0 || vals & (1 << v) != 0
                });
                if !safe {
                    return false;
                }
            }
        }
        true
    }

    /// **P1a**: an acceptor votes in ballot n only if it has not promised a ballot > n. Stated on
    /// `msgs` (no ghost variable): for every `2b(a, n, _)` and `1b(a, m, mbal, _)` with m > n,
    /// `mbal >= n`. In the spec, if the vote came first, `maxVBal[a] >= n` when the `1b` was sent
    /// (`maxVBal` never decreases); if the promise came first, `maxBal[a] >= m > n` disables the
    /// vote. So a violation means a vote below a promise (or a `1b` that hides a vote).
    pub fn p1a(&self, s: &LamportState) -> bool {
        let l = &self.layout;
        let votes = self.votes(s);
        for a in 0..l.n {
            let voted = votes.ballots[a];
            if voted == 0 {
                continue;
            }
            for m in 1..self.ballots {
                // Votes strictly below m.
                let below_m = voted & ((1u16 << m) - 1);
                if below_m == 0 {
                    continue;
                }
                for code in bits(s.msgs.run(l.start1b(a, m), l.len1b(m))) {
                    // Ballots > mbal, as a mask: mbal = -1 for code 0.
                    let above_mbal = if code == 0 {
                        u16::MAX
                    } else {
                        let mbal = usize::from(self.div_vc[code - 1]);
                        !((1u16 << (mbal + 1)) - 1)
                    };
                    if below_m & above_mbal != 0 {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// **Non-vacuity**: some value is chosen.
    pub fn some_chosen(&self, s: &LamportState) -> bool {
        self.chosen_mask(s) != 0
    }

    // ---- rendering --------------------------------------------------------------------------

    fn val(&self, v: u8) -> String {
        val_name(v, self.values)
    }

    fn opt_val(&self, v: u8) -> String {
        if v == NO_VALUE {
            "none".to_string()
        } else {
            self.val(v)
        }
    }

    /// A state as JSON: `{"acceptors": [{"max_bal", "max_vbal", "max_val"}…], "msgs": […]}` with
    /// 0-based acceptor and value indices, `max_val: null` for none, and messages as
    /// `{"type": "1b", "acc": 0, "bal": 1, "mbal": -1, "mval": null}`.
    pub fn state_json(&self, s: &LamportState) -> serde_json::Value {
        let accs: Vec<serde_json::Value> = (0..s.acceptors())
            .map(|a| {
                json!({
                    "max_bal": s.max_bal(a),
                    "max_vbal": s.max_vbal(a),
                    "max_val": s.max_val(a),
                })
            })
            .collect();
        json!({
            "acceptors": accs,
            "msgs": serde_json::to_value(s.messages()).unwrap_or_default(),
        })
    }

    /// An action as JSON, e.g. `{"type": "Phase2b", "acc": 0, "bal": 1, "val": 0}` (0-based).
    pub fn action_json(&self, a: &LamportAction) -> serde_json::Value {
        serde_json::to_value(a).unwrap_or_default()
    }

    /// One readable line for a step, e.g.
    /// `acceptor a1 receives 1a(2): max_bal -1 → 2, sends 1b(a1, 2, -1, none)`.
    pub fn describe_step(
        &self,
        prev: &LamportState,
        action: &LamportAction,
        next: &LamportState,
    ) -> String {
        let mut out = match *action {
            LamportAction::Phase1a { bal } => format!("leader of ballot {bal}"),
            LamportAction::Phase1b { acc, bal } => {
                format!("acceptor {} receives 1a({bal})", acc_name(acc.into()))
            }
            LamportAction::Phase2a { bal, .. } => format!("leader of ballot {bal}"),
            LamportAction::Phase2b { acc, bal, val } => format!(
                "acceptor {} receives 2a({bal}, {})",
                acc_name(acc.into()),
                self.val(val)
            ),
        };
        let mut changes = Vec::new();
        for a in 0..prev.acceptors() {
            let who = if matches!(
                action,
                LamportAction::Phase1b { acc, .. } | LamportAction::Phase2b { acc, .. }
                    if usize::from(*acc) == a
            ) {
                String::new()
            } else {
                format!("{} ", acc_name(a))
            };
            if prev.max_bal[a] != next.max_bal[a] {
                changes.push(format!(
                    "{who}max_bal {} → {}",
                    prev.max_bal[a], next.max_bal[a]
                ));
            }
            if prev.max_vbal[a] != next.max_vbal[a] {
                changes.push(format!(
                    "{who}max_vbal {} → {}",
                    prev.max_vbal[a], next.max_vbal[a]
                ));
            }
            if prev.max_val[a] != next.max_val[a] {
                changes.push(format!(
                    "{who}max_val {} → {}",
                    self.opt_val(prev.max_val[a]),
                    self.opt_val(next.max_val[a])
                ));
            }
        }
        let sent: Vec<String> = next
            .messages()
            .into_iter()
            .filter(|m| !prev.contains(m))
            .map(|m| m.render(self.values, false))
            .collect();
        if !sent.is_empty() {
            changes.push(format!("sends {}", sent.join(", ")));
        }
        if changes.is_empty() {
            changes.push("no change".to_string());
        }
        let sep = if matches!(
            action,
            LamportAction::Phase1a { .. } | LamportAction::Phase2a { .. }
        ) {
            " "
        } else {
            ": "
        };
        out.push_str(sep);
        out.push_str(&changes.join(", "));
        out
    }
}

impl Model for LamportModel {
    type State = LamportState;
    type Action = LamportAction;

    fn init_states(&self) -> Vec<LamportState> {
        vec![self.initial_state()]
    }

    fn actions(&self, s: &LamportState, actions: &mut Vec<LamportAction>) {
        let l = &self.layout;
        let n = l.n;
        let bs = self.ballots;
        // Phase1a(b): only if 1a(b) is new.
        for b in 0..bs {
            if !s.msgs.has(l.i1a(b)) {
                actions.push(LamportAction::Phase1a { bal: b as u8 });
            }
        }
        // Phase1b(a) on 1a(b) with b > maxBal[a] (always a change: maxBal increases).
        for a in 0..n {
            let from = (s.max_bal[a] + 1) as usize;
            for b in from..bs {
                if s.msgs.has(l.i1a(b)) {
                    actions.push(LamportAction::Phase1b {
                        acc: a as u8,
                        bal: b as u8,
                    });
                }
            }
        }
        // Phase2a(b, v) (always a change: the 2a is new).
        let reuse = self.has_bug(LamportBug::Phase2aReusesBallot);
        for b in 0..bs {
            let sent = self.vals_2a(s, b);
            if sent != 0 && !reuse {
                continue;
            }
            let allowed = self.phase2a_values(s, b) & !sent;
            for v in bits(allowed.into()) {
                actions.push(LamportAction::Phase2a {
                    bal: b as u8,
                    val: v as u8,
                });
            }
        }
        // Phase2b(a) on 2a(b, v), when it changes the state.
        for b in 0..bs {
            let sent = self.vals_2a(s, b);
            if sent == 0 {
                continue;
            }
            for v in bits(sent.into()) {
                for a in 0..n {
                    if self.phase2b_changes(s, a, b, v as u8) {
                        actions.push(LamportAction::Phase2b {
                            acc: a as u8,
                            bal: b as u8,
                            val: v as u8,
                        });
                    }
                }
            }
        }
    }

    fn next_state(&self, s: &LamportState, action: LamportAction) -> Option<LamportState> {
        let l = &self.layout;
        let mut t = *s;
        match action {
            LamportAction::Phase1a { bal } => {
                let b = usize::from(bal);
                if b >= self.ballots || s.msgs.has(l.i1a(b)) {
                    return None;
                }
                t.msgs.insert(l.i1a(b));
            }
            LamportAction::Phase1b { acc, bal } => {
                let (a, b) = (usize::from(acc), usize::from(bal));
                if a >= l.n || b >= self.ballots || !s.msgs.has(l.i1a(b)) {
                    return None;
                }
                if (bal as i8) <= s.max_bal[a] {
                    return None;
                }
                t.max_bal[a] = bal as i8;
                let (mbal, mval) = if self.has_bug(LamportBug::Phase1bHidesVote) {
                    (-1, NO_VALUE)
                } else {
                    (s.max_vbal[a], s.max_val[a])
                };
                debug_assert!(mbal < bal as i8, "1b reports a vote at or above its ballot");
                t.msgs.insert(l.i1b(a, b, mbal, mval));
            }
            LamportAction::Phase2a { bal, val } => {
                let b = usize::from(bal);
                if b >= self.ballots || usize::from(val) >= self.vc() {
                    return None;
                }
                let sent = self.vals_2a(s, b);
                if (sent != 0 && !self.has_bug(LamportBug::Phase2aReusesBallot))
                    || sent & (1 << val) != 0
                    || self.phase2a_values(s, b) & (1 << val) == 0
                {
                    return None;
                }
                t.msgs.insert(l.i2a(b, val.into()));
            }
            LamportAction::Phase2b { acc, bal, val } => {
                let (a, b) = (usize::from(acc), usize::from(bal));
                if a >= l.n || b >= self.ballots || usize::from(val) >= self.vc() {
                    return None;
                }
                if !s.msgs.has(l.i2a(b, val.into())) || !self.phase2b_changes(s, a, b, val) {
                    return None;
                }
                let w = self.vote_value(s, a, val);
                t.max_bal[a] = bal as i8;
                t.max_vbal[a] = bal as i8;
                t.max_val[a] = w;
                t.msgs.insert(l.i2b(a, b, w.into()));
                let voters = t.msgs.run(l.i2b(0, b, w.into()), l.n);
                if voters.count_ones() as usize >= self.majority {
                    t.chosen |= 1u64 << (b * self.vc() + usize::from(w));
                }
            }
        }
        Some(t)
    }

    fn format_action(&self, action: &LamportAction) -> String {
        match *action {
            LamportAction::Phase1a { bal } => format!("Phase1a({bal})"),
            LamportAction::Phase1b { acc, bal } => {
                format!("Phase1b({}) on 1a({bal})", acc_name(acc.into()))
            }
            LamportAction::Phase2a { bal, val } => format!("Phase2a({bal}, {})", self.val(val)),
            LamportAction::Phase2b { acc, bal, val } => format!(
                "Phase2b({}) on 2a({bal}, {})",
                acc_name(acc.into()),
                self.val(val)
            ),
        }
    }

    fn format_step(&self, last_state: &LamportState, action: LamportAction) -> Option<String> {
        self.next_state(last_state, action).map(|next| {
            format!(
                "{}\n{next:#?}",
                self.describe_step(last_state, &action, &next)
            )
        })
    }

    /// "Validity", "Agreement", "R2", "R2a", "R2'", "I1", "P1a" (always) and "Non-vacuity"
    /// (sometimes); see the methods of the same names on [`LamportModel`].
    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("Validity", |m: &Self, s: &LamportState| m.validity(s)),
            Property::always("Agreement", |m: &Self, s: &LamportState| m.agreement(s)),
            Property::always("R2", |m: &Self, s: &LamportState| m.r2(s)),
            Property::always("R2a", |m: &Self, s: &LamportState| m.r2a(s)),
            Property::always("R2'", |m: &Self, s: &LamportState| m.r2_prime(s)),
            Property::always("I1", |m: &Self, s: &LamportState| m.i1(s)),
            Property::always("P1a", |m: &Self, s: &LamportState| m.p1a(s)),
            Property::sometimes("Non-vacuity", |m: &Self, s: &LamportState| m.some_chosen(s)),
        ]
    }
}

/// The names of the `always` properties, in the order [`Model::properties`] lists them.
pub const SAFETY_PROPERTIES: [&str; 7] = ["Validity", "Agreement", "R2", "R2a", "R2'", "I1", "P1a"];

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::{Checker, HasDiscoveries};
    use std::collections::{BTreeSet, HashSet, VecDeque};

    fn cfg(acceptors: usize, values: usize, max_ballot: u8) -> LamportConfig {
        LamportConfig {
            acceptors,
            values,
            max_ballot,
            bug: None,
        }
    }

    // ---- an independent, literal transcription of Paxos.tla --------------------------------

    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    enum Msg {
        OneA(i32),
        OneB {
            acc: usize,
            bal: i32,
            mbal: i32,
            mval: Option<usize>,
        },
        TwoA(i32, usize),
        TwoB {
            acc: usize,
            bal: i32,
            val: usize,
        },
    }

    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Tla {
        max_bal: Vec<i32>,
        max_vbal: Vec<i32>,
        max_val: Vec<Option<usize>>,
        msgs: BTreeSet<Msg>,
    }

    /// All successor states of `s` under `Next` (including stuttering ones).
    fn tla_next(s: &Tla, n: usize, values: usize, max_ballot: i32) -> Vec<Tla> {
        let ballots: Vec<i32> = (0..=max_ballot).collect();
        // Every majority, not only the minimal ones.
        let quorums: Vec<Vec<usize>> = (0u32..(1 << n))
            .filter(|m| m.count_ones() as usize > n / 2)
            .map(|m| (0..n).filter(|a| m >> a & 1 == 1).collect())
            .collect();
        let send = |s: &Tla, m: Msg| {
            let mut t = s.clone();
            t.msgs.insert(m);
            t
        };
        let mut out = Vec::new();
        for &b in &ballots {
            // Phase1a(b)
            out.push(send(s, Msg::OneA(b)));
            // Phase2a(b, v)
            for v in 0..values {
                if s.msgs
                    .iter()
                    .any(|m| matches!(m, Msg::TwoA(bb, _) if *bb == b))
                {
                    continue;
                }
                let enabled = quorums.iter().any(|q| {
                    let q1b: Vec<&Msg> = s
                        .msgs
                        .iter()
                        .filter(|m| matches!(m, Msg::OneB { acc, bal, .. } if q.contains(acc) && *bal == b))
                        .collect();
                    let q1bv: Vec<(i32, Option<usize>)> = q1b
                        .iter()
                        .filter_map(|m| match m {
                            Msg::OneB { mbal, mval, .. } if *mbal >= 0 => Some((*mbal, *mval)),
                            _ => None,
                        })
                        .collect();
                    q.iter().all(|a| q1b.iter().any(|m| matches!(m, Msg::OneB { acc, .. } if acc == a)))
                        && (q1bv.is_empty()
                            || q1bv.iter().any(|&(mb, mv)| {
                                mv == Some(v) && q1bv.iter().all(|&(mb2, _)| mb >= mb2)
                            }))
                });
                if enabled {
                    out.push(send(s, Msg::TwoA(b, v)));
                }
            }
        }
        for a in 0..n {
            for m in &s.msgs {
                match *m {
                    // Phase1b(a)
                    Msg::OneA(b) if b > s.max_bal[a] => {
                        let mut t = send(
                            s,
                            Msg::OneB {
                                acc: a,
                                bal: b,
                                mbal: s.max_vbal[a],
                                mval: s.max_val[a],
                            },
                        );
                        t.max_bal[a] = b;
                        out.push(t);
                    }
                    // Phase2b(a)
                    Msg::TwoA(b, v) if b >= s.max_bal[a] => {
                        let mut t = send(
                            s,
                            Msg::TwoB {
                                acc: a,
                                bal: b,
                                val: v,
                            },
                        );
                        t.max_bal[a] = b;
                        t.max_vbal[a] = b;
                        t.max_val[a] = Some(v);
                        out.push(t);
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn tla_reachable(n: usize, values: usize, max_ballot: i32) -> HashSet<Tla> {
        let init = Tla {
            max_bal: vec![-1; n],
            max_vbal: vec![-1; n],
            max_val: vec![None; n],
            msgs: BTreeSet::new(),
        };
        let mut seen = HashSet::new();
        let mut queue = VecDeque::new();
        seen.insert(init.clone());
        queue.push_back(init);
        while let Some(s) = queue.pop_front() {
            for t in tla_next(&s, n, values, max_ballot) {
                if seen.insert(t.clone()) {
                    queue.push_back(t);
                }
            }
        }
        seen
    }

    fn to_tla(s: &LamportState) -> Tla {
        let n = s.acceptors();
        Tla {
            max_bal: (0..n).map(|a| s.max_bal(a).into()).collect(),
            max_vbal: (0..n).map(|a| s.max_vbal(a).into()).collect(),
            max_val: (0..n).map(|a| s.max_val(a).map(usize::from)).collect(),
            msgs: s
                .messages()
                .into_iter()
                .map(|m| match m {
                    LamportMsg::M1a { bal } => Msg::OneA(bal.into()),
                    LamportMsg::M1b {
                        acc,
                        bal,
                        mbal,
                        mval,
                    } => Msg::OneB {
                        acc: acc.into(),
                        bal: bal.into(),
                        mbal: mbal.into(),
                        mval: mval.map(usize::from),
                    },
                    LamportMsg::M2a { bal, val } => Msg::TwoA(bal.into(), val.into()),
                    LamportMsg::M2b { acc, bal, val } => Msg::TwoB {
                        acc: acc.into(),
                        bal: bal.into(),
                        val: val.into(),
                    },
                })
                .collect(),
        }
    }

    /// Every reachable state of the model, by a plain BFS over `next_steps`.
    fn model_reachable(m: &LamportModel) -> HashSet<LamportState> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::new();
        for s in m.init_states() {
            seen.insert(s);
            queue.push_back(s);
        }
        while let Some(s) = queue.pop_front() {
            for t in m.next_states(&s) {
                assert_ne!(t, s, "next_state returned a stuttering step");
                if seen.insert(t) {
                    queue.push_back(t);
                }
            }
        }
        seen
    }

    #[test]
    fn lamport_matches_literal_transcription_of_the_spec() {
        for (n, values, max_ballot) in [(1, 1, 1), (2, 1, 1), (3, 1, 1), (3, 2, 0), (3, 2, 1)] {
            let model = LamportModel::new(cfg(n, values, max_ballot));
            let ours: BTreeSet<Tla> = model_reachable(&model).iter().map(to_tla).collect();
            let theirs: BTreeSet<Tla> = tla_reachable(n, values, max_ballot.into())
                .into_iter()
                .collect();
            assert_eq!(
                ours.len(),
                theirs.len(),
                "state count differs for n={n} values={values} max_ballot={max_ballot}"
            );
            assert!(
                ours == theirs,
                "state sets differ for n={n} values={values}"
            );
        }
    }

    #[test]
    fn lamport_matches_tlc_on_the_published_small_model() {
        // TLA+ Examples, specifications/Paxos/manifest.json: TLC finds 25 distinct states for
        // MCPaxos with Acceptor = {a1}, Value = {v1}, Quorum = {{a1}}, Ballot = 0..1.
        let model = LamportModel::new(cfg(1, 1, 1));
        assert_eq!(model_reachable(&model).len(), 25);
        let checker = model.checker().spawn_bfs().join();
        assert_eq!(checker.unique_state_count(), 25);
    }

    // ---- pinned state counts ------------------------------------------------------------------

    /// Unique states for acceptors 3, values 2, max_ballot 0, 1, 2. Max_ballot 0 and 1 are
    /// cross-checked state for state against the literal transcription above (and 2 by the
    /// ignored test `lamport_matches_literal_transcription_max_ballot_2`).
    const PINNED: [(u8, usize); 3] = [(0, 73), (1, 3_921), (2, 185_369)];

    #[test]
    fn lamport_state_counts_are_pinned_and_safety_holds() {
        for (max_ballot, expected) in PINNED {
            let model = LamportModel::new(cfg(3, 2, max_ballot));
            let bfs = model.clone().checker().spawn_bfs().join();
            let dfs = model.clone().checker().spawn_dfs().join();
            assert!(bfs.is_done() && dfs.is_done());
            eprintln!(
                "max_ballot={max_ballot}: unique={} generated={}",
                bfs.unique_state_count(),
                bfs.state_count()
            );
            assert_eq!(
                bfs.unique_state_count(),
                expected,
                "BFS, max_ballot={max_ballot}"
            );
            assert_eq!(
                dfs.unique_state_count(),
                expected,
                "DFS, max_ballot={max_ballot}"
            );
            // Every `always` property holds, and "Non-vacuity" has an example.
            bfs.assert_properties();
            dfs.assert_properties();
            let path = dfs.discovery("Non-vacuity").expect("a value can be chosen");
            assert!(!model.chosen(path.last_state()).is_empty());
        }
    }

    #[test]
    #[ignore = "slow in debug builds: run with --release --ignored"]
    fn lamport_matches_literal_transcription_max_ballot_2() {
        let model = LamportModel::new(cfg(3, 2, 2));
        let ours: BTreeSet<Tla> = model_reachable(&model).iter().map(to_tla).collect();
        let theirs: BTreeSet<Tla> = tla_reachable(3, 2, 2).into_iter().collect();
        assert_eq!(ours.len(), 185_369);
        assert!(ours == theirs);
    }

    // ---- properties ---------------------------------------------------------------------------

    #[test]
    fn lamport_safety_holds_for_other_shapes() {
        for c in [
            cfg(1, 2, 2),
            cfg(2, 2, 2),
            cfg(3, 1, 2),
            cfg(3, 3, 1),
            cfg(4, 2, 1),
            cfg(5, 2, 0),
        ] {
            let checker = LamportModel::new(c).checker().spawn_dfs().join();
            assert!(checker.is_done());
            checker.assert_properties();
        }
    }

    /// For each bug: a max_ballot (with acceptors 3, values 2; the smallest at which the bug
    /// violates its target) and every safety property the bug violates there, as measured
    /// exhaustively by `lamport_bug_table` (which finds the same lists at max_ballot 2, where the
    /// searches for `reuses-ballot` and `ignores-promise` are cut at 60 s). Every `always`
    /// property is in some list, and each list contains the bug's `violates()`. (`reuses-ballot`
    /// already violates Agreement at max_ballot 0: two values chosen in ballot 0.)
    const BUG_TABLE: [(LamportBug, u8, &[&str]); 7] = [
        (
            LamportBug::Phase2aIgnoresVotes,
            1,
            &["Agreement", "R2", "R2a", "R2'", "I1"],
        ),
        (
            LamportBug::Phase2aMinorityQuorum,
            1,
            &["Agreement", "R2", "R2a", "R2'", "I1"],
        ),
        (
            LamportBug::Phase2aReusesBallot,
            1,
            &["Agreement", "R2", "R2a", "R2'"],
        ),
        (LamportBug::Phase2aInventsValue, 0, &["Validity"]),
        (
            LamportBug::Phase1bHidesVote,
            1,
            &["Agreement", "R2", "R2a", "R2'", "I1", "P1a"],
        ),
        (
            LamportBug::Phase2bIgnoresPromise,
            1,
            &["Agreement", "R2", "R2a", "R2'", "I1", "P1a"],
        ),
        (LamportBug::Phase2bKeepsOldValue, 2, &["R2a", "R2'"]),
    ];

    /// Runs a BFS on `bug` at acceptors 3, values 2, `max_ballot` until every property in
    /// `props` has a counterexample (or the space is exhausted); returns the `always` properties
    /// with a counterexample, after checking that each really ends in a violating state.
    fn counterexamples(
        bug: LamportBug,
        max_ballot: u8,
        props: &[&'static str],
    ) -> BTreeSet<&'static str> {
        let model = LamportModel::new(LamportConfig {
            bug: Some(bug),
            ..cfg(3, 2, max_ballot)
        });
        let checker = model
            .clone()
            .checker()
            .finish_when(HasDiscoveries::AllOf(props.iter().copied().collect()))
            .spawn_bfs()
            .join();
        let mut found = BTreeSet::new();
        for (name, path) in checker.discoveries() {
            let property = model.property(name);
            if property.expectation == stateright::Expectation::Always {
                assert!(!(property.condition)(&model, path.last_state()), "{name}");
                found.insert(name);
            }
        }
        found
    }

    #[test]
    fn lamport_every_bug_violates_its_property_and_the_tabulated_ones() {
        for name in SAFETY_PROPERTIES {
            assert!(
                BUG_TABLE.iter().any(|(_, _, props)| props.contains(&name)),
                "no seeded bug violates {name}"
            );
        }
        assert_eq!(BUG_TABLE.len(), LamportBug::ALL.len());
        for (bug, max_ballot, props) in BUG_TABLE {
            assert!(props.contains(&bug.violates()), "{}", bug.name());
            let found = counterexamples(bug, max_ballot, props);
            for p in props {
                assert!(
                    found.contains(p),
                    "{}: no counterexample for {p}",
                    bug.name()
                );
            }
        }
    }

    /// `cargo test --release -p paxos-model --lib lamport_bug_table -- --ignored --nocapture`:
    /// every property each bug violates, exhaustively (60 s cut), at max_ballot 0, 1 and 2;
    /// exactly the tabulated list at the tabulated max_ballot, at least that list above it.
    #[test]
    #[ignore = "exhaustive over every bug: run with --release --ignored --nocapture"]
    fn lamport_bug_table() {
        let limit = std::time::Duration::from_secs(60);
        for (bug, tabulated, expected) in BUG_TABLE {
            for max_ballot in 0..=2 {
                let c = LamportConfig {
                    bug: Some(bug),
                    ..cfg(3, 2, max_ballot)
                };
                let start = std::time::Instant::now();
                let checker = LamportModel::new(c)
                    .checker()
                    .finish_when(HasDiscoveries::AllFailures)
                    .timeout(limit)
                    .threads(2)
                    .spawn_dfs()
                    .join();
                let complete = start.elapsed() + std::time::Duration::from_secs(2) < limit;
                let found: BTreeSet<&str> = checker.discoveries().into_keys().collect();
                let violated: Vec<&str> = SAFETY_PROPERTIES
                    .iter()
                    .copied()
                    .filter(|p| found.contains(p))
                    .collect();
                let how = if complete {
                    "complete"
                } else {
                    "cut at the time limit"
                };
                eprintln!(
                    "{} max_ballot={max_ballot}: {:?} ({} unique states, {how}, {:.1?})",
                    bug.name(),
                    violated,
                    checker.unique_state_count(),
                    start.elapsed()
                );
                if max_ballot < tabulated {
                    assert!(!violated.contains(&bug.violates()), "{}", bug.name());
                } else if max_ballot == tabulated {
                    assert!(complete, "{}", bug.name());
                    assert_eq!(violated, expected.to_vec(), "{}", bug.name());
                } else {
                    assert!(
                        expected.iter().all(|p| violated.contains(p)),
                        "{}",
                        bug.name()
                    );
                }
            }
        }
    }

    // ---- rendering, parsing, configuration ------------------------------------------------

    /// Applies `actions` from the initial state, panicking if one is disabled.
    fn run(model: &LamportModel, actions: &[LamportAction]) -> Vec<LamportState> {
        let mut states = vec![model.initial_state()];
        for &a in actions {
            let last = *states.last().expect("non-empty");
            let mut enabled = Vec::new();
            model.actions(&last, &mut enabled);
            assert!(enabled.contains(&a), "{a:?} not enabled in {last:?}");
            states.push(
                model
                    .next_state(&last, a)
                    .expect("enabled action changes the state"),
            );
        }
        states
    }

    #[test]
    fn lamport_renders_steps_and_states() {
        use LamportAction::*;
        let model = LamportModel::new(cfg(3, 2, 2));
        let path = [
            Phase1a { bal: 0 },
            Phase1b { acc: 0, bal: 0 },
            Phase1b { acc: 1, bal: 0 },
            Phase2a { bal: 0, val: 1 },
            Phase2b {
                acc: 0,
                bal: 0,
                val: 1,
            },
            Phase2b {
                acc: 1,
                bal: 0,
                val: 1,
            },
            Phase1a { bal: 2 },
            Phase1b { acc: 0, bal: 2 },
        ];
        let states = run(&model, &path);
        let lines: Vec<String> = path
            .iter()
            .zip(states.windows(2))
            .map(|(a, w)| model.describe_step(&w[0], a, &w[1]))
            .collect();
        for l in &lines {
            eprintln!("{l}");
        }
        assert_eq!(lines[0], "leader of ballot 0 sends 1a(0)");
        assert_eq!(
            lines[1],
            "acceptor a1 receives 1a(0): max_bal -1 → 0, sends 1b(a1, 0, -1, none)"
        );
        assert_eq!(lines[3], "leader of ballot 0 sends 2a(0, v2)");
        assert_eq!(
            lines[4],
            "acceptor a1 receives 2a(0, v2): max_vbal -1 → 0, max_val none → v2, \
             sends 2b(a1, 0, v2)"
        );
        assert_eq!(
            lines[7],
            "acceptor a1 receives 1a(2): max_bal 0 → 2, sends 1b(a1, 2, 0, v2)"
        );
        let last = states.last().expect("non-empty");
        assert_eq!(model.chosen(last), vec![(0, 1)]);
        let debug = format!("{last:?}");
        eprintln!("{debug}\n{last:#?}");
        assert_eq!(
            debug,
            "LamportState { a1: maxBal=2 maxVBal=0 maxVal=v2; a2: maxBal=0 maxVBal=0 maxVal=v2; \
             a3: maxBal=-1 maxVBal=-1 maxVal=-; msgs: {1a(0), 1a(2), 1b(a1,0,-1,-), \
             1b(a2,0,-1,-), 1b(a1,2,0,v2), 2a(0,v2), 2b(a1,0,v2), 2b(a2,0,v2)} }"
        );
        assert!(format!("{last:#?}").contains("\n    a3: maxBal=-1 maxVBal=-1 maxVal=-\n"));
        assert_eq!(model.format_action(&path[4]), "Phase2b(a1) on 2a(0, v2)");
        assert_eq!(model.format_action(&path[3]), "Phase2a(0, v2)");
        let step = model.format_step(&states[0], path[0]).expect("enabled");
        assert!(
            step.starts_with("leader of ballot 0 sends 1a(0)\nLamportState {"),
            "{step}"
        );

        let json = model.state_json(last);
        assert_eq!(
            json["acceptors"][0],
            serde_json::json!({"max_bal": 2, "max_vbal": 0, "max_val": 1})
        );
        assert_eq!(json["acceptors"][2]["max_val"], serde_json::Value::Null);
        assert_eq!(json["msgs"].as_array().map(Vec::len), Some(8));
        assert_eq!(
            json["msgs"][4],
            serde_json::json!({"type": "1b", "acc": 0, "bal": 2, "mbal": 0, "mval": 1})
        );
        assert_eq!(
            model.action_json(&path[4]),
            serde_json::json!({"type": "Phase2b", "acc": 0, "bal": 0, "val": 1})
        );
        let back: LamportAction =
            serde_json::from_value(model.action_json(&path[4])).expect("round trip");
        assert_eq!(back, path[4]);
        assert_eq!(model.config_json()["bug"], serde_json::Value::Null);
        for m in last.messages() {
            assert!(last.contains(&m));
        }
        assert!(!last.contains(&LamportMsg::M2a { bal: 1, val: 0 }));
        assert!(!last.contains(&LamportMsg::M1a { bal: 9 }));
    }

    #[test]
    fn lamport_state_is_compact() {
        assert!(std::mem::size_of::<LamportState>() <= 64);
        assert!(std::mem::size_of::<LamportAction>() <= 4);
    }

    #[test]
    fn lamport_disabled_and_stuttering_actions_are_none() {
        use LamportAction::*;
        let model = LamportModel::new(cfg(3, 2, 1));
        let init = model.initial_state();
        assert_eq!(model.next_state(&init, Phase1b { acc: 0, bal: 0 }), None);
        assert_eq!(model.next_state(&init, Phase2a { bal: 0, val: 0 }), None);
        assert_eq!(
            model.next_state(
                &init,
                Phase2b {
                    acc: 0,
                    bal: 0,
                    val: 0
                }
            ),
            None
        );
        assert_eq!(model.next_state(&init, Phase1a { bal: 2 }), None);
        let s = run(&model, &[Phase1a { bal: 1 }, Phase1b { acc: 0, bal: 1 }]);
        let last = s[2];
        assert_eq!(
            model.next_state(&last, Phase1a { bal: 1 }),
            None,
            "re-sending 1a(1)"
        );
        assert_eq!(
            model.next_state(&last, Phase1b { acc: 0, bal: 1 }),
            None,
            "1b twice"
        );
        let s = run(
            &model,
            &[
                Phase1a { bal: 0 },
                Phase1b { acc: 0, bal: 0 },
                Phase1b { acc: 1, bal: 0 },
                Phase2a { bal: 0, val: 0 },
                Phase2b {
                    acc: 2,
                    bal: 0,
                    val: 0,
                },
            ],
        );
        let last = s[5];
        assert_eq!(
            model.next_state(&last, Phase2a { bal: 0, val: 1 }),
            None,
            "second 2a"
        );
        assert_eq!(
            model.next_state(
                &last,
                Phase2b {
                    acc: 2,
                    bal: 0,
                    val: 0
                }
            ),
            None,
            "re-vote"
        );
        assert!(model
            .next_state(
                &last,
                Phase2b {
                    acc: 0,
                    bal: 0,
                    val: 0
                }
            )
            .is_some());
    }

    #[test]
    fn lamport_bug_names_parse_and_config_validates() {
        for &bug in LamportBug::ALL {
            assert_eq!(bug.name().parse::<LamportBug>(), Ok(bug));
            assert_eq!(
                bug.name()["lamport-".len()..].parse::<LamportBug>(),
                Ok(bug)
            );
            assert_eq!(
                serde_json::to_value(bug).ok(),
                Some(serde_json::json!(bug.name()))
            );
            assert!(SAFETY_PROPERTIES.contains(&bug.violates()));
            assert!(!bug.description().is_empty());
        }
        let err = "nope".parse::<LamportBug>().expect_err("unknown");
        assert!(err.contains("lamport-phase2a-ignores-votes"), "{err}");
        assert!(LamportConfig::default().validate().is_ok());
        assert!(cfg(5, 3, 3).validate().is_ok());
        assert!(cfg(3, 2, 5).validate().is_ok());
        for (bad, needle) in [
            (cfg(0, 2, 1), "acceptors"),
            (cfg(6, 2, 1), "acceptors"),
            (cfg(3, 0, 1), "values"),
            (cfg(3, 4, 1), "values"),
            (cfg(3, 2, 16), "max_ballot"),
            (cfg(5, 3, 4), "possible messages"),
            (cfg(3, 2, 6), "possible messages"),
        ] {
            let err = bad.validate().expect_err("invalid");
            assert!(err.contains(needle), "{err}");
            assert!(LamportModel::try_new(bad).is_err());
        }
    }

    // ---- performance --------------------------------------------------------------------------

    /// `LAMPORT_BENCH=1,2,3 cargo test --release -p paxos-model --lib lamport_bench -- --ignored
    /// --nocapture`: unique and generated states and wall time with `spawn_dfs` on 2 threads
    /// (`LAMPORT_BENCH_THREADS` to change).
    #[test]
    #[ignore = "benchmark: run with --release --ignored --nocapture"]
    fn lamport_bench() {
        let list = std::env::var("LAMPORT_BENCH").unwrap_or_else(|_| "1,2,3".to_string());
        let threads = std::env::var("LAMPORT_BENCH_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2);
        for mb in list.split(',').filter_map(|s| s.trim().parse::<u8>().ok()) {
            let start = std::time::Instant::now();
            let checker = LamportModel::new(cfg(3, 2, mb))
                .checker()
                .threads(threads)
                .spawn_dfs()
                .join();
            let elapsed = start.elapsed();
            assert!(checker.is_done());
            checker.assert_properties();
            eprintln!(
                "lamport acceptors=3 values=2 max_ballot={mb} threads={threads}: unique={} \
                 generated={} max_depth={} time={:.2?}",
                checker.unique_state_count(),
                checker.state_count(),
                checker.max_depth(),
                elapsed
            );
        }
    }
}
