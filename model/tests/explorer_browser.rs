//! The web explorer as a person uses it: `paxos-model explore synod --bug default-value` opened
//! in headless Chromium through chromedriver, the counterexample's steps read off the page,
//! the violated property found in the final state, and the path stepped back and forth.
//!
//! Needs `chromedriver` and a Chromium or Chrome binary (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test prints why and passes, so
//! that `cargo nextest run` works on a bare toolchain. `PAXOS_CHROMEDRIVER` and
//! `PAXOS_CHROMIUM` name the binaries explicitly.
//!
//! The screenshot of the final state goes to `$CARGO_TARGET_TMPDIR/explorer.png`, or to
//! `specs/explorer.png` (shown in the README) with `PAXOS_UPDATE_SCREENSHOT=1`.
//!
//! Every wait has a deadline and the whole test has one, so a browser that hangs fails the test
//! instead of stalling CI; the explorer and chromedriver (with the browser it started) are
//! killed when their guards drop, whatever the outcome.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use paxos_model::explorer_view::Readable;
use paxos_model::synod::{self, SynodBug, SynodConfig};
use stateright::Model;

/// The bug whose counterexample is short enough to read on one screen (7 steps).
const BUG: &str = "default-value";
const PROPERTY: &str = "Validity";
/// Bounds each wait; generous because the machine may be busy building.
const WAIT: Duration = Duration::from_secs(30);
/// Bounds the whole test.
const WHOLE_TEST: Duration = Duration::from_secs(180);

const PATH_LINKS: &str = "ol.path-list > li > a";
const STATE_VIEW: &str = "section.main-flex-right div.font-small";
const DIAGRAM_COLUMNS: &str = "section.main-flex-right svg text.svg-actor-label";

#[test]
fn explorer_shows_a_counterexample_and_steps_through_it() {
    let Some(browser) = Browser::find() else {
        println!(
            "SKIPPED explorer_browser: no chromedriver and Chromium/Chrome found on PATH \
             (install them with `apt-get install chromium chromium-driver`, or point \
             PAXOS_CHROMEDRIVER and PAXOS_CHROMIUM at them)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(WHOLE_TEST, run(browser))
            .await
            .unwrap_or_else(|_| panic!("the browser test did not finish within {WHOLE_TEST:?}"))
    });
}

async fn run(browser: Browser) {
    let explorer = Explorer::start();
    let expected = expected_actions(&explorer.path);
    assert_eq!(
        expected.len(),
        explorer.steps,
        "the CLI's step count and its URL disagree"
    );

    let driver = ChromeDriver::start(&browser.chromedriver);
    let client = connect(&driver, &browser.chromium).await;
    let result = browse(&client, &explorer, &expected).await;
    // Closing the session lets chromedriver stop its browser cleanly; the guards kill
    // whatever is left either way.
    let _ = client.close().await;
    if let Err(message) = result {
        panic!("{message}");
    }
}

async fn browse(client: &Client, explorer: &Explorer, expected: &[String]) -> Result<(), String> {
    client
        .goto(&explorer.url)
        .await
        .map_err(|e| format!("opening {}: {e}", explorer.url))?;

    // The path list is "Pre-init", "Init 0", then one link per action of the counterexample.
    let labels = until("the counterexample's path to load", || async {
        let labels = link_texts(client).await?;
        (labels.len() == expected.len() + 2).then_some(labels)
    })
    .await?;
    assert_eq!(labels[..2], ["Pre-init", "Init 0"], "{labels:?}");
    assert_eq!(
        labels[2..],
        expected[..],
        "the path shows other steps than the counterexample"
    );
    let last = labels.len() - 1;
    assert_eq!(
        selected(client).await,
        Some(last),
        "the last step is not selected"
    );

    let final_view = state_view(client).await?;
    assert!(
        final_view.contains(&format!("✗ VIOLATED here: {PROPERTY}")),
        "the final state does not show that {PROPERTY} is violated:\n{final_view}"
    );
    // The Paxos view, not stateright's internal fields.
    for part in [
        "nodes:",
        "n0: Proposer p0",
        "Acceptor promised",
        "in flight",
        "history:",
    ] {
        assert!(
            final_view.contains(part),
            "no {part:?} in the state view:\n{final_view}"
        );
    }
    for noise in ["RandomChoices", "actor_states", "Some("] {
        assert!(
            !final_view.contains(noise),
            "{noise:?} in the state view:\n{final_view}"
        );
    }
    let mut columns = Vec::new();
    for label in client
        .find_all(Locator::Css(DIAGRAM_COLUMNS))
        .await
        .map_err(|e| format!("no sequence diagram: {e}"))?
    {
        columns.push(label.text().await.map_err(|e| e.to_string())?);
    }
    assert!(
        columns.iter().any(|c| c.ends_with("acceptor")),
        "the sequence diagram's columns do not name the roles: {columns:?}"
    );
    save_screenshot(client).await?;

    // Back to the third action: its state is before the violation.
    let back = 4;
    click_link(client, back).await?;
    let earlier_view = until("the selection to move back", || async {
        let view = state_view(client).await.ok()?;
        (selected(client).await == Some(back) && view != final_view).then_some(view)
    })
    .await?;
    assert!(
        earlier_view.contains("✓ all") && !earlier_view.contains("VIOLATED"),
        "step {} should satisfy every invariant:\n{earlier_view}",
        back - 1
    );
    let url = client.current_url().await.map_err(|e| e.to_string())?;
    assert!(
        url.as_str().contains("offset="),
        "stepping back did not change the URL: {url}"
    );

    // And forward again to the violation.
    click_link(client, last).await?;
    until("the selection to move forward again", || async {
        let view = state_view(client).await.ok()?;
        (selected(client).await == Some(last) && view == final_view).then_some(())
    })
    .await?;
    assert_eq!(
        link_texts(client).await,
        Some(labels),
        "stepping changed the path"
    );
    Ok(())
}

/// The labels the explorer gives the actions of `path` (`init/action/action/...`), computed
/// from the same model the CLI serves.
fn expected_actions(path: &str) -> Vec<String> {
    let model = Readable::new(synod::model(SynodConfig {
        bug: Some(SynodBug::DefaultValue),
        ..SynodConfig::default()
    }));
    let mut indices = path
        .split('/')
        .map(|i| i.parse::<usize>().expect("an index"));
    let init = indices.next().expect("an init index");
    let mut state = model.init_states().swap_remove(init);
    let mut labels = Vec::new();
    for index in indices {
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let action = actions.swap_remove(index);
        labels.push(model.format_action(&action));
        state = model.next_state(&state, action).expect("an enabled action");
    }
    labels
}

async fn link_texts(client: &Client) -> Option<Vec<String>> {
    let mut texts = Vec::new();
    for link in client.find_all(Locator::Css(PATH_LINKS)).await.ok()? {
        texts.push(link.text().await.ok()?);
    }
    Some(texts)
}

/// The index of the path link marked as the selected step.
async fn selected(client: &Client) -> Option<usize> {
    let links = client.find_all(Locator::Css(PATH_LINKS)).await.ok()?;
    for (i, link) in links.iter().enumerate() {
        let class = link.attr("class").await.ok()??;
        if class.split_whitespace().any(|c| c == "is-selected-state") {
            return Some(i);
        }
    }
    None
}

async fn click_link(client: &Client, index: usize) -> Result<(), String> {
    let links = client
        .find_all(Locator::Css(PATH_LINKS))
        .await
        .map_err(|e| e.to_string())?;
    links
        .get(index)
        .ok_or_else(|| format!("no path link {index}"))?
        .click()
        .await
        .map_err(|e| format!("clicking path link {index}: {e}"))
}

async fn state_view(client: &Client) -> Result<String, String> {
    client
        .find(Locator::Css(STATE_VIEW))
        .await
        .map_err(|e| format!("no state view: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())
}

async fn save_screenshot(client: &Client) -> Result<(), String> {
    let png = client.screenshot().await.map_err(|e| e.to_string())?;
    let path = if env::var_os("PAXOS_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/explorer.png")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer.png")
    };
    fs::write(&path, png).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("screenshot: {}", path.display());
    Ok(())
}

/// Polls `probe` until it yields a value, or fails naming `what` after [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {WAIT:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(driver: &ChromeDriver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"],
        }),
    );
    let url = format!("http://{}", driver.addr);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("starting a Chromium session through {url}: {e}"))
}

/// The binaries to drive.
struct Browser {
    chromedriver: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    fn find() -> Option<Self> {
        let chromedriver = from_env("PAXOS_CHROMEDRIVER").or_else(|| on_path(&["chromedriver"]))?;
        let chromium = from_env("PAXOS_CHROMIUM").or_else(|| {
            on_path(&[
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ])
        })?;
        Some(Browser {
            chromedriver,
            chromium,
        })
    }
}

fn from_env(name: &str) -> Option<PathBuf> {
    env::var_os(name).map(PathBuf::from)
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin"));
    env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A child process killed, with its whole process group, on drop.
struct Guard(Child);

impl Guard {
    /// Starts `command` in a process group of its own, so that what it starts (chromedriver
    /// starts the browser) dies with it.
    fn spawn(command: &mut Command) -> Self {
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        Guard(child)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `paxos-model explore synod --bug default-value` on a free loopback port.
struct Explorer {
    _process: Guard,
    /// The counterexample's URL, as printed.
    url: String,
    /// Its action-index path.
    path: String,
    /// Its length, as printed.
    steps: usize,
}

impl Explorer {
    fn start() -> Self {
        let mut process = Guard::spawn(
            Command::new(env!("CARGO_BIN_EXE_paxos-model"))
                .args(["explore", "synod", "--bug", BUG, "--addr", "127.0.0.1:0"])
                // stateright serves its UI from ./ui/ when that exists; keep it from finding one.
                .current_dir(env!("CARGO_TARGET_TMPDIR"))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdout = process.0.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut steps = None;
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).unwrap_or_else(|_| {
                panic!("paxos-model explore printed no Discovery URL within {WAIT:?}: {printed:?}")
            });
            printed.push(line.clone());
            if let Some(rest) =
                line.strip_prefix(&format!("Found a counterexample for {PROPERTY} in "))
            {
                steps = rest.strip_suffix(" steps.").and_then(|n| n.parse().ok());
            }
            if let Some(url) = line.strip_prefix("Discovery: ") {
                let path = url
                    .split_once("#/steps/")
                    .map(|(_, path)| path.to_string())
                    .unwrap_or_else(|| panic!("no #/steps/ path in {url}"));
                return Explorer {
                    _process: process,
                    url: url.to_string(),
                    path,
                    steps: steps.unwrap_or_else(|| panic!("no step count in {printed:?}")),
                };
            }
        }
    }
}

/// chromedriver on a free loopback port.
struct ChromeDriver {
    _process: Guard,
    addr: SocketAddr,
}

impl ChromeDriver {
    fn start(binary: &Path) -> Self {
        // chromedriver cannot report a port it picked, so take a free one and hand it over.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let process = Guard::spawn(
            Command::new(binary)
                .arg(format!("--port={}", addr.port()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {WAIT:?}",
                binary.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver {
            _process: process,
            addr,
        }
    }
}
