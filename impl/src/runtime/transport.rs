//! Peer TCP transport: one outbound connection per peer (dialled, handshaken, re-dialled with
//! backoff) carrying this node's messages, and a listener accepting the peers' connections.
//!
//! ```text
//!   node task ──try_send──► bounded queue ──► outbound task ──frames──► peer's listener
//!                           (per peer)         batches up to frame_messages_max per frame
//!   peer's outbound ──frames──► inbound task ──► node inbox (bounded: backpressure to TCP)
//! ```
//!
//! Messages for a peer that cannot be reached wait in its queue for [`UNREACHABLE_HOLD`] (a
//! peer starting after us, a connection blip); once the peer has been out of reach longer, the
//! outbound task empties the queue after each failed dial and while waiting to dial again.
//! Kept, they would hold up to `peer_queue_messages_max` messages for a dead replica, entries
//! the leader has long compacted included, and be flushed at it when it returns — ahead of the
//! snapshot that answers its catch-up request (K6), so it would replay by log what one
//! snapshot covers. The protocol treats discarded messages, and a write that fails, as message
//! loss: retransmission and catch-up recover.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::auth::{self, PeerSecret, Transcript};
use super::config::ClusterConfig;
use super::metrics::{add, inc, Metrics};
use super::node::NodeEvent;
use super::replicated::{Payload, Replicated};
use super::snapshot_transfer::{AckSlot, Incoming, Outgoing, Received};
use super::tls::{self, Identity, TlsError};
use super::wire::{
    self, FrameError, Hello, HelloProof, HelloReply, LeaseTerms, PeerMsg, PeerMsgOf, MAGIC,
};
use crate::ballot::NodeId;
use crate::multi::{Message, SnapshotOf};

/// How long a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// First and largest delay between two dials of an unreachable peer.
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A snapshot whose last chunk went out is not sent to the same peer again for this long: the
/// copies the core sends meanwhile answer catch-up requests the peer made before it installed
/// the first (K6). A peer that lost it (it crashed, or refused it) asks again, and gets it
/// after this.
pub const SNAPSHOT_RESEND_AFTER: Duration = Duration::from_secs(1);
/// How long messages for a peer that cannot be reached are kept for it: a replica that starts
/// after us, or reconnects after a blip, gets what was sent meanwhile (the initial leader's
/// bootstrap round among it). Beyond that they are discarded: retransmission (R1) and catch-up
/// (K6) serve a peer that was away longer, and keeping them would hold memory for a dead
/// replica and delay, when it returns, the snapshot that catches it up.
pub const UNREACHABLE_HOLD: Duration = Duration::from_secs(1);
/// A handshake frame is small; anything longer is refused.
pub const HELLO_BYTES_MAX: u32 = 4096;

/// A peer connection: plain TCP, or TLS over it.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// Mutual TLS between replicas (`runtime::tls`): a replica dials a peer asking for that
/// peer's certificate, and accepts only diallers with a certificate from the cluster CA,
/// which must name the replica the dialler then claims to be. The secret handshake still
/// runs inside it: it also checks the cluster id and the lease terms, and a leaked CA key
/// alone does not let a stranger in.
#[derive(Clone)]
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl PeerTls {
    pub fn new(identity: &Identity) -> Result<PeerTls, TlsError> {
        Ok(PeerTls {
            connector: TlsConnector::from(Arc::new(identity.client_config()?)),
            acceptor: TlsAcceptor::from(Arc::new(identity.server_config()?)),
        })
    }
}

/// How peers prove they belong: the cluster secret, and TLS when the cluster has it.
#[derive(Clone)]
pub struct PeerAuth {
    pub secret: Arc<PeerSecret>,
    pub tls: Option<PeerTls>,
}

/// The node task's handle to one peer's outbound queue.
#[derive(Clone, Debug)]
pub struct PeerLink<Op, Snap> {
    pub id: NodeId,
    pub sender: mpsc::Sender<PeerMsg<Op, Snap>>,
    /// Whether the outbound connection is up (for `/status`).
    pub connected: Arc<AtomicBool>,
    /// Cuts the outbound task's backoff short: notified when the peer connects to us, which
    /// says it is back (a restarted replica then hears the leader's heartbeats at once,
    /// instead of timing out and disrupting it).
    pub wake: Arc<Notify>,
    /// The peer's latest acknowledgement of a snapshot transfer to it, which arrives on the
    /// peer's connection to us.
    pub acks: AckSlot,
}

/// Starts one outbound task per peer; returns their links and tasks.
pub fn start_outbound<Op: Payload, Snap: Payload>(
    config: &Arc<ClusterConfig>,
    auth: &PeerAuth,
    me: NodeId,
    metrics: &Arc<Metrics>,
) -> (Vec<PeerLink<Op, Snap>>, Vec<JoinHandle<()>>) {
    let mut links = Vec::new();
    let mut tasks = Vec::new();
    for peer in config.nodes.iter().filter(|n| n.id != me) {
        let (sender, receiver) = mpsc::channel(config.limits.peer_queue_messages_max);
        let connected = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let acks = AckSlot::default();
        let outbound = Outbound {
            acks: Arc::clone(&acks),
            transfer: None,
            transfer_sent: None,
            transfers: 0,
            wake: Arc::clone(&wake),
            config: Arc::clone(config),
            auth: auth.clone(),
            me,
            peer: peer.id,
            addr: peer.peer_addr,
            receiver,
            connected: Arc::clone(&connected),
            metrics: Arc::clone(metrics),
        };
        tasks.push(tokio::spawn(outbound.run()));
        links.push(PeerLink {
            id: peer.id,
            sender,
            connected,
            wake,
            acks,
        });
    }
    (links, tasks)
}

struct Outbound<Op, Snap> {
    config: Arc<ClusterConfig>,
    auth: PeerAuth,
    me: NodeId,
    peer: NodeId,
    addr: std::net::SocketAddr,
    receiver: mpsc::Receiver<PeerMsg<Op, Snap>>,
    connected: Arc<AtomicBool>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    acks: AckSlot,
    /// The snapshot being sent to this peer, in chunks, or the last one sent.
    transfer: Option<(Snap, Outgoing)>,
    /// When the last chunk of the transfer went out.
    transfer_sent: Option<std::time::Instant>,
    /// Transfers started, for their ids.
    transfers: u64,
}

impl<Op: Payload, Snap: Payload> Outbound<Op, Snap> {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        // Since when the peer has been out of reach: this task's start, or the loss of the
        // last connection.
        let mut unreachable_since = std::time::Instant::now();
        loop {
            match self.dial().await {
                Ok(stream) => {
                    tracing::info!(peer = self.peer, addr = %self.addr, "connected to peer");
                    backoff = BACKOFF_MIN;
                    self.connected.store(true, Ordering::Relaxed);
                    let result = self.pump(stream).await;
                    self.connected.store(false, Ordering::Relaxed);
                    unreachable_since = std::time::Instant::now();
                    match result {
                        Ok(()) => return, // the node task is gone: shutting down
                        Err(e) => {
                            tracing::warn!(peer = self.peer, error = %e, "peer connection lost")
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = self.peer, addr = %self.addr, error = %e, "cannot reach peer")
                }
            }
            let given_up = unreachable_since.elapsed() >= UNREACHABLE_HOLD;
            if given_up && self.discard_queued() {
                return;
            }
            let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
            let wait = tokio::time::sleep(backoff + Duration::from_millis(jitter));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = self.wake.notified() => {
                        backoff = BACKOFF_MIN;
                        break;
                    }
                    msg = self.receiver.recv(), if given_up => match msg {
                        Some(_) => inc(&self.metrics.peer_messages_unreachable),
                        None => return, // the node task is gone: shutting down
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Empties the queue of messages the peer could not be sent; true when the node task is
    /// gone.
    fn discard_queued(&mut self) -> bool {
        loop {
            match self.receiver.try_recv() {
                Ok(_) => inc(&self.metrics.peer_messages_unreachable),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Connects and handshakes: both ends prove they hold the cluster secret. Bounded in time,
    /// so that a host that does not answer (no refusal, no reply) is not waited on for the
    /// kernel's connect timeout while messages for it pile up.
    async fn dial(&self) -> Result<PeerStream, FrameError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            let mut stream: PeerStream = match &self.auth.tls {
                Some(tls) => {
                    let name = tls::replica_server_name(self.peer);
                    Box::new(tls.connector.connect(name, tcp).await?)
                }
                None => Box::new(tcp),
            };
            self.handshake(&mut stream).await?;
            Ok(stream)
        })
        .await
        .map_err(|_| FrameError::Malformed("connect and handshake timed out".into()))?
    }

    async fn handshake(&self, stream: &mut PeerStream) -> Result<(), FrameError> {
        let hello = Hello {
            magic: MAGIC,
            cluster_id: self.config.cluster_id.clone(),
            from: self.me,
            to: self.peer,
            nonce: auth::nonce(),
            lease: self.config.lease_terms(),
        };
        stream
            .write_all(&wire::encode(&hello, HELLO_BYTES_MAX)?)
            .await?;
        let listener_nonce = match self.reply(stream).await? {
            HelloReply::Challenge { nonce, proof } => {
                let transcript = transcript(&hello, &nonce);
                if !self.auth.secret.verify_listener(&transcript, &proof) {
                    tracing::error!(peer = self.peer, addr = %self.addr,
                        "the node at this address does not hold the cluster secret");
                    return Err(FrameError::Malformed(
                        "peer failed to prove the cluster secret".into(),
                    ));
                }
                nonce
            }
            other => return Err(unexpected(other)),
        };
        let proof = HelloProof {
            proof: self
                .auth
                .secret
                .dialler_proof(&transcript(&hello, &listener_nonce)),
        };
        stream
            .write_all(&wire::encode(&proof, HELLO_BYTES_MAX)?)
            .await?;
        match self.reply(stream).await? {
            HelloReply::Welcome => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn reply(&self, stream: &mut PeerStream) -> Result<HelloReply, FrameError> {
        let payload = wire::read_frame(stream, HELLO_BYTES_MAX).await?;
        let reply = wire::decode::<HelloReply>(&payload)?;
        if let HelloReply::Refused(reason) = &reply {
            tracing::error!(peer = self.peer, %reason, "peer refused our handshake");
        }
        Ok(reply)
    }

    /// Writes queued messages, several per frame when several are waiting, and the chunks of
    /// a snapshot transfer between them, one chunk per round. `Ok` when the queue closed
    /// (shutdown), `Err` when the connection failed.
    async fn pump(&mut self, mut stream: PeerStream) -> Result<(), FrameError> {
        let max_msgs = self.config.limits.frame_messages_max;
        let max_bytes = self.config.limits.frame_bytes_max;
        let chunk_bytes = self.config.limits.snapshot_chunk_bytes as usize;
        if let Some((_, transfer)) = &mut self.transfer {
            // What was sent on the lost connection and not acknowledged is gone with it.
            transfer.resume();
        }
        let mut batch = Vec::with_capacity(max_msgs);
        loop {
            self.take_ack();
            let sending = self
                .transfer
                .as_ref()
                .is_some_and(|(_, t)| !t.done() && t.has_more());
            batch.clear();
            if sending {
                match self.receiver.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        let _ = stream.shutdown().await;
                        return Ok(());
                    }
                }
            } else {
                let acks = Arc::clone(&self.acks);
                tokio::select! {
                    first = self.receiver.recv() => {
                        let Some(first) = first else {
                            let _ = stream.shutdown().await;
                            return Ok(());
                        };
                        batch.push(first);
                    }
                    // An acknowledgement may ask for chunks again.
                    _ = acks.arrived.notified() => continue,
                }
            }
            while batch.len() < max_msgs {
                match self.receiver.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            batch.retain(|msg| !self.start_transfer(msg));
            let (mut frames, errors) = wire::encode_batch(&batch, max_bytes);
            for error in errors {
                tracing::error!(peer = self.peer, %error, "message too large for a frame: dropped");
                inc(&self.metrics.peer_messages_dropped);
            }
            if let Some(frame) = self.next_chunk_frame(chunk_bytes, max_bytes)? {
                frames.push(frame);
            }
            let mut bytes = Vec::with_capacity(frames.iter().map(Vec::len).sum());
            for frame in &frames {
                bytes.extend_from_slice(frame);
                inc(&self.metrics.peer_frames_sent);
            }
            stream.write_all(&bytes).await?;
            if !batch.is_empty() {
                self.metrics.frame_messages.observe(batch.len() as f64);
            }
            let sent = batch.len() as u64;
            self.metrics
                .peer_messages_sent
                .fetch_add(sent, Ordering::Relaxed);
        }
    }

    /// Takes a `Snapshot` message out of the batch into a transfer (true), unless the same
    /// snapshot is being sent already; anything else stays (false).
    fn start_transfer(&mut self, msg: &PeerMsg<Op, Snap>) -> bool {
        let PeerMsg::Paxos(Message::Snapshot { state }) = msg else {
            return false;
        };
        // The same snapshot again, while it is on its way or just after it went out: the core
        // asked before the peer installed it.
        let recent = self
            .transfer_sent
            .is_some_and(|at| at.elapsed() < SNAPSHOT_RESEND_AFTER);
        let same = self
            .transfer
            .as_ref()
            .is_some_and(|(sending, t)| sending == state && (t.has_more() || recent));
        if same {
            inc(&self.metrics.snapshot_sends_coalesced);
            return true;
        }
        let encoded = postcard::to_stdvec(msg);
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(peer = self.peer, error = %e, "cannot encode a snapshot: dropped");
                return true;
            }
        };
        let max = self.config.limits.snapshot_bytes_max;
        if bytes.len() as u64 > max {
            tracing::error!(
                peer = self.peer,
                bytes = bytes.len(),
                max,
                "snapshot larger than limits.snapshot_bytes_max: not sent, the peer cannot catch \
                 up until the limit is raised"
            );
            inc(&self.metrics.snapshots_too_large);
            return true;
        }
        self.transfers += 1;
        let id = self.transfers;
        tracing::info!(
            peer = self.peer,
            id,
            bytes = bytes.len(),
            "snapshot transfer started"
        );
        inc(&self.metrics.snapshot_transfers);
        self.transfer = Some((state.clone(), Outgoing::new(id, bytes)));
        self.transfer_sent = None;
        true
    }

    /// Applies the peer's latest acknowledgement to the transfer.
    fn take_ack(&mut self) {
        let ack = self.acks.take();
        if let (Some(ack), Some((_, transfer))) = (ack, &mut self.transfer) {
            let was_done = transfer.done();
            transfer.on_ack(ack);
            if transfer.done() && !was_done {
                tracing::info!(peer = self.peer, id = ack.id, "snapshot transfer complete");
            }
        }
    }

    /// The transfer's next chunk as a frame of its own, if it has one to send.
    fn next_chunk_frame(
        &mut self,
        chunk_bytes: usize,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        let Some((_, transfer)) = &mut self.transfer else {
            return Ok(None);
        };
        let Some(chunk) = transfer.next_chunk(chunk_bytes) else {
            return Ok(None);
        };
        let len = chunk.bytes.len() as u64;
        if !transfer.has_more() {
            self.transfer_sent = Some(std::time::Instant::now());
        }
        // A sequence of one, as every frame after the handshake is (not an array: postcard
        // writes no length for those).
        let msgs: &[PeerMsg<Op, Snap>] = &[PeerMsg::SnapshotChunk(chunk)];
        let frame = wire::encode(msgs, max_bytes)?;
        add(&self.metrics.snapshot_bytes_sent, len);
        Ok(Some(frame))
    }
}

/// Accepts peers' connections until the task is aborted. `links` are this node's outbound
/// links: a peer that connects wakes the outbound task dialling it.
pub fn start_listener<S: Replicated>(
    listener: TcpListener,
    config: Arc<ClusterConfig>,
    auth: PeerAuth,
    me: NodeId,
    inbox: mpsc::Sender<NodeEvent<S>>,
    metrics: Arc<Metrics>,
    links: &[PeerLink<S::Op, SnapshotOf<S>>],
) -> JoinHandle<()> {
    let peers: Arc<Vec<LinkView<S>>> = Arc::new(
        links
            .iter()
            .map(|l| LinkView {
                id: l.id,
                wake: Arc::clone(&l.wake),
                // Weak: the node task's links alone keep the queues open, so that they close
                // (and the outbound tasks end) when it stops.
                sender: l.sender.downgrade(),
                acks: Arc::clone(&l.acks),
            })
            .collect(),
    );
    let transfers: Arc<Mutex<HashMap<NodeId, Incoming>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(BACKOFF_MIN).await;
                    continue;
                }
            };
            let inbound = Inbound {
                config: Arc::clone(&config),
                auth: auth.clone(),
                me,
                addr,
                inbox: inbox.clone(),
                metrics: Arc::clone(&metrics),
                peers: Arc::clone(&peers),
                transfers: Arc::clone(&transfers),
            };
            tokio::spawn(inbound.run(stream));
        }
    })
}

struct Inbound<S: Replicated> {
    config: Arc<ClusterConfig>,
    auth: PeerAuth,
    me: NodeId,
    addr: std::net::SocketAddr,
    inbox: mpsc::Sender<NodeEvent<S>>,
    metrics: Arc<Metrics>,
    peers: Arc<Vec<LinkView<S>>>,
    /// The snapshot transfer in progress from each peer: kept across its connections, so
    /// that one cut short resumes.
    transfers: Arc<Mutex<HashMap<NodeId, Incoming>>>,
}

/// What the listener needs of one outbound link.
struct LinkView<S: Replicated> {
    id: NodeId,
    wake: Arc<Notify>,
    sender: mpsc::WeakSender<PeerMsgOf<S>>,
    acks: AckSlot,
}

impl<S: Replicated> Inbound<S> {
    async fn run(self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let (mut stream, cert) = match self.accept_tls(tcp).await {
            Ok(accepted) => accepted,
            Err(e) => {
                inc(&self.metrics.peer_handshakes_refused);
                tracing::warn!(remote = %self.addr, error = %e, "peer connection refused at TLS");
                return;
            }
        };
        let from = match self.handshake(&mut stream, cert.as_ref()).await {
            Ok(from) => from,
            Err(e) => {
                inc(&self.metrics.peer_handshakes_refused);
                tracing::warn!(remote = %self.addr, error = %e, "peer connection refused at handshake");
                return;
            }
        };
        tracing::info!(peer = from, remote = %self.addr, "peer connected");
        if let Some(peer) = self.peers.iter().find(|p| p.id == from) {
            peer.wake.notify_one();
        }
        let max = self.config.limits.frame_bytes_max;
        loop {
            let msgs = match wire::read_frame(&mut stream, max).await {
                Ok(payload) => wire::decode::<Vec<PeerMsgOf<S>>>(&payload),
                Err(e) => Err(e),
            };
            let msgs = match msgs {
                Ok(msgs) => msgs,
                Err(FrameError::Closed) => {
                    tracing::info!(peer = from, "peer closed its connection");
                    return;
                }
                Err(e) => {
                    inc(&self.metrics.peer_frames_rejected);
                    tracing::error!(peer = from, remote = %self.addr, error = %e,
                        "malformed frame from peer: connection closed");
                    return;
                }
            };
            let received = msgs.len() as u64;
            self.metrics
                .peer_messages_received
                .fetch_add(received, Ordering::Relaxed);
            for msg in msgs {
                let msg = match msg {
                    PeerMsg::SnapshotChunk(chunk) => match self.on_chunk(from, chunk) {
                        Some(msg) => msg,
                        None => continue,
                    },
                    PeerMsg::SnapshotAck(ack) => {
                        if let Some(peer) = self.peers.iter().find(|p| p.id == from) {
                            peer.acks.put(ack);
                        }
                        continue;
                    }
                    msg @ PeerMsg::Paxos(_) => msg,
                };
                if self
                    .inbox
                    .send(NodeEvent::Peer { from, msg })
                    .await
                    .is_err()
                {
                    return; // the node is shutting down
                }
            }
        }
    }

    /// Adds a chunk to the transfer from `from`, acknowledges what is held, and returns the
    /// snapshot message once it is whole and its checksum holds.
    fn on_chunk(
        &self,
        from: NodeId,
        chunk: super::snapshot_transfer::SnapshotChunk,
    ) -> Option<PeerMsgOf<S>> {
        let max = self.config.limits.snapshot_bytes_max;
        let received = {
            let mut transfers = match self.transfers.lock() {
                Ok(transfers) => transfers,
                Err(poisoned) => poisoned.into_inner(),
            };
            transfers.entry(from).or_default().accept(chunk, max)
        };
        let (delivered, ack) = match received {
            Ok(Received::Partial(ack)) => (None, ack),
            Ok(Received::Complete(bytes, ack)) => match wire::decode::<PeerMsgOf<S>>(&bytes) {
                Ok(msg @ PeerMsg::Paxos(Message::Snapshot { .. })) => (Some(msg), ack),
                Ok(_) | Err(_) => {
                    inc(&self.metrics.snapshot_transfers_refused);
                    tracing::error!(
                        peer = from,
                        id = ack.id,
                        "a snapshot transfer does not hold a snapshot message: refused"
                    );
                    (None, ack)
                }
            },
            Err(e) => {
                inc(&self.metrics.snapshot_transfers_refused);
                tracing::error!(peer = from, error = %e, "snapshot transfer refused");
                (None, e.ack())
            }
        };
        let sender = self
            .peers
            .iter()
            .find(|p| p.id == from)
            .and_then(|p| p.sender.upgrade());
        if let Some(sender) = sender {
            // A full queue loses the ack; the next chunk's ack says the same and more.
            let _ = sender.try_send(PeerMsg::SnapshotAck(ack));
        }
        delivered
    }

    /// The TLS handshake, when the cluster has TLS, within [`HANDSHAKE_TIMEOUT`]: the stream
    /// and the dialler's certificate (verified against the cluster CA).
    async fn accept_tls(
        &self,
        tcp: TcpStream,
    ) -> Result<(PeerStream, Option<CertificateDer<'static>>), FrameError> {
        let Some(tls) = &self.auth.tls else {
            return Ok((Box::new(tcp), None));
        };
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp))
            .await
            .map_err(|_| FrameError::Malformed("no TLS handshake in time".into()))??;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned());
        Ok((Box::new(stream), cert))
    }

    /// Runs the listener's half of the handshake (`runtime::auth`) within
    /// [`HANDSHAKE_TIMEOUT`], and returns the peer's id if it proved the secret (and, with
    /// TLS, holds that replica's certificate).
    async fn handshake(
        &self,
        stream: &mut PeerStream,
        cert: Option<&CertificateDer<'static>>,
    ) -> Result<NodeId, FrameError> {
        let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.challenge(stream, cert))
            .await
            .map_err(|_| FrameError::Malformed("no handshake in time".into()))?;
        let refusal = match outcome {
            Ok(Ok(from)) => {
                stream
                    .write_all(&wire::encode(&HelloReply::Welcome, HELLO_BYTES_MAX)?)
                    .await?;
                return Ok(from);
            }
            Ok(Err(refusal)) => refusal,
            Err(e) => return Err(e),
        };
        let reply = HelloReply::Refused(refusal.clone());
        stream
            .write_all(&wire::encode(&reply, HELLO_BYTES_MAX)?)
            .await?;
        let _ = stream.shutdown().await;
        Err(FrameError::Malformed(refusal))
    }

    /// `Ok(Ok(peer))` when the dialler proved the secret, `Ok(Err(reason))` when it is to be
    /// told why not, `Err` when the connection itself failed or spoke nonsense.
    async fn challenge(
        &self,
        stream: &mut PeerStream,
        cert: Option<&CertificateDer<'static>>,
    ) -> Result<Result<NodeId, String>, FrameError> {
        let hello: Hello = wire::decode(&wire::read_frame(stream, HELLO_BYTES_MAX).await?)?;
        if let Some(reason) = self.refusal(&hello) {
            return Ok(Err(reason));
        }
        if let Some(cert) = cert {
            if let Err(e) = tls::check_replica(cert, hello.from) {
                return Ok(Err(e.to_string()));
            }
        }
        let nonce = auth::nonce();
        let challenge = HelloReply::Challenge {
            nonce,
            proof: self.auth.secret.listener_proof(&transcript(&hello, &nonce)),
        };
        stream
            .write_all(&wire::encode(&challenge, HELLO_BYTES_MAX)?)
            .await?;
        let proof: HelloProof = wire::decode(&wire::read_frame(stream, HELLO_BYTES_MAX).await?)?;
        if !self
            .auth
            .secret
            .verify_dialler(&transcript(&hello, &nonce), &proof.proof)
        {
            return Ok(Err(format!(
                "node {} failed to prove the cluster secret",
                hello.from
            )));
        }
        Ok(Ok(hello.from))
    }

    fn refusal(&self, hello: &Hello) -> Option<String> {
        if hello.magic != MAGIC {
            return Some(format!("bad magic {:?}", hello.magic));
        }
        if hello.cluster_id != self.config.cluster_id {
            return Some(format!(
                "cluster {:?} is not this cluster ({:?})",
                hello.cluster_id, self.config.cluster_id
            ));
        }
        if hello.to != self.me {
            return Some(format!("this is node {}, not node {}", self.me, hello.to));
        }
        if hello.from == self.me || self.config.node(hello.from).is_none() {
            return Some(format!("node {} is not a peer in this cluster", hello.from));
        }
        let ours: LeaseTerms = self.config.lease_terms();
        if hello.lease != ours {
            return Some(format!(
                "node {} is configured for {}, node {} for {}: every replica needs the same \
                 [reads] section (and [timing] election_timeout_min_ms, from which lease_ms \
                 defaults), or a leader could trust a lease its followers never granted",
                hello.from, hello.lease, self.me, ours
            ));
        }
        None
    }
}

fn transcript<'a>(hello: &'a Hello, listener_nonce: &'a auth::Nonce) -> Transcript<'a> {
    Transcript {
        cluster_id: &hello.cluster_id,
        from: hello.from,
        to: hello.to,
        dialler_nonce: &hello.nonce,
        listener_nonce,
        lease: hello.lease,
    }
}

fn unexpected(reply: HelloReply) -> FrameError {
    match reply {
        HelloReply::Refused(reason) => FrameError::Malformed(format!("refused: {reason}")),
        other => FrameError::Malformed(format!("unexpected handshake reply {other:?}")),
    }
}
