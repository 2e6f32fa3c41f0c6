//! The client API over HTTP/JSON.
//!
//! | method and path | body or query | answer |
//! |---|---|---|
//! | `PUT /v1/kv/{key}` | `{"value", "client_id", "seq"}` | `{"key", "value": previous, "node"}` |
//! | `GET /v1/kv/{key}` | `?client_id=&seq=` (policy `log` only) | `{"key", "value": current, "node"}` |
//! | `DELETE /v1/kv/{key}` | `?client_id=&seq=` | `{"key", "value": previous, "node"}` |
//! | `POST /v1/cas/{key}` | `{"expected", "new", "client_id", "seq"}` (null: absent) | `{"key", "value": previous, "swapped", "node"}` |
//! | `GET /v1/local/kv/{key}` | | this node's applied value, **not** linearizable (debugging) |
//! | `GET /status` | | role, ballot, leader, applied, peers, WAL counters |
//! | `GET /metrics` | | Prometheus text |
//!
//! Every answer is linearizable. Writes go through the log. Reads follow the cluster's
//! `[reads] policy`: `read-index` (the default) answers at the leader from its applied state
//! once a majority confirmed its ballot after the read arrived, writing nothing
//! (`specs/protocol.md`, Q1–Q5); `log` executes the read in a slot of its own, after every
//! write chosen before it. `(client_id, seq)` makes retries exactly-once: a client issues one request at a time with increasing `seq`, and
//! retries with the same `seq`. Errors: `307` with `Location` and `{"error": "not_leader",
//! "leader", "leader_url"}` from a follower; `503` (`no_leader`, `timeout`, `unavailable`) when
//! the client should retry, possibly elsewhere; `409` (`stale_request`) for a `seq` below the
//! client's last executed one.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::config::{ClusterConfig, ReadPolicy};
use super::node::{ClientOutcome, NodeStatus, ReadOutcome};
use super::replicated::{NodeHandle, Unanswered};
use crate::ballot::NodeId;
use crate::multi::{ClientId, Command, KvOp, KvOutput, KvStore, Slot};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ClusterConfig>,
    pub node: NodeHandle<KvStore>,
    pub seeded_bug: Option<super::SeededBug>,
}

/// The answer of `GET /v1/local/kv/{key}`: this replica's applied value, and how far it has
/// applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalValue {
    pub value: Option<String>,
    pub applied: Slot,
}

impl AppState {
    /// This replica's value for `key`, not linearizable.
    async fn local_value(&self, key: String) -> Result<LocalValue, Unanswered> {
        self.node
            .read_local(move |kv: &KvStore, applied| LocalValue {
                value: kv.data.get(&key).cloned(),
                applied,
            })
            .await
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientTag {
    pub client_id: u64,
    pub seq: u64,
}

/// The query of a read: a `(client_id, seq)` tag is needed only when reads go through the log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadTag {
    pub client_id: Option<u64>,
    pub seq: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutBody {
    pub value: String,
    pub client_id: u64,
    pub seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CasBody {
    pub expected: Option<String>,
    pub new: Option<String>,
    pub client_id: u64,
    pub seq: u64,
}

/// A successful answer. `value`: the current value for a get, the value before for put,
/// delete and cas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReply {
    pub key: String,
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
    /// The node that answered.
    pub node: NodeId,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = DefaultBodyLimit::max(state.config.limits.request_bytes_max);
    Router::new()
        .route("/v1/kv/{key}", put(put_key).get(get_key).delete(delete_key))
        .route("/v1/cas/{key}", post(cas_key))
        .route("/v1/local/kv/{key}", get(local_key))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .layer(body_limit)
        .with_state(state)
}

async fn put_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    uri: Uri,
    Json(body): Json<PutBody>,
) -> Response {
    let op = KvOp::Put {
        key: key.clone(),
        value: body.value,
    };
    submit(&state, key, body.client_id, body.seq, op, &uri).await
}

async fn get_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(tag): Query<ReadTag>,
    uri: Uri,
) -> Response {
    let status = state.node.status();
    let leading = status.leader == Some(status.id);
    if leading && state.seeded_bug == Some(super::SeededBug::StaleLeaderReads) {
        return match state.local_value(key.clone()).await {
            Ok(local) => Json(ApiReply {
                key,
                value: local.value,
                swapped: None,
                node: status.id,
            })
            .into_response(),
            Err(why) => unavailable("unavailable", &why.to_string()),
        };
    }
    let op = KvOp::Get { key: key.clone() };
    match state.config.reads.policy {
        ReadPolicy::ReadIndex | ReadPolicy::Lease => read_index(&state, key, op, &uri).await,
        ReadPolicy::Log => {
            let (Some(client_id), Some(seq)) = (tag.client_id, tag.seq) else {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    ApiError {
                        error: "missing_tag".into(),
                        message: "reads go through the log ([reads] policy = \"log\"): \
                                  give ?client_id=&seq="
                            .into(),
                        leader: None,
                        leader_url: None,
                    },
                );
            };
            submit(&state, key, client_id, seq, op, &uri).await
        }
    }
}

/// A read through the read index: no slot, no WAL write.
async fn read_index(state: &AppState, key: String, op: KvOp, uri: &Uri) -> Response {
    let timeout = state.config.timing.request_timeout();
    let node = state.node.id();
    match tokio::time::timeout(timeout, state.node.read(op)).await {
        Err(_) => unavailable("timeout", "not confirmed in time; retry"),
        Ok(Err(why)) => unavailable("unavailable", &why.to_string()),
        Ok(Ok(ReadOutcome::Done(output))) => {
            let value = match output {
                KvOutput::Value(value) => value,
                KvOutput::Cas { previous, .. } => previous,
            };
            let reply = ApiReply {
                key,
                value,
                swapped: None,
                node,
            };
            Json(reply).into_response()
        }
        Ok(Ok(ReadOutcome::NotAQuery)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiError {
                error: "not_a_query".into(),
                message: "the state machine answers this read only through the log".into(),
                leader: None,
                leader_url: None,
            },
        ),
        Ok(Ok(ReadOutcome::NotLeader { leader })) => not_leader(state, leader, uri),
    }
}

async fn delete_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(tag): Query<ClientTag>,
    uri: Uri,
) -> Response {
    let op = KvOp::Delete { key: key.clone() };
    submit(&state, key, tag.client_id, tag.seq, op, &uri).await
}

async fn cas_key(
    State(state): State<AppState>,
    Path(key): Path<String>,
    uri: Uri,
    Json(body): Json<CasBody>,
) -> Response {
    let op = KvOp::Cas {
        key: key.clone(),
        expected: body.expected,
        new: body.new,
    };
    submit(&state, key, body.client_id, body.seq, op, &uri).await
}

async fn local_key(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    match state.local_value(key).await {
        Ok(value) => Json(value).into_response(),
        Err(why) => unavailable("unavailable", &why.to_string()),
    }
}

async fn status(State(state): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Peer {
        id: NodeId,
        peer_addr: String,
        client_addr: String,
        connected: bool,
    }
    #[derive(Serialize)]
    struct Status {
        cluster_id: String,
        read_policy: &'static str,
        #[serde(flatten)]
        node: NodeStatus,
        peers: Vec<Peer>,
    }
    let peers = state
        .node
        .peers()
        .iter()
        .filter_map(|(id, connected)| {
            let node = state.config.node(*id)?;
            Some(Peer {
                id: *id,
                peer_addr: node.peer_addr.to_string(),
                client_addr: node.client_addr.to_string(),
                connected: connected.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(Status {
        cluster_id: state.config.cluster_id.clone(),
        read_policy: state.config.reads.policy.name(),
        node: state.node.status(),
        peers,
    })
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let status = state.node.status();
    let text = state.node.metrics().render(&status.wal_stats(), status.id);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn submit(
    state: &AppState,
    key: String,
    client_id: u64,
    seq: u64,
    op: KvOp,
    uri: &Uri,
) -> Response {
    let command = Command {
        client: ClientId(client_id),
        seq,
        op,
    };
    let timeout = state.config.timing.request_timeout();
    let node = state.node.id();
    match tokio::time::timeout(timeout, state.node.submit(command)).await {
        Err(_) => unavailable("timeout", "not executed in time; retry with the same seq"),
        Ok(Err(why)) => unavailable("unavailable", &why.to_string()),
        Ok(Ok(ClientOutcome::Done(output))) => {
            let (value, swapped) = match output {
                KvOutput::Value(value) => (value, None),
                KvOutput::Cas { swapped, previous } => (previous, Some(swapped)),
            };
            let reply = ApiReply {
                key,
                value,
                swapped,
                node,
            };
            Json(reply).into_response()
        }
        Ok(Ok(ClientOutcome::Stale)) => error_response(
            StatusCode::CONFLICT,
            ApiError {
                error: "stale_request".into(),
                message: format!("seq {seq} is below this client's last executed request"),
                leader: None,
                leader_url: None,
            },
        ),
        Ok(Ok(ClientOutcome::NotLeader { leader })) => not_leader(state, leader, uri),
    }
}

/// Sends the client to the leader this replica knows of, or asks it to retry.
fn not_leader(state: &AppState, leader: Option<NodeId>, uri: &Uri) -> Response {
    match leader {
        Some(leader) => redirect(state, leader, uri),
        None => unavailable("no_leader", "no leader is known yet; retry shortly"),
    }
}

fn redirect(state: &AppState, leader: NodeId, uri: &Uri) -> Response {
    let Some(node) = state.config.node(leader) else {
        return unavailable("no_leader", "the known leader is not in the configuration");
    };
    let base = format!("http://{}", node.client_addr);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{base}{path}");
    let body = ApiError {
        error: "not_leader".into(),
        message: format!("node {leader} leads"),
        leader: Some(leader),
        leader_url: Some(base),
    };
    let mut response = error_response(StatusCode::TEMPORARY_REDIRECT, body);
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn unavailable(error: &str, message: &str) -> Response {
    let body = ApiError {
        error: error.into(),
        message: message.into(),
        leader: None,
        leader_url: None,
    };
    error_response(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn error_response(code: StatusCode, body: ApiError) -> Response {
    (code, Json(body)).into_response()
}
