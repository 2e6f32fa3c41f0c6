//! Small, `Copy` protocol vocabulary shared by the message-passing models: ballots, values and
//! sets of node ids. Compact on purpose: every state the checker stores holds many of them.

use std::fmt;

use serde::{Deserialize, Serialize};
use stateright::actor::Id;
use stateright::{Rewrite, RewritePlan};

/// A ballot (proposal number) `(round, proposer)`, ordered lexicographically: unique per
/// proposer, and a proposer can always pick one above any it has seen.
///
/// The proposer is an actor index, never rewritten by symmetry reduction: proposers are not
/// interchangeable (each proposes its own value), so the models keep them out of the permuted
/// set (see [`crate::synod`]'s symmetry notes).
///
/// The round is a `u8` in the exhaustive checks (`R` by default); trace validation of real
/// runs counts rounds in `u64`, as the core does (`multi::Unbounded`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot<R = u8> {
    pub round: R,
    pub proposer: u8,
}

impl<R> Ballot<R> {
    pub fn new(round: R, proposer: usize) -> Self {
        let proposer = u8::try_from(proposer).expect("models have fewer than 256 nodes");
        Ballot { round, proposer }
    }
}

impl<R: fmt::Display> fmt::Debug for Ballot<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.proposer)
    }
}

impl<R: fmt::Display> fmt::Display for Ballot<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<R: Copy, P> Rewrite<P> for Ballot<R> {
    fn rewrite<S>(&self, _: &RewritePlan<P, S>) -> Self {
        *self
    }
}

/// A proposed value. Proposers' inputs are `v1..=vN`; `v0` is never an input, so a value that
/// appears from nowhere (an uninitialised default) is visible to the Validity property.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Value(pub u8);

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl<R> Rewrite<R> for Value {
    fn rewrite<S>(&self, _: &RewritePlan<R, S>) -> Self {
        *self
    }
}

/// A set of actor ids (at most 16 actors), e.g. the acceptors that promised a ballot.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdSet(u16);

impl IdSet {
    pub const CAPACITY: usize = 16;

    pub fn insert(&mut self, id: Id) {
        self.0 |= 1 << Self::bit(id);
    }

    pub fn with(mut self, id: Id) -> Self {
        self.insert(id);
        self
    }

    pub fn contains(&self, id: Id) -> bool {
        self.0 & (1 << Self::bit(id)) != 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Id> + '_ {
        (0..Self::CAPACITY)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(Id::from)
    }

    fn bit(id: Id) -> usize {
        let bit = usize::from(id);
        assert!(
            bit < Self::CAPACITY,
            "IdSet holds ids below {}",
            Self::CAPACITY
        );
        bit
    }
}

impl FromIterator<Id> for IdSet {
    fn from_iter<T: IntoIterator<Item = Id>>(iter: T) -> Self {
        let mut set = IdSet::default();
        for id in iter {
            set.insert(id);
        }
        set
    }
}

impl fmt::Debug for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (n, id) in self.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "n{}", usize::from(id))?;
        }
        f.write_str("}")
    }
}

impl Rewrite<Id> for IdSet {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        self.iter().map(|id| plan.rewrite(&id)).collect()
    }
}

/// The majorities of `members` with exactly `majority(members.len())` elements. Any majority
/// that satisfies an "exists a quorum" condition of the kind I1 states contains one of these
/// that does too, so checking these suffices.
pub fn minimal_majorities(members: &[Id]) -> Vec<IdSet> {
    let need = majority(members.len());
    let n = members.len();
    (0u32..(1 << n))
        .filter(|mask| mask.count_ones() as usize == need)
        .map(|mask| {
            (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| members[i])
                .collect()
        })
        .collect()
}

/// The size of the smallest majority of `n` nodes.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// A catalogue of seeded bugs. Every catalogue in the workspace (the models' seeded bugs, the
/// core's mutants, the service's seeded bugs) is an enum whose list (`VARIANTS`), names
/// (`IntoStaticStr`, kebab-case: the `--bug` argument) and one-line descriptions
/// (`#[strum(message)]`) strum derives, so no catalogue has a table written by hand.
pub trait BugCatalogue:
    Copy + Eq + strum::VariantArray + Into<&'static str> + strum::EnumMessage + 'static
{
    /// What the bugs are seeded into, for messages ("Synod").
    const SUBJECT: &'static str;
    /// A prefix every name carries, which `from_name` also accepts left out.
    const PREFIX: &'static str = "";

    /// Every bug, in declaration order.
    const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// The bug's name on the command line.
    fn name(self) -> &'static str {
        self.into()
    }

    /// One line saying what the bug changes.
    fn description(self) -> &'static str {
        self.get_message().unwrap_or_default()
    }

    /// The bug named `name` (with or without [`BugCatalogue::PREFIX`]), or an error that lists
    /// the known names.
    fn from_name(name: &str) -> Result<Self, String> {
        let name = name.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|bug| bug.name() == name || bug.name().strip_prefix(Self::PREFIX) == Some(name))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown {} bug '{name}'; known bugs: {}",
                    Self::SUBJECT,
                    names.join(", ")
                )
            })
    }
}

/// A catalogue's `Display`, `FromStr` and the `String` conversion its serde attributes use, so
/// that a bug is written and read as its `--bug` name.
macro_rules! bug_names {
    ($bug:ty) => {
        impl std::fmt::Display for $bug {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(crate::types::BugCatalogue::name(*self))
            }
        }

        impl TryFrom<String> for $bug {
            type Error = String;

            fn try_from(name: String) -> Result<Self, Self::Error> {
                <$bug as crate::types::BugCatalogue>::from_name(&name)
            }
        }

        impl std::str::FromStr for $bug {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$bug as crate::types::BugCatalogue>::from_name(s)
            }
        }
    };
}
pub(crate) use bug_names;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_proposer() {
        assert!(Ballot::new(1, 1) < Ballot::new(2, 0));
        assert!(Ballot::new(2, 0) < Ballot::new(2, 1));
    }

    #[test]
    fn minimal_majorities_of_three_and_five() {
        let three = Id::vec_from(2..5);
        assert_eq!(minimal_majorities(&three).len(), 3);
        assert!(minimal_majorities(&three).iter().all(|q| q.len() == 2));
        assert_eq!(minimal_majorities(&Id::vec_from(0..5)).len(), 10);
    }

    #[test]
    fn id_set_rewrites_through_the_plan() {
        let plan = RewritePlan::<Id, _>::from_values_to_sort(&vec![2, 1, 0]);
        let set = IdSet::default().with(Id::from(0));
        assert_eq!(set.rewrite(&plan), IdSet::default().with(Id::from(2)));
    }
}
