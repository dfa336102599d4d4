//! Everything about talking to Mambu, in one place: the only module that sees reqwest.
//!
//! - [`client`]: one HTTP request, once: v2 (and v1 for the settlement link), the `apiKey`
//!   header or basic auth, credentials from the environment and redacted from every `Debug`,
//!   plain http refused except to loopback; an answer classified ([`classify`]).
//! - [`limiter`]: the one rate limit every call shares, adaptive under 429s.
//! - [`policy`]: the one retry policy: after each attempt, use, retry, wait out an outage,
//!   give up or stop, decided in one pure function.
//! - [`session`]: a conversation with a tenant: client, limiter and policy together; lists read
//!   page by page, entities read back. `run`, `verify`, `validate` and `estimate` use it.
//! - [`adopt`]: what Mambu's "already exists" means for each action, and how to read back what
//!   exists, so a request whose answer was lost is adopted rather than sent twice.

pub mod adopt;
pub mod client;
pub mod limiter;
pub mod policy;
pub mod session;

pub use client::{
    Answer, Client, ClientError, Credentials, Keep, Refusal, Request, V2_MEDIA_TYPE, Verdict,
    classify,
};
pub use limiter::Limiter;
pub use policy::{CallOutcome, Expect, RetrySettings};
pub use session::{Observer, Quiet, Sent, Session};
