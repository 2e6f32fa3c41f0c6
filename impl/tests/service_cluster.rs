//! End-to-end tests of `paxos-node`: real processes on 127.0.0.1 with temporary data
//! directories. Every test bounds its own run time, and the cluster tests run one at a time
//! (the machine is small; timing matters to elections).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use paxos_impl::multi::KvOp;
use paxos_impl::multi::Message;
use paxos_impl::runtime::auth::{self, PeerSecret, Transcript};
use paxos_impl::runtime::client::{fetch_json, fetch_metrics, http_client, Client, ClientError};
use paxos_impl::runtime::config::{ClusterConfig, ReadPolicy, Tls, LOOPBACK_SECRET_FILE};
use paxos_impl::runtime::http::LocalValue;
use paxos_impl::runtime::snapshot_transfer::SnapshotChunk;
use paxos_impl::runtime::tls::ensure_loopback_certs;
use paxos_impl::runtime::transport::UNREACHABLE_HOLD;
use paxos_impl::runtime::wire::{self, Hello, HelloProof, HelloReply, LeaseTerms, MAGIC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The key-value service's peer messages.
type PeerMsg = wire::PeerMsgOf<paxos_impl::multi::KvStore>;

const EXE: &str = env!("CARGO_BIN_EXE_paxos-node");

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `test` on a fresh runtime, failing it after `limit`.
fn bounded<F: std::future::Future<Output = ()>>(limit: Duration, test: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if tokio::time::timeout(limit, test).await.is_err() {
            panic!("test did not finish within {limit:?}");
        }
    });
}

/// `count` distinct free loopback ports. Every listener is held until all are chosen: one
/// dropped at once lets the kernel hand the same port out again (seen in CI: "address
/// 127.0.0.1:34615 is used twice").
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

struct TestCluster {
    dir: tempfile::TempDir,
    config: ClusterConfig,
    config_path: PathBuf,
    nodes: Vec<Option<Child>>,
}

impl TestCluster {
    fn start(n: u32) -> TestCluster {
        TestCluster::start_with(n, |_| {})
    }

    /// `n` nodes on a configuration that `configure` adjusts.
    fn start_with(n: u32, configure: impl FnOnce(&mut ClusterConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let ports = free_ports(2 * n as usize);
        let addresses = ports
            .chunks(2)
            .map(|pair| (loopback(pair[0]), loopback(pair[1])));
        let mut config = ClusterConfig::with_addresses("test", addresses);
        configure(&mut config);
        config.validate().expect("valid config");
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, config.to_toml().expect("toml")).expect("write config");
        PeerSecret::generate()
            .write_new(&dir.path().join(LOOPBACK_SECRET_FILE))
            .expect("write secret");
        if let Some(tls_config) = &config.tls {
            ensure_loopback_certs(&dir.path().join(&tls_config.dir), n).expect("certs");
        }
        let mut cluster = TestCluster {
            dir,
            config,
            config_path,
            nodes: Vec::new(),
        };
        for id in 0..n {
            let child = cluster.spawn(id);
            cluster.nodes.push(Some(child));
        }
        cluster
    }

    fn spawn(&self, id: u32) -> Child {
        self.spawn_configured(id, &self.config_path)
    }

    /// Node `id` started from another configuration file than its peers'.
    fn spawn_configured(&self, id: u32, config_path: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        Command::new(EXE)
            .args(["serve", "--config"])
            .arg(config_path)
            .args(["--id", &id.to_string(), "--seed", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn paxos-node")
    }

    fn endpoint(&self, id: u32) -> String {
        format!("http://{}", self.config.nodes[id as usize].client_addr)
    }

    fn endpoints(&self) -> Vec<String> {
        (0..self.config.nodes.len() as u32)
            .map(|id| self.endpoint(id))
            .collect()
    }

    fn kill9(&mut self, id: u32) {
        if let Some(mut child) = self.nodes[id as usize].take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    fn restart(&mut self, id: u32) {
        assert!(self.nodes[id as usize].is_none(), "node {id} is running");
        self.nodes[id as usize] = Some(self.spawn(id));
    }

    fn is_running(&mut self, id: u32) -> bool {
        let child = self.nodes[id as usize].as_mut();
        child.is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn data_dir(&self, id: u32) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn log(&self, id: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn status(http: &reqwest::Client, endpoint: &str) -> Option<serde_json::Value> {
    fetch_json(http, endpoint, "/status").await.ok()
}

/// Waits until every listed node answers `/status` and one of them leads; returns the leader.
async fn wait_for_leader(cluster: &TestCluster, ids: &[u32]) -> u32 {
    let http = http_client(Duration::from_secs(1)).expect("http");
    loop {
        let mut up = 0;
        let mut leader = None;
        for &id in ids {
            if let Some(s) = status(&http, &cluster.endpoint(id)).await {
                up += 1;
                if s["role"] == "leading" {
                    leader = Some(id);
                }
            }
        }
        if let (true, Some(leader)) = (up == ids.len(), leader) {
            return leader;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the node at `endpoint` has applied at least `slots` slots.
async fn wait_for_applied(http: &reqwest::Client, endpoint: &str, slots: u64) {
    loop {
        let applied = status(http, endpoint)
            .await
            .and_then(|s| s["applied"].as_u64());
        if applied.is_some_and(|a| a >= slots) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every WAL submission `endpoint` made is durable.
async fn wait_for_durable(http: &reqwest::Client, endpoint: &str) {
    loop {
        let undurable = status(http, endpoint)
            .await
            .and_then(|s| s["wal_submissions_undurable"].as_u64());
        if undurable == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn local(http: &reqwest::Client, endpoint: &str, key: &str) -> Option<LocalValue> {
    let url = format!("{endpoint}/v1/local/kv/{key}");
    let response = http.get(&url).send().await.ok()?;
    let value: serde_json::Value = response.json().await.ok()?;
    Some(LocalValue {
        value: value["value"].as_str().map(str::to_string),
        applied: value["applied"].as_u64()?,
    })
}

fn client(endpoints: &[String], id: u64) -> Client {
    let http = http_client(Duration::from_secs(2)).expect("http");
    Client::new(http, endpoints, id).expect("client")
}

#[test]
fn writes_are_acknowledged_and_readable_from_every_node() {
    let _serial = serial();
    bounded(Duration::from_secs(60), async {
        let mut cluster = TestCluster::start(3);
        wait_for_leader(&cluster, &[0, 1, 2]).await;
        let mut writer = client(&cluster.endpoints(), 1);
        for i in 0..20 {
            let op = KvOp::Put {
                key: format!("key{i}"),
                value: format!("value{i}"),
            };
            writer.execute(&op).await.expect("put acknowledged");
        }
        // Linearizable reads through each node in turn (followers redirect to the leader).
        for id in 0..3 {
            let mut reader = client(&[cluster.endpoint(id)], 100 + u64::from(id));
            for i in 0..20 {
                let reply = reader
                    .execute(&KvOp::Get {
                        key: format!("key{i}"),
                    })
                    .await
                    .expect("get");
                assert_eq!(reply.value, Some(format!("value{i}")), "via node {id}");
            }
        }
        // Every node's own state machine holds every write.
        let http = http_client(Duration::from_secs(1)).expect("http");
        for id in 0..3 {
            let endpoint = cluster.endpoint(id);
            loop {
                let value = local(&http, &endpoint, "key19").await;
                if value.and_then(|v| v.value).as_deref() == Some("value19") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for i in 0..20 {
                let value = local(&http, &endpoint, &format!("key{i}")).await;
                assert_eq!(value.and_then(|v| v.value), Some(format!("value{i}")));
            }
        }
        // Compare-and-swap and delete.
        let cas = |expected: &str, new: &str| KvOp::Cas {
            key: "key0".into(),
            expected: Some(expected.into()),
            new: Some(new.into()),
        };
        let swapped = writer.execute(&cas("value0", "next")).await.expect("cas");
        assert_eq!(swapped.swapped, Some(true));
        let refused = writer.execute(&cas("value0", "other")).await.expect("cas");
        assert_eq!(
            (refused.swapped, refused.value.as_deref()),
            (Some(false), Some("next"))
        );
        let deleted = writer
            .execute(&KvOp::Delete { key: "key0".into() })
            .await
            .expect("delete");
        assert_eq!(deleted.value.as_deref(), Some("next"));
        let gone = writer
            .execute(&KvOp::Get { key: "key0".into() })
            .await
            .expect("get");
        assert_eq!(gone.value, None);

        // A request above request_bytes_max is refused, and the service goes on.
        let huge = KvOp::Put {
            key: "huge".into(),
            value: "x".repeat(2 << 20),
        };
        let refused = writer.execute(&huge).await;
        assert!(
            matches!(refused, Err(ClientError::Refused { status: 413, .. })),
            "{refused:?}"
        );
        let after = writer.execute(&KvOp::Get { key: "huge".into() }).await;
        assert_eq!(after.expect("get after a refused request").value, None);

        // A retry with the same (client, seq) is executed once: replay seq 1 of client 1
        // (a put of key0) and see that key0 stays deleted.
        let body = serde_json::json!({"value": "value0", "client_id": 1, "seq": 1});
        let url = format!("{}/v1/kv/key0", cluster.endpoint(0));
        let leader_http = http_client(Duration::from_secs(2)).expect("http");
        let mut answer = leader_http.put(&url).json(&body).send().await.expect("put");
        if answer.status() == reqwest::StatusCode::TEMPORARY_REDIRECT {
            let location = answer.headers()["location"]
                .to_str()
                .expect("location")
                .to_string();
            answer = leader_http
                .put(&location)
                .json(&body)
                .send()
                .await
                .expect("put");
        }
        assert_eq!(
            answer.status(),
            reqwest::StatusCode::CONFLICT,
            "stale seq refused"
        );
        let still_gone = writer
            .execute(&KvOp::Get { key: "key0".into() })
            .await
            .expect("get");
        assert_eq!(still_gone.value, None);

        // Graceful SIGTERM: the node exits 0 and logs that its WAL is closed.
        let pid = cluster.nodes[2].as_ref().expect("running").id();
        let killed = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = cluster.nodes[2]
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                break exit;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(exit.success(), "exit status {exit:?}\n{}", cluster.log(2));
        assert!(cluster.log(2).contains("write-ahead log closed"));
    });
}

#[test]
fn leader_killed_under_load_fails_over_without_losing_acknowledged_writes() {
    let _serial = serial();
    bounded(Duration::from_secs(120), async {
        let mut cluster = TestCluster::start(3);
        let old_leader = wait_for_leader(&cluster, &[0, 1, 2]).await;
        let endpoints = cluster.endpoints();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<(String, String, Instant)>::new()));
        let mut writers = Vec::new();
        for w in 0..4u64 {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            let mut writer = client(&endpoints, 10 + w);
            writer.op_timeout = Duration::from_secs(15);
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (key, value) = (format!("w{w}-{n}"), format!("v{n}"));
                    let op = KvOp::Put {
                        key: key.clone(),
                        value: value.clone(),
                    };
                    if writer.execute(&op).await.is_ok() {
                        let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                        acked.push((key, value, Instant::now()));
                    }
                    n += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before_kill = acked.lock().unwrap_or_else(|e| e.into_inner()).len();
        assert!(before_kill > 0, "writes before the kill");
        cluster.kill9(old_leader);
        let killed_at = Instant::now();
        let survivors: Vec<u32> = (0..3).filter(|&id| id != old_leader).collect();
        let new_leader = wait_for_leader(&cluster, &survivors).await;
        assert_ne!(new_leader, old_leader);
        // Service continues: wait for writes acknowledged after the kill.
        let failover = loop {
            let first_after = acked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(_, _, at)| *at > killed_at)
                .map(|(_, _, at)| at.duration_since(killed_at));
            if let Some(failover) = first_after {
                break failover;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "failover: first write acknowledged {failover:?} after kill -9 of node {old_leader}"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("writer");
        }
        let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let after_kill = acked.iter().filter(|(_, _, at)| *at > killed_at).count();
        assert!(after_kill > 0);
        eprintln!(
            "{} writes acknowledged, {after_kill} after the kill",
            acked.len()
        );

        // No acknowledged write is lost: a linearizable read of each returns it.
        let survivor_endpoints: Vec<String> =
            survivors.iter().map(|&id| cluster.endpoint(id)).collect();
        let mut reader = client(&survivor_endpoints, 99);
        for (key, value, _) in &acked {
            let reply = reader
                .execute(&KvOp::Get { key: key.clone() })
                .await
                .expect("get");
            assert_eq!(
                reply.value.as_ref(),
                Some(value),
                "acknowledged write to {key} lost"
            );
        }

        // The killed node restarts from its WAL and catches up.
        let http = http_client(Duration::from_secs(1)).expect("http");
        let target = status(&http, &cluster.endpoint(new_leader))
            .await
            .expect("leader status")["applied"]
            .as_u64()
            .expect("applied");
        cluster.restart(old_leader);
        let restarted = cluster.endpoint(old_leader);
        wait_for_applied(&http, &restarted, target).await;
        for (key, value, _) in &acked {
            let local = local(&http, &restarted, key).await.expect("local read");
            assert_eq!(
                local.value.as_ref(),
                Some(value),
                "{key} on the restarted node"
            );
        }
        let log = cluster.log(old_leader);
        assert!(log.contains("replica started"), "{log}");
        assert!(cluster.is_running(old_leader));
    });
}

async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn hello(addr: SocketAddr, hello: &Hello) -> (TcpStream, HelloReply) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let frame = wire::encode(hello, 4096).expect("encode");
    stream.write_all(&frame).await.expect("write");
    let reply = read_reply(&mut stream).await;
    (stream, reply)
}

async fn read_reply(stream: &mut TcpStream) -> HelloReply {
    let payload = wire::read_frame(stream, 4096).await.expect("reply");
    wire::decode(&payload).expect("decode reply")
}

/// The dialler's half of the handshake with `secret`: the listener's proof must verify when
/// the secret is the cluster's; returns the connection and the listener's last word.
async fn handshake(
    addr: SocketAddr,
    good: &Hello,
    secret: &PeerSecret,
    listener_must_verify: bool,
) -> (TcpStream, HelloReply) {
    let (mut stream, reply) = hello(addr, good).await;
    let HelloReply::Challenge { nonce, proof } = reply else {
        panic!("a known peer was not challenged: {reply:?}");
    };
    let transcript = Transcript {
        cluster_id: &good.cluster_id,
        from: good.from,
        to: good.to,
        dialler_nonce: &good.nonce,
        listener_nonce: &nonce,
        lease: good.lease,
    };
    assert_eq!(
        secret.verify_listener(&transcript, &proof),
        listener_must_verify,
        "listener proof"
    );
    let answer = HelloProof {
        proof: secret.dialler_proof(&transcript),
    };
    stream
        .write_all(&wire::encode(&answer, 4096).expect("encode"))
        .await
        .expect("write");
    let last = read_reply(&mut stream).await;
    (stream, last)
}

/// A replica whose `[reads]` section differs from its peers' would grant less than a leader
/// trusts (or nothing): each end refuses the other at the handshake, so it is cut off, says
/// why, and the others serve on.
#[test]
fn a_replica_configured_for_other_lease_terms_is_cut_off() {
    let _serial = serial();
    bounded(Duration::from_secs(60), async {
        let mut cluster = TestCluster::start(3);
        wait_for_leader(&cluster, &[0, 1, 2]).await;
        cluster.kill9(2);
        let mut leased = cluster.config.clone();
        leased.reads.policy = ReadPolicy::Lease;
        let leased_path = cluster.dir.path().join("leased.toml");
        std::fs::write(&leased_path, leased.to_toml().expect("toml")).expect("write config");
        cluster.nodes[2] = Some(cluster.spawn_configured(2, &leased_path));

        let http = http_client(Duration::from_secs(1)).expect("http");
        let refused = "paxos_peer_handshakes_refused_total";
        let endpoint = cluster.endpoint(0);
        while metric(&http, &endpoint, refused).await < 1.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while !cluster
            .log(2)
            .contains("every replica needs the same [reads] section")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The two that agree still choose writes, and node 2 learns none of them.
        let mut writer = client(&cluster.endpoints()[..2], 1);
        for i in 0..5 {
            let op = KvOp::Put {
                key: format!("key{i}"),
                value: format!("value{i}"),
            };
            writer.execute(&op).await.expect("put acknowledged");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = local(&http, &cluster.endpoint(2), "key4").await;
        assert_eq!(seen.and_then(|v| v.value), None);
        assert!(metric(&http, &cluster.endpoint(2), refused).await >= 1.0);
    });
}

/// With `[tls]`, replicas talk mutual TLS: the cluster serves, and a replica whose
/// certificate is from another CA, or is another replica's, is refused at the handshake
/// (each end says why) while the others serve on.
#[test]
fn replicas_over_tls_serve_and_refuse_a_stranger_and_a_borrowed_certificate() {
    let _serial = serial();
    bounded(Duration::from_secs(60), async {
        let mut cluster = TestCluster::start_with(3, |config| {
            config.tls = Some(Tls {
                dir: PathBuf::from("certs"),
            });
        });
        wait_for_leader(&cluster, &[0, 1, 2]).await;
        let mut writer = client(&cluster.endpoints(), 1);
        let put = |i: u32| KvOp::Put {
            key: format!("key{i}"),
            value: format!("value{i}"),
        };
        for i in 0..5 {
            writer.execute(&put(i)).await.expect("put over TLS");
        }
        let http = http_client(Duration::from_secs(1)).expect("http");
        wait_for_applied(&http, &cluster.endpoint(2), 5).await;

        let refused = "paxos_peer_handshakes_refused_total";
        // A plaintext handshake, and garbage, on a TLS port: closed, and counted.
        let target = cluster.config.nodes[0].peer_addr;
        for bytes in [
            wire::encode(
                &Hello {
                    magic: MAGIC,
                    cluster_id: "test".into(),
                    from: 2,
                    to: 0,
                    nonce: auth::nonce(),
                    lease: LeaseTerms::default(),
                },
                4096,
            )
            .expect("encode"),
            vec![0x16, 0x03, 0x01, 0xFF, 0xFF, 0, 1, 2, 3],
        ] {
            let mut stream = TcpStream::connect(target).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            assert!(closed_by_peer(&mut stream).await, "not refused: {bytes:?}");
        }
        assert!(metric(&http, &cluster.endpoint(0), refused).await >= 2.0);
        let others = [cluster.endpoint(0), cluster.endpoint(1)];
        let refusals = |counts: Vec<f64>| counts.iter().sum::<f64>();
        let mut before = Vec::new();
        for endpoint in &others {
            before.push(metric(&http, endpoint, refused).await);
        }
        let before = refusals(before);
        // Replica 2 restarted with certificates from another CA (every file of its own).
        cluster.kill9(2);
        let stranger = cluster.dir.path().join("stranger");
        ensure_loopback_certs(&stranger, 3).expect("certs");
        let mut config = cluster.config.clone();
        config.tls = Some(Tls { dir: stranger });
        let path = cluster.dir.path().join("stranger.toml");
        std::fs::write(&path, config.to_toml().expect("toml")).expect("write config");
        cluster.nodes[2] = Some(cluster.spawn_configured(2, &path));
        loop {
            let mut now = Vec::new();
            for endpoint in &others {
                now.push(metric(&http, endpoint, refused).await);
            }
            if refusals(now) > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve_without_2(&cluster, &mut writer, 5..8).await;

        // Replica 2 restarted holding replica 1's certificate and key as its own.
        cluster.kill9(2);
        let borrowed = cluster.dir.path().join("borrowed");
        std::fs::create_dir(&borrowed).expect("dir");
        let certs = cluster.dir.path().join("certs");
        std::fs::copy(certs.join("ca.pem"), borrowed.join("ca.pem")).expect("copy");
        std::fs::copy(certs.join("node-1.pem"), borrowed.join("node-2.pem")).expect("copy");
        std::fs::copy(certs.join("node-1.key"), borrowed.join("node-2.key")).expect("copy");
        config.tls = Some(Tls { dir: borrowed });
        std::fs::write(&path, config.to_toml().expect("toml")).expect("write config");
        cluster.nodes[2] = Some(cluster.spawn_configured(2, &path));
        while !cluster.log(0).contains("claims to be replica 2") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve_without_2(&cluster, &mut writer, 8..10).await;
    });
}

/// Writes keys `keys` through replicas 0 and 1, and checks replica 2 (refused by both)
/// learns none of them.
async fn serve_without_2(cluster: &TestCluster, writer: &mut Client, keys: std::ops::Range<u32>) {
    let last = keys.end - 1;
    for i in keys {
        let op = KvOp::Put {
            key: format!("key{i}"),
            value: format!("value{i}"),
        };
        writer.execute(&op).await.expect("the others serve on");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = http_client(Duration::from_secs(1)).expect("http");
    let seen = local(&http, &cluster.endpoint(2), &format!("key{last}")).await;
    assert_eq!(seen.and_then(|v| v.value), None, "replica 2 learns nothing");
}

#[test]
fn garbage_frames_and_strangers_are_refused_without_harm() {
    let _serial = serial();
    bounded(Duration::from_secs(60), async {
        let mut cluster = TestCluster::start(3);
        wait_for_leader(&cluster, &[0, 1, 2]).await;
        let target = cluster.config.nodes[1].peer_addr;

        // A length far above the maximum.
        let mut stream = TcpStream::connect(target).await.expect("connect");
        stream
            .write_all(&[0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3])
            .await
            .expect("write");
        assert!(closed_by_peer(&mut stream).await, "huge length not refused");

        // A plausible length, garbage payload, as the handshake.
        let mut stream = TcpStream::connect(target).await.expect("connect");
        let garbage = wire::frame(&[0xFF; 32], 4096).expect("frame");
        stream.write_all(&garbage).await.expect("write");
        assert!(
            closed_by_peer(&mut stream).await,
            "garbage handshake not refused"
        );

        // An unknown node, another cluster, the wrong target.
        let good = Hello {
            magic: MAGIC,
            cluster_id: "test".into(),
            from: 2,
            to: 1,
            nonce: auth::nonce(),
            lease: LeaseTerms::default(),
        };
        let strangers = [
            Hello {
                from: 99,
                ..good.clone()
            },
            Hello {
                cluster_id: "other".into(),
                ..good.clone()
            },
            Hello {
                to: 0,
                ..good.clone()
            },
            // A member configured for leases its peers do not grant.
            Hello {
                lease: LeaseTerms {
                    lease_ms: 200,
                    margin_ms: 4,
                },
                ..good.clone()
            },
        ];
        for stranger in &strangers {
            let (mut stream, reply) = hello(target, stranger).await;
            assert!(
                matches!(reply, HelloReply::Refused(_)),
                "{stranger:?} got {reply:?}"
            );
            assert!(closed_by_peer(&mut stream).await);
        }

        // A member's name without the cluster's secret: challenged, then refused.
        let wrong = PeerSecret::new(vec![b'x'; auth::SECRET_BYTES_MIN]).expect("secret");
        let (mut stream, reply) = handshake(target, &good, &wrong, false).await;
        assert!(
            matches!(&reply, HelloReply::Refused(r) if r.contains("failed to prove")),
            "{reply:?}"
        );
        assert!(closed_by_peer(&mut stream).await);

        // A replayed proof: a new connection gets a new challenge, the old proof fails.
        let secret =
            PeerSecret::read(&cluster.dir.path().join(LOOPBACK_SECRET_FILE)).expect("secret");
        let (mut stream, first) = hello(target, &good).await;
        let HelloReply::Challenge { nonce, .. } = first else {
            panic!("not challenged: {first:?}");
        };
        drop(stream);
        let stale = secret.dialler_proof(&Transcript {
            cluster_id: "test",
            from: 2,
            to: 1,
            dialler_nonce: &good.nonce,
            listener_nonce: &nonce,
            lease: good.lease,
        });
        (stream, _) = hello(target, &good).await;
        stream
            .write_all(&wire::encode(&HelloProof { proof: stale }, 4096).expect("encode"))
            .await
            .expect("write");
        let reply = read_reply(&mut stream).await;
        assert!(matches!(reply, HelloReply::Refused(_)), "replay: {reply:?}");

        // A client speaking HTTP to the peer port is not a peer.
        let mut stream = TcpStream::connect(target).await.expect("connect");
        stream
            .write_all(b"POST /kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .expect("write");
        assert!(closed_by_peer(&mut stream).await, "HTTP on the peer port");

        // A welcome peer that then sends garbage loses only that connection.
        let (mut stream, reply) = handshake(target, &good, &secret, true).await;
        assert_eq!(reply, HelloReply::Welcome);
        let batch = vec![PeerMsg::Paxos(Message::Status { applied: 0 })];
        stream
            .write_all(&wire::encode(&batch, 4096).expect("encode"))
            .await
            .expect("write");
        stream.write_all(&garbage).await.expect("write");
        assert!(
            closed_by_peer(&mut stream).await,
            "garbage frame not refused"
        );

        // A welcome peer whose snapshot transfer fails its checksum: refused, and the node
        // keeps what it had (nothing installed).
        let (mut stream, reply) = handshake(target, &good, &secret, true).await;
        assert_eq!(reply, HelloReply::Welcome);
        let forged = PeerMsg::Paxos(Message::Snapshot {
            state: std::sync::Arc::new(paxos_impl::multi::AppliedState {
                applied: 1_000,
                state_machine: [("stolen".to_string(), "value".to_string())].into(),
                clients: Default::default(),
            }),
        });
        let bytes = postcard::to_stdvec(&forged).expect("encode");
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        for (offset, part) in [(0, head), (head.len(), tail)] {
            let chunk = PeerMsg::SnapshotChunk(SnapshotChunk {
                id: 1,
                total: bytes.len() as u64,
                checksum: crc32c::crc32c(&bytes) ^ 1,
                offset: offset as u64,
                bytes: part.to_vec(),
            });
            stream
                .write_all(&wire::encode(&vec![chunk], 4096).expect("encode"))
                .await
                .expect("write");
        }

        // The node still serves, and its metrics and log say what happened.
        assert!(cluster.is_running(1));
        let mut writer = client(&[cluster.endpoint(1)], 7);
        let op = KvOp::Put {
            key: "after".into(),
            value: "ok".into(),
        };
        writer.execute(&op).await.expect("put after the garbage");
        let read = writer
            .execute(&KvOp::Get {
                key: "after".into(),
            })
            .await
            .expect("get");
        assert_eq!(read.value.as_deref(), Some("ok"));
        // The transfer's frames are read on their own connection: wait for its verdict.
        while !cluster.log(1).contains("snapshot transfer refused") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let http = http_client(Duration::from_secs(1)).expect("http");
        let metrics: BTreeMap<String, f64> = fetch_metrics(&http, &cluster.endpoint(1))
            .await
            .expect("metrics")
            .into_iter()
            .collect();
        assert!(
            metrics["paxos_peer_handshakes_refused_total"] >= 4.0,
            "{metrics:?}"
        );
        assert!(
            metrics["paxos_peer_frames_rejected_total"] >= 1.0,
            "{metrics:?}"
        );
        let log = cluster.log(1);
        assert!(log.contains("node 99 is not a peer"), "{log}");
        assert!(log.contains("malformed frame from peer"), "{log}");
        assert!(log.contains("snapshot transfer refused"), "{log}");
        assert!(
            metrics["paxos_snapshot_transfers_refused_total"] >= 1.0,
            "{metrics:?}"
        );
        assert_eq!(
            metrics["paxos_snapshots_installed_total"], 0.0,
            "{metrics:?}"
        );
        let stolen = local(&http, &cluster.endpoint(1), "stolen").await;
        assert_eq!(stolen.and_then(|v| v.value), None);
    });
}

#[test]
fn five_replicas_keep_serving_with_two_down() {
    let _serial = serial();
    bounded(Duration::from_secs(90), async {
        let mut cluster = TestCluster::start(5);
        let leader = wait_for_leader(&cluster, &[0, 1, 2, 3, 4]).await;
        let mut writer = client(&cluster.endpoints(), 3);
        writer.op_timeout = Duration::from_secs(20);
        let put = |i: u32| KvOp::Put {
            key: format!("five{i}"),
            value: format!("v{i}"),
        };
        for i in 0..10 {
            writer.execute(&put(i)).await.expect("put");
        }
        let follower = (0..5).find(|&id| id != leader).expect("a follower");
        cluster.kill9(leader);
        cluster.kill9(follower);
        let survivors: Vec<u32> = (0..5)
            .filter(|&id| id != leader && id != follower)
            .collect();
        for i in 10..20 {
            writer
                .execute(&put(i))
                .await
                .expect("put with two replicas down");
        }
        let new_leader = wait_for_leader(&cluster, &survivors).await;
        assert!(survivors.contains(&new_leader));
        for i in 0..20 {
            let get = KvOp::Get {
                key: format!("five{i}"),
            };
            let reply = writer.execute(&get).await.expect("get");
            assert_eq!(reply.value, Some(format!("v{i}")));
        }
    });
}

/// The value of metric `name` at `endpoint` (0 if the node does not answer).
/// A counter's value at `endpoint` (0 when it has no sample). A fetch that fails is retried
/// for a few seconds, then fails the test: read as 0, a scrape that timed out on a loaded
/// machine made a counter look unchanged.
async fn metric(http: &reqwest::Client, endpoint: &str, name: &str) -> f64 {
    let mut attempts = 0;
    let metrics = loop {
        match fetch_metrics(http, endpoint).await {
            Ok(metrics) => break metrics,
            Err(e) if attempts >= 20 => panic!("no metrics from {endpoint}: {e}"),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    metrics
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0.0, |(_, v)| v)
}

/// Bytes of the WAL segments and snapshot files in `dir`.
fn storage_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_replica_down_while_the_others_snapshot_catches_up_by_snapshot() {
    let _serial = serial();
    bounded(Duration::from_secs(120), async {
        let interval = 50;
        let mut cluster = TestCluster::start_with(3, |config| {
            config.limits.snapshot_interval_slots = interval;
            config.limits.wal_segment_bytes_max = 8192;
            // Small chunks: a snapshot of ten keys and a client table takes several.
            config.limits.snapshot_chunk_bytes = 1024;
        });
        let leader = wait_for_leader(&cluster, &[0, 1, 2]).await;
        let behind = (leader + 1) % 3;
        let mut writer = client(&cluster.endpoints(), 7);
        writer.op_timeout = Duration::from_secs(20);
        // Few keys, many writes: the state stays small while the log would grow. The values
        // are long enough for the snapshot to span several chunks.
        let pad = ".".repeat(256);
        let put = |i: u64| KvOp::Put {
            key: format!("snap{}", i % 10),
            value: format!("v{i}{pad}"),
        };
        writer.execute(&put(0)).await.expect("put");
        cluster.kill9(behind);
        let writes = 16 * interval;
        let mut sizes = Vec::new();
        for i in 1..=writes {
            writer
                .execute(&put(i))
                .await
                .expect("put with one replica down");
            if i % (interval / 2) == 0 {
                sizes.push(storage_bytes(&cluster.data_dir(leader)));
            }
        }
        let http = http_client(Duration::from_secs(1)).expect("http");
        let leader_endpoint = cluster.endpoint(leader);
        let taken = metric(&http, &leader_endpoint, "paxos_snapshots_taken_total").await;
        assert!(
            taken >= 7.0,
            "the leader snapshots every {interval} slots: {taken}"
        );
        // The dead replica does not stop compaction: the leader's storage is a sawtooth (a
        // snapshot drops the log below the older one kept) whose peaks stay level, where an
        // uncompacted log would double from the first half of the writes to the second.
        let (early, late) = sizes.split_at(sizes.len() / 2);
        let peak = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
        assert!(
            2 * peak(late) < 3 * peak(early),
            "storage grows with writes although the log is compacted: {sizes:?}"
        );
        // Nor does it hold the leader's memory: once it has been away longer than the
        // transport's hold, what the leader had for it is discarded, not queued to be flushed
        // at it (ahead of the snapshot) when it returns.
        let deadline = Instant::now() + 2 * UNREACHABLE_HOLD + Duration::from_secs(5);
        loop {
            let unreachable = metric(
                &http,
                &leader_endpoint,
                "paxos_peer_messages_unreachable_total",
            )
            .await;
            if unreachable >= writes as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the leader discards what it cannot send to the dead replica: {unreachable}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        cluster.restart(behind);
        let endpoint = cluster.endpoint(behind);
        let leader_applied = status(&http, &leader_endpoint)
            .await
            .expect("leader status")["applied"]
            .as_u64()
            .expect("applied");
        wait_for_applied(&http, &endpoint, leader_applied).await;
        let installed = metric(&http, &endpoint, "paxos_snapshots_installed_total").await;
        let now = status(&http, &endpoint).await;
        assert!(
            installed >= 1.0,
            "caught up by a snapshot: {installed}; leader {leader} applied {leader_applied}; \
             behind {behind}: {now:?}\n{}",
            cluster.log(behind)
        );
        let compacted = status(&http, &endpoint)
            .await
            .and_then(|s| s["compacted"].as_u64());
        assert!(
            compacted.is_some_and(|c| c >= interval),
            "/status shows the installed snapshot's compaction point: {compacted:?}"
        );
        // It came in chunks, and the copies the core asked for while one was on its way were
        // not sent again.
        let mut sent = 0.0;
        let mut transfers = 0.0;
        let mut asked = 0.0;
        for id in (0..3).filter(|&id| id != behind) {
            let e = cluster.endpoint(id);
            sent += metric(&http, &e, "paxos_snapshot_bytes_sent_total").await;
            transfers += metric(&http, &e, "paxos_snapshot_transfers_total").await;
            asked += metric(&http, &e, "paxos_snapshots_sent_total").await;
        }
        // The install counts when the core takes it; its bytes when the file is durable.
        let mut written = 0.0;
        while written == 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            written = metric(&http, &endpoint, "paxos_snapshot_bytes_written_total").await;
        }
        eprintln!(
            "snapshot: {written} bytes written, {sent} sent in {transfers} transfers for {asked} sends"
        );
        assert!(transfers >= 1.0, "no snapshot transfer: {transfers}");
        assert!(
            sent > 1024.0 && written > 1024.0,
            "the snapshot fits one chunk: {sent} bytes sent, {written} written"
        );
        assert!(
            transfers <= asked,
            "{transfers} transfers for {asked} sends"
        );
        for k in 0..10 {
            let value = local(&http, &endpoint, &format!("snap{k}")).await;
            let last_write = (writes - 9..=writes)
                .find(|i| i % 10 == k)
                .expect("a write");
            assert_eq!(
                value.and_then(|v| v.value),
                Some(format!("v{last_write}{pad}")),
                "snap{k} at the returned replica"
            );
        }
        // It restarts from its own snapshot, and the cluster goes on with it.
        cluster.kill9(behind);
        cluster.restart(behind);
        wait_for_applied(&http, &endpoint, leader_applied).await;
        assert!(
            cluster.log(behind).contains("snapshot_applied=Some"),
            "recovered from its snapshot:\n{}",
            cluster.log(behind)
        );
        cluster.kill9(leader);
        let others: Vec<u32> = (0..3).filter(|&id| id != leader).collect();
        wait_for_leader(&cluster, &others).await;
        writer
            .execute(&put(writes + 1))
            .await
            .expect("put after failover");
        let reply = writer
            .execute(&KvOp::Get {
                key: format!("snap{}", (writes + 1) % 10),
            })
            .await
            .expect("get");
        assert_eq!(reply.value, Some(format!("v{}{pad}", writes + 1)));
    });
}

/// WAL records written by every node of `cluster`.
async fn wal_records(http: &reqwest::Client, cluster: &TestCluster, n: u32) -> f64 {
    let mut total = 0.0;
    for id in 0..n {
        total += metric(http, &cluster.endpoint(id), "paxos_wal_records_total").await;
    }
    total
}

/// Writes `keys` keys, waits until every node applied them, then reads each key `rounds` times
/// through every node in turn; returns the WAL records the reads cost the cluster.
async fn records_written_by_reads(cluster: &TestCluster, keys: u64, rounds: u64) -> f64 {
    let http = http_client(Duration::from_secs(2)).expect("http");
    wait_for_leader(cluster, &[0, 1, 2]).await;
    let mut writer = client(&cluster.endpoints(), 1);
    for i in 0..keys {
        let op = KvOp::Put {
            key: format!("key{i}"),
            value: format!("value{i}"),
        };
        writer.execute(&op).await.expect("put acknowledged");
    }
    for id in 0..3 {
        wait_for_applied(&http, &cluster.endpoint(id), keys).await;
        // A replica applies a slot within the step that learns it chosen, before that step's
        // records are durable and counted: wait for them, or they count against the reads.
        wait_for_durable(&http, &cluster.endpoint(id)).await;
    }
    let before = wal_records(&http, cluster, 3).await;
    for id in 0..3 {
        let mut reader = client(&[cluster.endpoint(id)], 100 + u64::from(id));
        for _ in 0..rounds {
            for i in 0..keys {
                let get = KvOp::Get {
                    key: format!("key{i}"),
                };
                let reply = reader.execute(&get).await.expect("get");
                assert_eq!(reply.value, Some(format!("value{i}")), "via node {id}");
            }
        }
    }
    wal_records(&http, cluster, 3).await - before
}

#[test]
fn reads_write_nothing_under_the_read_index_or_a_lease_and_take_slots_under_the_log_policy() {
    let _serial = serial();
    bounded(Duration::from_secs(90), async {
        let http = http_client(Duration::from_secs(2)).expect("http");
        let cluster = TestCluster::start(3);
        let written = records_written_by_reads(&cluster, 5, 4).await;
        assert_eq!(written, 0.0, "read-index reads wrote WAL records");
        let leader = wait_for_leader(&cluster, &[0, 1, 2]).await;
        let endpoint = cluster.endpoint(leader);
        let answered = metric(&http, &endpoint, "paxos_reads_answered_total").await;
        let rounds = metric(&http, &endpoint, "paxos_read_rounds_total").await;
        assert!(answered >= 60.0, "{answered} reads answered");
        assert!((1.0..=answered).contains(&rounds), "{rounds} rounds");
        // A read needs no (client_id, seq) under the read index.
        let url = format!("{endpoint}/v1/kv/key0");
        let reply: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(reply["value"], "value0");
        let shown = status(&http, &endpoint).await.expect("status");
        assert_eq!(shown["read_policy"], "read-index");
        assert_eq!(
            metric(&http, &endpoint, "paxos_lease_reads_total").await,
            0.0
        );
        drop(cluster);

        // Leases: the same reads, most of them answered at arrival with no round (L5); the
        // first after each lease ends starts a round, whose confirmation is the next lease.
        let cluster = TestCluster::start_with(3, |config| {
            config.reads.policy = ReadPolicy::Lease;
        });
        let written = records_written_by_reads(&cluster, 5, 4).await;
        assert_eq!(written, 0.0, "lease reads wrote WAL records");
        let leader = wait_for_leader(&cluster, &[0, 1, 2]).await;
        let endpoint = cluster.endpoint(leader);
        let answered = metric(&http, &endpoint, "paxos_reads_answered_total").await;
        let leased = metric(&http, &endpoint, "paxos_lease_reads_total").await;
        assert!(answered >= 60.0, "{answered} reads answered");
        assert!(
            (1.0..=answered).contains(&leased),
            "{leased} of {answered} under a lease"
        );
        let shown = status(&http, &endpoint).await.expect("status");
        assert_eq!(shown["read_policy"], "lease");
        drop(cluster);

        let cluster = TestCluster::start_with(3, |config| {
            config.reads.policy = ReadPolicy::Log;
        });
        let written = records_written_by_reads(&cluster, 5, 4).await;
        // Each read is a slot: an Accept at each replica that votes, and its decision.
        assert!(written >= 60.0, "log reads wrote only {written} records");
        let leader = wait_for_leader(&cluster, &[0, 1, 2]).await;
        let url = format!("{}/v1/kv/key0", cluster.endpoint(leader));
        let answer = http.get(&url).send().await.expect("get");
        assert_eq!(answer.status(), reqwest::StatusCode::BAD_REQUEST);
        let body: serde_json::Value = answer.json().await.expect("json");
        assert_eq!(body["error"], "missing_tag");
    });
}
