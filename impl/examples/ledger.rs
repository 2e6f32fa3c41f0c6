//! A replicated ledger: the node crate replicating a state machine of your own instead of the
//! key-value store.
//!
//! Three replicas run in this process, each with its own WAL in a temporary directory, and
//! talk over loopback TCP exactly as `paxos-node serve` replicas do. A client opens two
//! accounts, moves money between them, is refused an overdraft, and then every replica is
//! shown to hold the same balances.
//!
//! ```text
//! cargo run -p paxos-impl --example ledger
//! ```
//!
//! What a state machine must provide is [`StateMachine`]: a deterministic `apply` that never
//! panics on an operation a client can send, and a snapshot of its whole state. Operations and
//! outputs must be serde types (they cross the wire and the WAL).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use paxos_impl::multi::{ClientId, Command, StateMachine};
use paxos_impl::runtime::auth::PeerSecret;
use paxos_impl::runtime::config::{Auth, ClusterConfig};
use paxos_impl::runtime::node::ClientOutcome;
use paxos_impl::runtime::replicated::{Node, NodeHandle, NodeOptions};
use serde::{Deserialize, Serialize};

/// Account balances in cents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerOp {
    Open {
        account: String,
    },
    Deposit {
        account: String,
        cents: u64,
    },
    Transfer {
        from: String,
        to: String,
        cents: u64,
    },
    Balance {
        account: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerOutput {
    /// The account's balance after the operation.
    Balance(u64),
    /// Nothing changed, and why.
    Refused(String),
}

impl Ledger {
    fn balance(&self, account: &str) -> Result<u64, String> {
        self.accounts
            .get(account)
            .copied()
            .ok_or_else(|| format!("no account {account:?}"))
    }

    fn execute(&mut self, op: &LedgerOp) -> Result<u64, String> {
        match op {
            LedgerOp::Open { account } => {
                if self.accounts.contains_key(account) {
                    return Err(format!("account {account:?} exists"));
                }
                self.accounts.insert(account.clone(), 0);
                Ok(0)
            }
            LedgerOp::Deposit { account, cents } => {
                let balance = self.balance(account)?;
                let balance = balance
                    .checked_add(*cents)
                    .ok_or_else(|| format!("{account:?} would overflow"))?;
                self.accounts.insert(account.clone(), balance);
                Ok(balance)
            }
            LedgerOp::Transfer { from, to, cents } => {
                let paying = self.balance(from)?;
                let receiving = self.balance(to)?;
                if from == to {
                    return Ok(paying);
                }
                let paying = paying
                    .checked_sub(*cents)
                    .ok_or_else(|| format!("{from:?} holds {paying}, not {cents}"))?;
                let receiving = receiving
                    .checked_add(*cents)
                    .ok_or_else(|| format!("{to:?} would overflow"))?;
                self.accounts.insert(from.clone(), paying);
                self.accounts.insert(to.clone(), receiving);
                Ok(paying)
            }
            LedgerOp::Balance { account } => self.balance(account),
        }
    }
}

impl StateMachine for Ledger {
    type Op = LedgerOp;
    type Output = LedgerOutput;
    type Snapshot = BTreeMap<String, u64>;

    fn apply(&mut self, command: &Command<LedgerOp>) -> LedgerOutput {
        match self.execute(&command.op) {
            Ok(balance) => LedgerOutput::Balance(balance),
            Err(why) => LedgerOutput::Refused(why),
        }
    }

    fn query(&self, op: &LedgerOp) -> Option<LedgerOutput> {
        match op {
            LedgerOp::Balance { account } => Some(match self.balance(account) {
                Ok(balance) => LedgerOutput::Balance(balance),
                Err(why) => LedgerOutput::Refused(why),
            }),
            _ => None,
        }
    }

    fn snapshot(&self) -> Self::Snapshot {
        self.accounts.clone()
    }

    fn restore(&mut self, snapshot: Self::Snapshot) {
        self.accounts = snapshot;
    }
}

/// How long the client keeps trying one command (elections take a few hundred milliseconds).
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// A client that sends each command to the leader, following redirects, and retries with the
/// same `seq` (the replicas' client table executes a command once however often it arrives).
struct Client {
    id: ClientId,
    seq: u64,
    replicas: Vec<NodeHandle<Ledger>>,
    target: usize,
}

impl Client {
    async fn call(&mut self, op: LedgerOp) -> Result<LedgerOutput, String> {
        self.seq += 1;
        let command = Command {
            client: self.id,
            seq: self.seq,
            op,
        };
        let give_up = tokio::time::Instant::now() + COMMAND_DEADLINE;
        while tokio::time::Instant::now() < give_up {
            let replica = &self.replicas[self.target];
            match replica.submit(command.clone()).await {
                Ok(ClientOutcome::Done(output)) => return Ok(output),
                Ok(ClientOutcome::NotLeader {
                    leader: Some(leader),
                }) => {
                    self.target = self
                        .replicas
                        .iter()
                        .position(|r| r.id() == leader)
                        .ok_or_else(|| format!("leader {leader} is not a replica"))?;
                }
                Ok(ClientOutcome::Stale) => return Err("stale request".into()),
                Ok(ClientOutcome::NotLeader { leader: None }) | Err(_) => {
                    // No leader yet, or this replica dropped the command: ask the next one.
                    self.target = (self.target + 1) % self.replicas.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(format!("{command:?} not executed in {COMMAND_DEADLINE:?}"))
    }
}

/// `count` distinct free loopback ports, every listener held until all are chosen.
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Starts three replicas under `dir`, runs the client's story, and returns every replica's
/// balances once all have applied the same log.
async fn run(dir: &Path) -> Result<Vec<BTreeMap<String, u64>>, Box<dyn std::error::Error>> {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let ports = free_ports(6)?;
    let addresses = ports
        .chunks(2)
        .map(|pair| (loopback(pair[0]), loopback(pair[1])));
    let mut config = ClusterConfig::with_addresses("ledger", addresses);
    let secret_file = dir.join("cluster.secret");
    PeerSecret::generate().write_new(&secret_file)?;
    config.auth = Some(Auth { secret_file });

    let mut nodes = Vec::new();
    for id in 0..3 {
        let options = NodeOptions::new(config.clone(), id, dir.join(format!("replica-{id}")));
        nodes.push(Node::start(options, Ledger::default()).await?);
    }
    let replicas: Vec<_> = nodes.iter().map(Node::handle).collect();
    let mut client = Client {
        id: ClientId(1),
        seq: 0,
        replicas: replicas.clone(),
        target: 0,
    };
    let story = [
        LedgerOp::Open {
            account: "alice".into(),
        },
        LedgerOp::Open {
            account: "bob".into(),
        },
        LedgerOp::Deposit {
            account: "alice".into(),
            cents: 10_000,
        },
        LedgerOp::Transfer {
            from: "alice".into(),
            to: "bob".into(),
            cents: 2_500,
        },
        LedgerOp::Transfer {
            from: "bob".into(),
            to: "alice".into(),
            cents: 9_000,
        },
        LedgerOp::Balance {
            account: "bob".into(),
        },
    ];
    for op in story {
        let output = client.call(op.clone()).await?;
        println!("{op:?}\n    -> {output:?}");
    }

    // Followers apply a slot when they learn it is chosen: wait until every replica has
    // applied what the leader has.
    let give_up = tokio::time::Instant::now() + COMMAND_DEADLINE;
    let balances = loop {
        let mut states = Vec::new();
        for replica in &replicas {
            states.push(
                replica
                    .read_local(|ledger: &Ledger, applied| (applied, ledger.accounts.clone()))
                    .await?,
            );
        }
        if states.windows(2).all(|pair| pair[0] == pair[1]) {
            break states.into_iter().map(|(_, accounts)| accounts).collect();
        }
        if tokio::time::Instant::now() > give_up {
            return Err(format!("replicas still differ: {states:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(balances)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let balances = run(dir.path()).await?;
    for (id, accounts) in balances.iter().enumerate() {
        println!("replica {id}: {accounts:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_agree_on_the_ledger_and_refuse_the_overdraft() {
        let dir = tempfile::tempdir().expect("tempdir");
        let balances = run(dir.path()).await.expect("the story runs");
        let expected = BTreeMap::from([("alice".to_string(), 7_500), ("bob".to_string(), 2_500)]);
        assert_eq!(balances, vec![expected; 3]);
    }

    #[test]
    fn a_transfer_moves_money_or_nothing() {
        let mut ledger = Ledger::default();
        let open = |account: &str| LedgerOp::Open {
            account: account.into(),
        };
        assert_eq!(ledger.execute(&open("a")), Ok(0));
        assert!(ledger.execute(&open("a")).is_err());
        assert_eq!(ledger.execute(&open("b")), Ok(0));
        let deposit = LedgerOp::Deposit {
            account: "a".into(),
            cents: 5,
        };
        assert_eq!(ledger.execute(&deposit), Ok(5));
        let transfer = |cents| LedgerOp::Transfer {
            from: "a".into(),
            to: "b".into(),
            cents,
        };
        assert!(ledger.execute(&transfer(6)).is_err());
        assert_eq!(ledger.execute(&transfer(5)), Ok(0));
        let overflow = LedgerOp::Deposit {
            account: "b".into(),
            cents: u64::MAX,
        };
        assert!(ledger.execute(&overflow).is_err());
        assert_eq!(
            ledger.accounts,
            BTreeMap::from([("a".into(), 0), ("b".into(), 5)])
        );
    }
}
