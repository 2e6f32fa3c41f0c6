//! A client of the HTTP API: tries the endpoints in turn, follows a follower's redirect to the
//! leader, and retries a request with the **same** `(client_id, seq)` until it is answered or
//! the deadline passes, so that a retried write is executed once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::http::{ApiError, ApiReply, CasBody, PutBody};
use crate::multi::KvOp;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoint given")]
    NoEndpoints,
    #[error("bad endpoint {0:?}: give host:port or http://host:port, e.g. 127.0.0.1:8000")]
    BadEndpoint(String),
    #[error(
        "no answer within {:.1} s (last: {last}); is the cluster running at these endpoints? \
         (`paxos-node cluster` starts one; --endpoints says where it listens)",
        waited.as_secs_f64()
    )]
    Timeout { waited: Duration, last: String },
    #[error("refused by the server ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("http client: {0}")]
    Http(String),
}

/// What one attempt got.
enum Attempt {
    Done(ApiReply),
    Redirect(String),
    Retry(String),
}

/// A client with its own id and sequence numbers. One request at a time.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Vec<String>,
    client_id: u64,
    seq: u64,
    /// The endpoint that answered last (the leader, usually).
    current: Option<String>,
    next_endpoint: usize,
    /// How long one operation may take, retries included.
    pub op_timeout: Duration,
    /// Retries so far (redirects not counted).
    pub retries: u64,
}

/// `host:port` or `http://host:port` as a base URL without a trailing slash.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, ClientError> {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        return Err(ClientError::BadEndpoint(endpoint.into()));
    }
    let url = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    reqwest::Url::parse(&url).map_err(|_| ClientError::BadEndpoint(endpoint.into()))?;
    Ok(url)
}

/// An HTTP client suited to the API: no automatic redirects (the client follows them itself,
/// keeping the same `seq`), a per-attempt timeout.
pub fn http_client(attempt_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(attempt_timeout)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| ClientError::Http(e.to_string()))
}

impl Client {
    /// A client with id `client_id`; its first request gets `seq = 1`.
    pub fn new(
        http: reqwest::Client,
        endpoints: &[String],
        client_id: u64,
    ) -> Result<Client, ClientError> {
        let endpoints = endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Client {
            http,
            endpoints,
            client_id,
            seq: 0,
            current: None,
            next_endpoint: 0,
            op_timeout: Duration::from_secs(10),
            retries: 0,
        })
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The sequence number of the last request issued.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Issues `op` with the next sequence number, retrying it (same number) until answered.
    pub async fn execute(&mut self, op: &KvOp) -> Result<ApiReply, ClientError> {
        self.seq += 1;
        let started = Instant::now();
        let mut target = self.current.clone().unwrap_or_else(|| self.rotate());
        let mut redirects = 0u32;
        let mut last = String::from("nothing tried");
        let mut backoff = Duration::from_millis(20);
        while started.elapsed() < self.op_timeout {
            match self.attempt(&target, op).await {
                Ok(Attempt::Done(reply)) => {
                    self.current = Some(target);
                    return Ok(reply);
                }
                Ok(Attempt::Redirect(url)) => {
                    redirects += 1;
                    last = format!("redirected to {url}");
                    target = url;
                    if redirects > 3 {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                Ok(Attempt::Retry(reason)) => {
                    last = format!("{target}: {reason}");
                    self.retries += 1;
                    target = self.rotate();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
        self.current = None;
        Err(ClientError::Timeout {
            waited: started.elapsed(),
            last,
        })
    }

    fn rotate(&mut self) -> String {
        let i = self.next_endpoint % self.endpoints.len();
        self.next_endpoint = i + 1;
        self.current = None;
        self.endpoints[i].clone()
    }

    fn url(&self, base: &str, segments: &[&str]) -> Result<reqwest::Url, ClientError> {
        let mut url =
            reqwest::Url::parse(base).map_err(|_| ClientError::BadEndpoint(base.into()))?;
        url.path_segments_mut()
            .map_err(|_| ClientError::BadEndpoint(base.into()))?
            .clear()
            .extend(segments);
        Ok(url)
    }

    async fn attempt(&self, base: &str, op: &KvOp) -> Result<Attempt, ClientError> {
        let (client_id, seq) = (self.client_id, self.seq);
        let tag = [("client_id", client_id), ("seq", seq)];
        let request = match op {
            KvOp::Put { key, value } => {
                let body = PutBody {
                    value: value.clone(),
                    client_id,
                    seq,
                };
                self.http
                    .put(self.url(base, &["v1", "kv", key])?)
                    .json(&body)
            }
            KvOp::Get { key } => self
                .http
                .get(self.url(base, &["v1", "kv", key])?)
                .query(&tag),
            KvOp::Delete { key } => self
                .http
                .delete(self.url(base, &["v1", "kv", key])?)
                .query(&tag),
            KvOp::Cas { key, expected, new } => {
                let body = CasBody {
                    expected: expected.clone(),
                    new: new.clone(),
                    client_id,
                    seq,
                };
                self.http
                    .post(self.url(base, &["v1", "cas", key])?)
                    .json(&body)
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Ok(Attempt::Retry(http_error(e))),
        };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Ok(Attempt::Retry(http_error(e))),
        };
        match status {
            StatusCode::OK => match serde_json::from_str::<ApiReply>(&text) {
                Ok(reply) => Ok(Attempt::Done(reply)),
                Err(e) => Ok(Attempt::Retry(format!("unreadable answer: {e}"))),
            },
            StatusCode::TEMPORARY_REDIRECT => {
                let error: Option<ApiError> = serde_json::from_str(&text).ok();
                let leader_url = error.and_then(|e| e.leader_url).or(location);
                match leader_url {
                    Some(url) => Ok(Attempt::Redirect(normalize_endpoint(&url)?)),
                    None => Ok(Attempt::Retry("redirect without a leader".into())),
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => Ok(Attempt::Retry(message_of(&text))),
            other => Err(ClientError::Refused {
                status: other.as_u16(),
                message: message_of(&text),
            }),
        }
    }
}

fn message_of(text: &str) -> String {
    match serde_json::from_str::<ApiError>(text) {
        Ok(e) => format!("{}: {}", e.error, e.message),
        Err(_) => text.chars().take(200).collect(),
    }
}

/// `GET {base}{path}` as JSON.
pub async fn fetch_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<T, ClientError> {
    let url = format!("{}{path}", normalize_endpoint(base)?);
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {}", http_error(e))))?;
    response
        .json()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {}", http_error(e))))
}

/// A reqwest error with its causes: its own message ("error sending request for url …")
/// hides the one a person needs ("Connection refused").
fn http_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `GET {base}/metrics`, as `(name, value)` pairs of the samples without labels.
pub async fn fetch_metrics(
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<(String, f64)>, ClientError> {
    let url = format!("{}/metrics", normalize_endpoint(base)?);
    let text = http
        .get(&url)
        .send()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {}", http_error(e))))?
        .text()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {}", http_error(e))))?;
    Ok(parse_metrics(&text))
}

/// The unlabelled samples of a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:8000/").ok(),
            Some("http://127.0.0.1:8000".to_string())
        );
        assert_eq!(
            normalize_endpoint("http://h:1").ok(),
            Some("http://h:1".to_string())
        );
        assert!(normalize_endpoint("").is_err());
    }

    #[test]
    fn metrics_parse_unlabelled_samples() {
        let text = "# HELP a x\n# TYPE a counter\na 3\nb_bucket{le=\"1\"} 2\nb_sum 0.5\n";
        let parsed = parse_metrics(text);
        assert_eq!(parsed, vec![("a".into(), 3.0), ("b_sum".into(), 0.5)]);
    }
}
