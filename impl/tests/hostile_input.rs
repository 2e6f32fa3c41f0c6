//! Hostile and malformed input, generated: the peer frame decoder and handshake, the WAL reader
//! and the client HTTP API get arbitrary bytes and mutations of valid input. Each must answer
//! with an error (never a panic, never a wrong value), and a node that received garbage must
//! keep serving and lose nothing.
//!
//! Case counts are proptest's defaults (256) or less for the networked test; a longer fuzzing
//! run sets `PROPTEST_CASES` (`specs/results.md` records one):
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --release -p paxos-impl --test hostile_input
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use paxos_impl::multi::{ClientId, Command, Durable, Entry, KvOp, Message, Record};
use paxos_impl::runtime::auth::PeerSecret;
use paxos_impl::runtime::client::{http_client, Client};
use paxos_impl::runtime::config::{ClusterConfig, LOOPBACK_SECRET_FILE};
use paxos_impl::runtime::wire::{self, FrameError, Hello, HelloProof, HelloReply};
use paxos_impl::runtime::{serve, ServeOptions};
use paxos_impl::storage::{ReplicaLog, ReplicaLogOptions, WalOptions};
use paxos_impl::Ballot;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The key-value service's peer messages.
type PeerMsg = wire::PeerMsgOf<paxos_impl::multi::KvStore>;
use paxos_impl::runtime::snapshot_transfer::{SnapshotAck, SnapshotChunk};

const FRAME_MAX: u32 = 1 << 16;

/// The runtime the networked tests serve a cluster on.
fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn command(client: u64, seq: u64, key: &str, value: &str) -> Entry<KvOp> {
    Entry::Command(Command {
        client: ClientId(client),
        seq,
        op: KvOp::Put {
            key: key.into(),
            value: value.into(),
        },
    })
}

fn any_entry() -> impl Strategy<Value = Entry<KvOp>> {
    prop_oneof![
        Just(Entry::Noop),
        (0u64..4, 0u64..100, "[a-z]{0,6}", "[ -~]{0,24}")
            .prop_map(|(c, s, k, v)| command(c, s, &k, &v)),
    ]
}

fn any_ballot() -> impl Strategy<Value = Ballot> {
    (0u64..1_000, 0u32..5).prop_map(|(round, node)| Ballot { round, node })
}

fn any_peer_msg() -> impl Strategy<Value = PeerMsg> {
    prop_oneof![
        (
            any_ballot(),
            0u64..1_000,
            proptest::collection::vec(any_entry(), 0..4)
        )
            .prop_map(|(ballot, slot, entries)| PeerMsg::Paxos(Message::Accept {
                ballot,
                slot,
                entries
            })),
        (any_ballot(), 0u64..1_000, 0u64..8).prop_map(|(ballot, slot, count)| {
            PeerMsg::Paxos(Message::Accepted {
                ballot,
                slot,
                count,
            })
        }),
        (0u64..1_000, proptest::collection::vec(any_entry(), 0..4))
            .prop_map(|(slot, entries)| PeerMsg::Paxos(Message::Decide { slot, entries })),
        any_ballot().prop_map(|ballot| PeerMsg::Paxos(Message::Prepare { ballot, applied: 0 })),
        (0u64..1_000).prop_map(|applied| PeerMsg::Paxos(Message::Status { applied })),
        proptest::collection::vec((0u64..1_000, any_entry()), 0..4)
            .prop_map(|entries| PeerMsg::Paxos(Message::CatchUp { entries })),
        (
            0u64..1_000,
            proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4)
        )
            .prop_map(|(applied, state_machine)| {
                let state = std::sync::Arc::new(paxos_impl::multi::AppliedState {
                    applied,
                    state_machine,
                    clients: Default::default(),
                });
                PeerMsg::Paxos(Message::Snapshot { state })
            }),
        any_ballot().prop_map(|ballot| PeerMsg::Paxos(Message::Heartbeat { ballot })),
        (
            0u64..4,
            0u64..64,
            any::<u32>(),
            0u64..64,
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(id, total, checksum, offset, bytes)| {
                PeerMsg::SnapshotChunk(SnapshotChunk {
                    id,
                    total,
                    checksum,
                    offset,
                    bytes,
                })
            }),
        (0u64..4, 0u64..64)
            .prop_map(|(id, received)| PeerMsg::SnapshotAck(SnapshotAck { id, received })),
    ]
}

/// One edit of a byte string: flip, overwrite, insert, delete, truncate.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let at = |at: usize, len: usize| if len == 0 { 0 } else { at % len };
    match mutation {
        Mutation::Flip { at: i, bit } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Set { at: i, byte } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] = *byte;
        }
        Mutation::Insert { at: i, bytes: new } => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Remove { at: i, len } if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate { at: i } => {
            let i = at(*i, bytes.len() + 1);
            bytes.truncate(i);
        }
        _ => {}
    }
}

/// Every frame in `bytes`, decoded as the listener decodes them, until the first error.
async fn read_all(bytes: &[u8]) -> (Vec<Vec<PeerMsg>>, Option<FrameError>) {
    let mut reader = bytes;
    let mut batches = Vec::new();
    loop {
        match wire::read_frame(&mut reader, FRAME_MAX).await {
            Ok(payload) => match wire::decode::<Vec<PeerMsg>>(&payload) {
                Ok(batch) => batches.push(batch),
                Err(e) => return (batches, Some(e)),
            },
            Err(FrameError::Closed) => return (batches, None),
            Err(e) => return (batches, Some(e)),
        }
    }
}

proptest! {
    /// Arbitrary bytes as every kind of frame a peer can send: only errors, no panics.
    #[test]
    fn arbitrary_bytes_are_refused_as_frames_and_handshakes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        let (_, _) = block_on(read_all(&bytes));
        // The payload decoders on their own, without a length prefix to get past.
        let _ = wire::decode::<Vec<PeerMsg>>(&bytes);
        let _ = wire::decode::<Hello>(&bytes);
        let _ = wire::decode::<HelloReply>(&bytes);
        let _ = wire::decode::<HelloProof>(&bytes);
    }

    /// Valid batches of frames, then edited: whatever decodes before the damage is exactly
    /// what was sent; the damage itself is an error or a (different) well-formed message,
    /// never a panic.
    #[test]
    fn edited_frames_decode_to_what_was_sent_or_fail(
        batches in prop::collection::vec(prop::collection::vec(any_peer_msg(), 1..8), 1..4),
        mutations in prop::collection::vec(any_mutation(), 0..4),
    ) {
        let mut bytes = Vec::new();
        for batch in &batches {
            bytes.extend(wire::encode(batch, FRAME_MAX).expect("encode"));
        }
        let original = bytes.clone();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let (decoded, error) = block_on(read_all(&bytes));
        if bytes == original {
            prop_assert_eq!(&decoded, &batches);
            prop_assert!(error.is_none());
        }
        // Frames entirely before the first changed byte are intact.
        let first_change = bytes
            .iter()
            .zip(&original)
            .position(|(a, b)| a != b)
            .unwrap_or(bytes.len().min(original.len()));
        let mut end = 0;
        for (i, batch) in batches.iter().enumerate() {
            end += wire::encode(batch, FRAME_MAX).expect("encode").len();
            if end <= first_change {
                prop_assert_eq!(decoded.get(i), Some(batch));
            }
        }
    }

    /// A WAL written record by record, then damaged anywhere in any segment: reopening gives a
    /// corruption error or the fold of a prefix of what was written, never a record that was
    /// not written and never a panic.
    ///
    /// Damage is what disks do: flipped and overwritten bytes, torn or lost tails, garbage
    /// appended. Bytes spliced out of or into the middle of a segment are only required not
    /// to panic: a frame carries no index, so cutting out exactly one whole record leaves a
    /// well-formed log one record short (see `specs/results.md`, hostile input).
    #[test]
    fn a_damaged_wal_recovers_a_prefix_or_says_it_is_corrupt(
        records in prop::collection::vec(any_record(), 1..40),
        damage in prop::collection::vec((any::<usize>(), any_mutation()), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ReplicaLogOptions {
            wal: WalOptions { segment_bytes_max: 512, ..WalOptions::default() },
            ..ReplicaLogOptions::default()
        };
        {
            let (mut log, _) = ReplicaLog::<KvOp>::open(dir.path(), options.clone()).expect("open");
            for record in &records {
                log.append(std::slice::from_ref(record)).expect("append");
            }
            log.sync().expect("sync");
        }
        let segments = segment_files(dir.path());
        let spliced = damage
            .iter()
            .any(|(_, m)| matches!(m, Mutation::Insert { .. } | Mutation::Remove { .. }));
        for (which, mutation) in &damage {
            let path = &segments[which % segments.len()];
            let mut bytes = std::fs::read(path).expect("read segment");
            mutate(&mut bytes, mutation);
            std::fs::write(path, bytes).expect("write segment");
        }
        let reopened = ReplicaLog::<KvOp>::open(dir.path(), options);
        if let (Ok((_, recovered)), false) = (reopened, spliced) {
            let replayed = usize::try_from(recovered.records_replayed).expect("count");
            prop_assert!(replayed <= records.len());
            let prefix = Durable::from_records(records[..replayed].iter().cloned())
                .expect("the prefix of a log the core wrote folds");
            prop_assert_eq!(recovered.durable, prefix);
        }
    }
}

fn any_record() -> impl Strategy<Value = Record<KvOp>> {
    prop_oneof![
        (1u64..100).prop_map(Record::Round),
        any_ballot().prop_map(Record::Promise),
        (0u64..20, any_ballot(), any_entry()).prop_map(|(slot, ballot, entry)| Record::Accept {
            slot,
            ballot,
            entry
        }),
        (0u64..20, any_entry()).prop_map(|(slot, entry)| Record::Chosen { slot, entry }),
    ]
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    found.sort();
    found
}

/// A request the client API parser must survive: a well-formed HTTP/1.1 request with an
/// arbitrary method, path, query, content type and body, or raw bytes.
#[derive(Clone, Debug)]
enum Request {
    Http {
        method: String,
        path: String,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Raw(Vec<u8>),
}

fn percent_encoded(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|bytes| {
        bytes
            .iter()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"/-_.~?=&".contains(b) {
                    (*b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    let json_like = (
        prop::option::of("[ -~]{0,12}"),
        prop::option::of("[ -~]{0,12}"),
        any::<i128>(),
        any::<i128>(),
        any::<bool>(),
    )
        .prop_map(|(value, expected, client, seq, cas)| {
            let mut fields = serde_json::Map::new();
            if let Some(value) = value {
                fields.insert(if cas { "new" } else { "value" }.into(), value.into());
            }
            if let Some(expected) = expected {
                fields.insert("expected".into(), expected.into());
            }
            // Numbers out of u64's range, negative, or fine: each must be a clean 4xx or OK.
            let number = |n: i128| serde_json::Number::from_i128(n).map(serde_json::Value::Number);
            if let Some(n) = number(client) {
                fields.insert("client_id".into(), n);
            }
            if let Some(n) = number(seq) {
                fields.insert("seq".into(), n);
            }
            serde_json::to_vec(&fields).unwrap_or_default()
        });
    prop_oneof![
        json_like,
        prop::collection::vec(any::<u8>(), 0..256),
        Just(b"{\"value\":".to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
    ]
}

fn any_request() -> impl Strategy<Value = Request> {
    let method = prop::sample::select(vec!["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "X"]);
    let path = prop_oneof![
        percent_encoded(64).prop_map(|p| format!("/v1/kv/{p}")),
        percent_encoded(64).prop_map(|p| format!("/v1/cas/{p}")),
        (percent_encoded(16), any::<i64>(), any::<i64>())
            .prop_map(|(k, c, s)| format!("/v1/kv/{k}?client_id={c}&seq={s}")),
        percent_encoded(64).prop_map(|p| format!("/{p}")),
        Just("/status".to_string()),
        Just("/metrics".to_string()),
    ];
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json".to_string(),
        "text/plain".to_string(),
        "application/json; charset=utf-8".to_string(),
    ]));
    prop_oneof![
        4 => (method, path, content_type, any_body()).prop_map(
            |(method, path, content_type, body)| Request::Http {
                method: method.to_string(),
                path,
                content_type,
                body,
            }
        ),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Request::Raw),
    ]
}

impl Request {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Request::Raw(bytes) => bytes.clone(),
            Request::Http {
                method,
                path,
                content_type,
                body,
            } => {
                let mut head =
                    format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
                if let Some(ct) = content_type {
                    head.push_str(&format!("content-type: {ct}\r\n"));
                }
                head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(body);
                bytes
            }
        }
    }
}

/// Sends one request on its own connection; the status code of the answer, if any.
async fn send(addr: SocketAddr, request: &Request) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(&request.bytes()).await;
    if matches!(request, Request::Raw(_)) {
        // Raw bytes may be half a request; closing the write side ends it at once instead of
        // after the idle timeout. (A complete request is not half-closed: hyper drops the
        // answer to a request whose connection reads EOF.)
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    read.await
        .expect("the node answers or closes within 10 s")
        .ok()?;
    let line = answer.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A 3-replica cluster on loopback, served in this process; stopped at the end of the test.
struct InProcessCluster {
    leader_addr: SocketAddr,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

async fn in_process_cluster(tweak: impl FnOnce(&mut ClusterConfig)) -> InProcessCluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mut config = ClusterConfig::with_addresses("fuzz", (0..3).map(|_| (port(), port())));
    let secret = dir.path().join(LOOPBACK_SECRET_FILE);
    PeerSecret::generate().write_new(&secret).expect("secret");
    if let Some(auth) = config.auth.as_mut() {
        auth.secret_file = secret;
    }
    tweak(&mut config);
    config.validate().expect("valid configuration");
    let leader_addr = config.nodes[0].client_addr;
    let mut stop = Vec::new();
    let mut tasks = Vec::new();
    for id in 0..3 {
        let options = ServeOptions {
            config: config.clone(),
            id,
            data_dir: dir.path().join(format!("node-{id}")),
            seed: u64::from(id),
            seeded_bug: None,
            step_log: None,
            step_log_rotation: None,
            clock_drift_ppm: 0,
        };
        let (stop_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        stop.push(stop_tx);
        tasks.push(tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = serve(options, shutdown).await {
                panic!("node {id} stopped with an error: {e}");
            }
        }));
    }
    InProcessCluster {
        leader_addr,
        stop,
        tasks,
        _dir: dir,
    }
}

impl InProcessCluster {
    async fn stop(self) {
        for stop in self.stop {
            let _ = stop.send(());
        }
        for task in self.tasks {
            task.await.expect("no node task panicked");
        }
    }
}

/// A status the client API may give to any request: success, a redirect, a client error, or
/// "retry"; never an internal error.
fn acceptable(status: u16) -> bool {
    matches!(status, 200..=299 | 307 | 400..=499 | 503)
}

#[test]
fn the_client_api_answers_hostile_requests_with_client_errors_and_keeps_every_write() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(64);
    let runtime = multi_thread_runtime();
    let node = runtime.block_on(async {
        let node = in_process_cluster(|_| {}).await;
        let endpoint = node.leader_addr.to_string();
        let mut client = Client::new(
            http_client(Duration::from_secs(2)).expect("http"),
            &[endpoint],
            u64::MAX,
        )
        .expect("client");
        let put = KvOp::Put {
            key: "kept".into(),
            value: "before the garbage".into(),
        };
        tokio::time::timeout(Duration::from_secs(20), client.execute(&put))
            .await
            .expect("first write in time")
            .expect("first write");
        (node, client)
    });
    let (node, mut client) = node;
    let addr = node.leader_addr;

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let statuses = std::cell::RefCell::new(BTreeMap::<u16, u32>::new());
    let result = runner.run(&any_request(), |request| {
        let status = runtime.block_on(send(addr, &request));
        if let Some(status) = status {
            *statuses.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(acceptable(status), "status {} for {:?}", status, request);
        } else {
            // Only bytes that are not HTTP may go unanswered.
            prop_assert!(
                matches!(request, Request::Raw(_)),
                "no answer to {:?}",
                request
            );
        }
        Ok(())
    });
    eprintln!(
        "statuses over {cases} hostile requests: {:?}",
        statuses.borrow()
    );
    result.expect("every hostile request got a client error or success");

    runtime.block_on(async {
        let get = KvOp::Get { key: "kept".into() };
        let read = tokio::time::timeout(Duration::from_secs(20), client.execute(&get))
            .await
            .expect("read after the garbage in time")
            .expect("read after the garbage");
        assert_eq!(read.value.as_deref(), Some("before the garbage"));
        node.stop().await;
    });
}

/// Half a request, then silence (slowloris): the connection is closed once the idle limit
/// passes, and the node serves the next client.
#[test]
fn a_half_sent_request_is_closed_after_the_idle_timeout() {
    let runtime = multi_thread_runtime();
    runtime.block_on(async {
        let cluster = in_process_cluster(|config| {
            config.timing.request_timeout_ms = 250;
            config.timing.client_idle_timeout_ms = 500;
        })
        .await;
        let addr = cluster.leader_addr;
        let mut stream = loop {
            if let Ok(stream) = TcpStream::connect(addr).await {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stream
            .write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write half a request");
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        // Without the idle limit the server would wait for the rest forever.
        let _closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("closed within 10 s");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "closed too early: {waited:?}"
        );
        let status = Request::Http {
            method: "GET".into(),
            path: "/status".into(),
            content_type: None,
            body: Vec::new(),
        };
        assert_eq!(send(addr, &status).await, Some(200));
        cluster.stop().await;
    });
}
