//! A conversation with one Mambu tenant: the client, the one rate limit every call shares, and
//! the one retry policy ([`policy::decide`]) carried out; lists read page by page; entities
//! read back. `run`, `verify`, `validate --target` and `estimate --target` talk to Mambu only
//! through a [`Session`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{Answer, Client, ClientError, Keep, Refusal, Request};
use super::limiter::Limiter;
use super::policy::{self, Attempt, CallOutcome, Expect, Next, RetrySettings, Tries};

/// How a call ended.
#[derive(Debug)]
pub enum Sent {
    /// A usable success.
    Ok(Answer),
    /// Mambu refused it: the caller adopts what exists, or fails the record.
    Refused(Answer, Refusal),
    /// The attempts are spent on something that is not an outage.
    GaveUp {
        message: String,
        status: Option<u16>,
    },
    /// The run must stop (resumably): credentials refused, or Mambu out of reach past the
    /// outage wait or past the deadline.
    Stop(String),
    /// The session was halted while the call waited.
    Interrupted,
}

/// What the caller keeps of each attempt (the run: its checkpoint and progress line).
pub trait Observer: Send {
    /// One attempt: its status (`None`: no answer), its outcome ([`policy::outcome`]), its
    /// latency, and whether it was a refusal (whose outcome the caller may settle later as
    /// [`CallOutcome::Adopted`]).
    fn attempt(
        &mut self,
        status: Option<u16>,
        outcome: CallOutcome,
        latency_ms: f64,
        refused: bool,
    );
    /// The call begins waiting out an outage (once per call).
    fn outage(&mut self, _reason: &str) {}
    /// The call that waited out an outage has ended (answered, or stopped).
    fn outage_over(&mut self) {}
}

/// An observer that keeps nothing (the session counts every attempt anyway).
pub struct Quiet;

impl Observer for Quiet {
    fn attempt(&mut self, _: Option<u16>, _: CallOutcome, _: f64, _: bool) {}
}

/// Items per page when reading a list: Mambu's maximum page size.
pub const PAGE: usize = 1000;

pub struct Session {
    client: Client,
    /// The approving user's client (four-eyes): approval calls go through it.
    approver: Option<Client>,
    limiter: Limiter,
    retry: RetrySettings,
    /// Cancelled to stop: no call waits any more.
    halt: CancellationToken,
    /// Cancelled at the deadline: a call waiting out an outage stops the run.
    deadline: CancellationToken,
    attempts: AtomicU64,
}

impl Session {
    pub fn new(client: Client, limiter: Limiter, retry: RetrySettings) -> Self {
        Self {
            client,
            approver: None,
            limiter,
            retry,
            halt: CancellationToken::new(),
            deadline: CancellationToken::new(),
            attempts: AtomicU64::new(0),
        }
    }

    /// A session for reading: at `rate` calls per second with the plan's retry settings.
    pub fn reader(client: Client, rate: f64, burst: Option<u32>, retry: RetrySettings) -> Self {
        Self::new(
            client,
            Limiter::new(rate, burst.unwrap_or_else(|| rate.ceil() as u32)),
            retry,
        )
    }

    /// Approval calls ([`Session::send_as`] with `approving`) go through `approver`: the second
    /// user a four-eyes product needs. It shares the rate limit and the retry policy.
    pub fn with_approver(mut self, approver: Option<Client>) -> Self {
        self.approver = approver;
        self
    }

    /// Whether approvals go through a second user.
    pub fn has_approver(&self) -> bool {
        self.approver.is_some()
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Cancelled to stop: calls waiting to retry give up waiting.
    pub fn halt(&self) -> &CancellationToken {
        &self.halt
    }

    /// Cancelled at the deadline.
    pub fn deadline(&self) -> &CancellationToken {
        &self.deadline
    }

    /// Attempts sent so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Sends `request` under the rate limit until the policy says it is done.
    pub async fn send(
        &self,
        request: &Request<'_>,
        expect: Expect,
        observer: &mut dyn Observer,
    ) -> Sent {
        self.send_as(request, expect, observer, false).await
    }

    /// [`Session::send`], as the approving user when `approving` and the session has one.
    pub async fn send_as(
        &self,
        request: &Request<'_>,
        expect: Expect,
        observer: &mut dyn Observer,
        approving: bool,
    ) -> Sent {
        let client = match (&self.approver, approving) {
            (Some(approver), true) => approver,
            _ => &self.client,
        };
        let mut backoff = self.retry.backoff();
        let first = Instant::now();
        let mut attempts = 0u32;
        let mut waiting = false;
        let end = |observer: &mut dyn Observer, waiting: bool, sent: Sent| {
            if waiting {
                observer.outage_over();
            }
            sent
        };
        loop {
            self.limiter.acquire().await;
            attempts += 1;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = client.send(request).await;
            self.limiter.poke();
            if let Err(e @ ClientError::Unsendable { .. }) = &result {
                return end(
                    observer,
                    waiting,
                    Sent::GaveUp {
                        message: e.to_string(),
                        status: None,
                    },
                );
            }
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let message = result.as_ref().err().map(|e| e.to_string());
            let (attempt, status) = match (&result, &message) {
                (Ok(answer), _) => (Attempt::Answer(answer), Some(answer.status)),
                (Err(_), message) => (Attempt::NoAnswer(message.as_deref().unwrap_or("")), None),
            };
            // Drawn for every attempt: one that is not retried ends the call anyway.
            let tries = Tries {
                attempts,
                elapsed: first.elapsed(),
                next_backoff: backoff.next(),
            };
            let next = policy::decide(attempt, expect, tries, &self.retry);
            observer.attempt(
                status,
                policy::outcome(attempt, expect),
                latency_ms,
                matches!(next, Next::Refused(_)),
            );
            let delay = match next {
                Next::Use => {
                    self.limiter.succeeded();
                    let answer = result.expect("a usable answer");
                    return end(observer, waiting, Sent::Ok(answer));
                }
                Next::Refused(refusal) => {
                    self.limiter.succeeded();
                    let answer = result.expect("a refusal has an answer");
                    return end(observer, waiting, Sent::Refused(answer, refusal));
                }
                Next::StopCredentials(reason) | Next::StopOutage(reason) => {
                    return end(observer, waiting, Sent::Stop(reason));
                }
                Next::GiveUp { message } => {
                    return end(observer, waiting, Sent::GaveUp { message, status });
                }
                Next::Retry { delay, throttled } => {
                    if throttled {
                        self.limiter.throttled();
                    }
                    delay
                }
                Next::WaitOutage { delay, reason } => {
                    if !waiting {
                        waiting = true;
                        tracing::warn!(%reason, wait_seconds = self.retry.outage_wait.as_secs(), "waiting for Mambu");
                        observer.outage(&reason);
                    }
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.halt.cancelled() => return end(observer, waiting, Sent::Interrupted),
                () = self.deadline.cancelled(), if waiting => {
                    // The window is over and Mambu is still out of reach.
                    return end(observer, waiting, Sent::Stop("deadline (Mambu out of reach)".into()));
                }
            }
        }
    }

    /// Reads one entity (or any JSON) at `path`: `Ok(None)` when Mambu says it does not exist
    /// (404), an error saying why when it cannot be read.
    pub async fn read(
        &self,
        path: &str,
        expect: Expect,
        keep: Keep<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Option<Answer>, String> {
        self.read_as(path, path, expect, keep, observer).await
    }

    /// [`Session::read`], saying `shown` in its errors.
    async fn read_as(
        &self,
        path: &str,
        shown: &str,
        expect: Expect,
        keep: Keep<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Option<Answer>, String> {
        let path_shown = shown;
        let request = Request {
            method: "GET",
            path,
            body: None,
            idempotency_key: None,
            v1: false,
            keep,
        };
        match self.send(&request, expect, observer).await {
            Sent::Ok(answer) => Ok(Some(answer)),
            Sent::Refused(answer, _) if answer.status == 404 => Ok(None),
            Sent::Refused(answer, refusal) => Err(format!(
                "GET {path_shown} refused: HTTP {}{}",
                answer.status,
                refusal.reason.map(|r| format!(" {r}")).unwrap_or_default()
            )),
            Sent::GaveUp { message, .. } | Sent::Stop(message) => {
                Err(format!("GET {path_shown}: {message}"))
            }
            Sent::Interrupted => Err(format!("GET {path_shown}: interrupted")),
        }
    }

    /// Reads every item of the list at `path`, page by page (`offset`, `limit` of [`PAGE`],
    /// `paginationDetails=ON`): Mambu answers 50 items when no limit is given, so a list read
    /// in one call silently loses the rest (`../shared/mambu-api.md` §8, "Pagination").
    pub async fn list(
        &self,
        path: &str,
        observer: &mut dyn Observer,
    ) -> Result<Vec<Value>, String> {
        self.list_in_pages(path, PAGE, observer).await
    }

    /// [`Session::list`] with pages of `page` items (1 to 1,000).
    pub async fn list_in_pages(
        &self,
        path: &str,
        page: usize,
        observer: &mut dyn Observer,
    ) -> Result<Vec<Value>, String> {
        let page_size = page.clamp(1, PAGE);
        let mut items = Vec::new();
        let separator = if path.contains('?') { '&' } else { '?' };
        loop {
            let page_path = format!(
                "{path}{separator}offset={}&limit={page_size}&paginationDetails=ON",
                items.len()
            );
            let Some(page) = self
                .read_as(&page_path, path, Expect::List, Keep::All, observer)
                .await?
            else {
                return Err(format!("GET {path}: not found (HTTP 404)"));
            };
            let Value::Array(page_items) = page.body else {
                return Err(format!("GET {path}: the answer is not a list"));
            };
            let count = page_items.len();
            items.extend(page_items);
            let total = page.items_total.map(|t| t as usize);
            if count < page_size || total.is_some_and(|t| items.len() >= t) || count == 0 {
                return Ok(items);
            }
        }
    }
}
