//! The `paxos-node` command line: configuration errors, and `cluster` from start to Ctrl-C.
//! Real processes on 127.0.0.1; every test bounds its own run time.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paxos_impl::multi::KvOp;
use paxos_impl::runtime::client::{fetch_json, http_client, Client};

const EXE: &str = env!("CARGO_BIN_EXE_paxos-node");

#[test]
fn serve_refuses_a_bad_configuration_with_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cluster.toml");
    let nodes = r#"
        cluster_id = "t"
        [auth]
        secret_file = "missing.secret"
        [[nodes]]
        id = 0
        peer_addr = "127.0.0.1:1"
        client_addr = "127.0.0.1:2"
        [[nodes]]
        id = 0
        peer_addr = "127.0.0.1:3"
        client_addr = "127.0.0.1:4"
    "#;
    let cases = [
        (Some(nodes.to_string()), "0", "node id 0 appears twice"),
        (
            Some(nodes.replace(
                "id = 0\n        peer_addr = \"127.0.0.1:3\"",
                "id = 1\n        peer_addr = \"127.0.0.1:3\"",
            )),
            "7",
            "--id 7 is not a node",
        ),
        (
            Some("cluster_id = \"t\"\nnodes = []\nwindow = 3\n".to_string()),
            "0",
            "unknown field `window`",
        ),
        (None, "0", "cannot read"),
        (
            Some(nodes.replace("secret_file = \"missing.secret\"", "")),
            "0",
            "missing field `secret_file`",
        ),
        (
            Some(nodes.replace("[auth]\n        secret_file = \"missing.secret\"", "")),
            "0",
            "no [auth] section",
        ),
        (
            Some(nodes.replace(
                "id = 0\n        peer_addr = \"127.0.0.1:3\"",
                "id = 1\n        peer_addr = \"127.0.0.1:3\"",
            )),
            "1",
            "cannot read the cluster secret",
        ),
        (
            Some(
                nodes
                    .replace(
                        "id = 0\n        peer_addr = \"127.0.0.1:3\"",
                        "id = 1\n        peer_addr = \"127.0.0.1:3\"",
                    )
                    .replacen(
                        "[[nodes]]",
                        "[tls]\n        dir = \"nocerts\"\n        [[nodes]]",
                        1,
                    ),
            ),
            "1",
            "nocerts/ca.pem",
        ),
    ];
    for (text, id, expected) in cases {
        match &text {
            Some(text) => std::fs::write(&config, text).expect("write"),
            None => {
                let _ = std::fs::remove_file(&config);
            }
        }
        let output = Command::new(EXE)
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--id", id, "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn secret_writes_a_new_private_secret_and_never_overwrites_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.secret");
    let run = || {
        Command::new(EXE)
            .args(["secret", "--out"])
            .arg(&path)
            .output()
            .expect("run")
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let secret = std::fs::read_to_string(&path).expect("secret");
    assert_eq!(secret.trim().len(), 64, "{secret}");
    let second = run();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&path).expect("secret"), secret);
}

#[test]
fn certs_issues_a_ca_and_one_certificate_per_replica_and_client_from_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        r#"
        cluster_id = "t"
        [auth]
        secret_file = "cluster.secret"
        [[nodes]]
        id = 0
        peer_addr = "10.0.0.1:7000"
        client_addr = "0.0.0.0:8000"
        [[nodes]]
        id = 4
        peer_addr = "127.0.0.1:7001"
        client_addr = "127.0.0.1:8001"
    "#,
    )
    .expect("config");
    let out = dir.path().join("certs");
    let run = |extra: &[&str]| {
        Command::new(EXE)
            .args(["certs", "--out"])
            .arg(&out)
            .arg("--config")
            .arg(&config)
            .args(extra)
            .output()
            .expect("run")
    };
    let first = run(&["--client", "ops:admin"]);
    assert!(first.status.success(), "{first:?}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ca.key",
            "ca.pem",
            "client-ops.key",
            "client-ops.pem",
            "node-0.key",
            "node-0.pem",
            "node-4.key",
            "node-4.pem"
        ]
    );
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("ca.pem") && stderr.contains("never overwritten"),
        "{stderr}"
    );
    let bad_role = run(&["--client", "ops:root"]);
    assert_eq!(bad_role.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("read, write or admin"));
}

/// A base port with `n` free consecutive ports after it, for the peer and client ranges.
fn free_range(n: u16) -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        if base > 60_000 {
            continue;
        }
        let all_free = (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
}

/// Interrupts the `cluster` process (which stops its replicas) if a test fails before it does.
struct ClusterGuard(std::process::Child);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while matches!(self.0.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cluster_starts_serves_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer_port = free_range(6);
    let client_port = peer_port + 3;
    let cluster = Command::new(EXE)
        .args([
            "--log-format",
            "json",
            "cluster",
            "--nodes",
            "3",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--peer-port", &peer_port.to_string()])
        .args(["--client-port", &client_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cluster");
    let mut guard = ClusterGuard(cluster);
    let cluster = &mut guard.0;
    let endpoints: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", client_port + i))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let served = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let http = http_client(Duration::from_secs(1)).expect("http");
            loop {
                let status = fetch_json::<serde_json::Value>(&http, &endpoints[0], "/status").await;
                if status.is_ok_and(|s| s["leader"].is_u64()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut client = Client::new(http, &endpoints, 5).expect("client");
            let put = KvOp::Put {
                key: "greeting".into(),
                value: "hello".into(),
            };
            client.execute(&put).await.expect("put");
            let get = KvOp::Get {
                key: "greeting".into(),
            };
            client.execute(&get).await.expect("get").value
        })
        .await
    });
    let interrupted = Command::new("kill")
        .args(["-INT", &cluster.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = cluster.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = cluster.kill();
            panic!("cluster did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(served.expect("served in time").as_deref(), Some("hello"));
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    if let Some(mut out) = cluster.stdout.take() {
        use std::io::Read;
        out.read_to_string(&mut stdout).expect("stdout");
    }
    assert!(stdout.contains("cluster stopped"), "{stdout}");
    for i in 0..3u16 {
        let port = client_port + i;
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still held"
        );
        let log = std::fs::read_to_string(dir.path().join(format!("node-{i}.log"))).expect("log");
        let first = log.lines().next().unwrap_or_default();
        let line: serde_json::Value = serde_json::from_str(first).expect("JSON log line");
        assert!(line["fields"].is_object(), "{first}");
        assert!(log.contains("write-ahead log closed"), "{log}");
    }
}
