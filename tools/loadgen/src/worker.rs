//! One sending thread: its own single-threaded runtime, HTTP client and recorder.
//!
//! awc's client is not `Send`, so the load is spread by running several of these side
//! by side, each with its share of the rate, of the concurrency and of the request cap.
//! Within a thread, a semaphore bounds the requests in flight; pacing decides when the
//! next one is due.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::error::{ConnectError, SendRequestError};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::mix::{Method, ENDPOINTS, TEMPLATES};
use crate::pacing::Pace;
use crate::stats::{ErrorKind, Live, Outcome, Recorder};

/// How long after the end a thread may still send requests that fell due before it.
pub const LATE_GRACE: Duration = Duration::from_millis(20);

/// A request sent more than this after it fell due counts as late: the thread was
/// behind its schedule (every slot busy, or no CPU to run on).
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// One thread's share of the run.
#[derive(Debug, Clone)]
pub struct Share {
    /// Position of this thread's first request in `sequence`, so threads start apart.
    pub offset: usize,
    pub pace: Option<Pace>,
    pub concurrency: usize,
    pub max_requests: Option<u64>,
    pub duration: Duration,
    pub timeout: Duration,
    /// The mix, one full turn, as indices into [`TEMPLATES`].
    pub sequence: Arc<Vec<usize>>,
    /// Full URL of each template, indexed like [`TEMPLATES`] (empty when not driven).
    pub urls: Arc<Vec<String>>,
}

/// What a thread hands back when it is done.
#[derive(Debug)]
pub struct Finished {
    pub recorder: Recorder,
    /// Requests that were due before the end but never sent (the thread was behind).
    pub unsent: u64,
    /// Requests sent more than [`LATE_AFTER`] after they fell due.
    pub late: u64,
    /// From the start to the last request sent: the span the rate is measured over.
    pub sending: Duration,
}

/// Runs one thread's share to the end; call on a thread of its own.
pub fn run(share: Share, live: Arc<Live>) -> Finished {
    actix_rt::System::new().block_on(send_all(share, live))
}

async fn send_all(share: Share, live: Arc<Live>) -> Finished {
    let client = Rc::new(
        awc::Client::builder()
            // The whole exchange is bounded below; this only keeps awc's own default
            // (5 s) from cutting a longer `--timeout` short.
            .timeout(share.timeout)
            .connector(
                awc::Connector::new()
                    .limit(share.concurrency)
                    .timeout(share.timeout),
            )
            .finish(),
    );
    let recorder = Rc::new(RefCell::new(Recorder::default()));
    let permits = Arc::new(Semaphore::new(share.concurrency));
    let start = Instant::now();
    let end = start + share.duration;
    let cap = share.max_requests.unwrap_or(u64::MAX);
    let mut sent: u64 = 0;
    let mut position = share.offset;
    let mut last_sent = start;
    let mut late: u64 = 0;

    // Requests owed by the end may still go out a moment after it: the timer wakes a
    // thread up to a millisecond late, and that should not count as falling behind.
    let last_call = end + LATE_GRACE;
    let owed = share.pace.map(|p| p.due_before(share.duration));
    while sent < cap {
        let now = Instant::now();
        match (share.pace, owed) {
            (Some(pace), Some(owed)) => {
                if sent >= owed || now >= last_call {
                    break;
                }
                if now < end && sent >= pace.due(now - start) {
                    actix_rt::time::sleep_until((start + pace.due_at(sent)).into()).await;
                    continue;
                }
            }
            _ if now >= end => break,
            _ => {}
        }
        let deadline = if share.pace.is_some() { last_call } else { end };
        let permit =
            match tokio::time::timeout_at(deadline.into(), permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The run ended while every permit was in use, or the semaphore closed.
                _ => break,
            };
        let template = share.sequence[position % share.sequence.len()];
        position += 1;
        last_sent = Instant::now();
        if let Some(pace) = share.pace {
            if last_sent.saturating_duration_since(start + pace.due_at(sent)) > LATE_AFTER {
                late += 1;
            }
        }
        sent += 1;
        live.sent.fetch_add(1, Ordering::Relaxed);
        let (client, recorder, live) = (client.clone(), recorder.clone(), live.clone());
        let url = share.urls.clone();
        let timeout = share.timeout;
        actix_rt::spawn(async move {
            let outcome = exchange(&client, &url[template], template, timeout).await;
            let t = &TEMPLATES[template];
            let failed = recorder.borrow_mut().record(t.endpoint, t.expect, outcome);
            if failed {
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
            live.done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }

    // What was due by the end and not sent tells how far behind the thread fell.
    let unsent = owed.map_or(0, |owed| owed.min(cap).saturating_sub(sent));
    // Every permit back means every request in flight has been recorded.
    let _ = permits.acquire_many(share.concurrency as u32).await;
    let recorder = recorder.borrow().clone();
    Finished {
        recorder,
        unsent,
        late,
        sending: last_sent - start,
    }
}

/// Sends one request and reads the whole answer.
async fn exchange(client: &awc::Client, url: &str, template: usize, timeout: Duration) -> Outcome {
    let t = &TEMPLATES[template];
    let started = Instant::now();
    let call = async {
        let request = match ENDPOINTS[t.endpoint].method {
            Method::Get => client.get(url),
            Method::Post => client.post(url),
        };
        let sent = match t.body {
            Some(body) => {
                request
                    .insert_header(("content-type", "application/json"))
                    .send_body(body)
                    .await
            }
            None => request.send().await,
        };
        let mut response = sent.map_err(|e| kind_of(&e))?;
        let status = response.status().as_u16();
        // Drain the body chunk by chunk: it must arrive in full, but need not be kept.
        while let Some(chunk) = response.next().await {
            chunk.map_err(|_| ErrorKind::Io)?;
        }
        Ok(status)
    };
    match actix_rt::time::timeout(timeout, call).await {
        Ok(Ok(status)) => Outcome::Answered {
            status,
            latency: started.elapsed(),
        },
        Ok(Err(kind)) => Outcome::Failed(kind),
        Err(_) => Outcome::Failed(ErrorKind::Timeout),
    }
}

fn kind_of(e: &SendRequestError) -> ErrorKind {
    match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            ErrorKind::Timeout
        }
        SendRequestError::Connect(_) => ErrorKind::Connect,
        _ => ErrorKind::Io,
    }
}
