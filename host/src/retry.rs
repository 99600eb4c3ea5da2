//! Retrying operations through connection trouble, with KazooRetry's knobs.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::rand::Rng;

/// When and how long to retry. Retries [`Error::ConnectionLoss`] and
/// [`Error::OperationTimeout`]; [`Error::SessionExpired`] only with
/// [`RetryPolicy::retry_session_expired`]. Anything else is returned at once.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let retry = wazoo::RetryPolicy::default().max_tries(Some(5)).deadline(Some(Duration::from_secs(30)));
/// let (data, _) = retry.run(|| zk.get_data("/config")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_tries: Option<u32>,
    delay: Duration,
    backoff: f64,
    max_jitter: f64,
    max_delay: Duration,
    deadline: Option<Duration>,
    retry_expired: bool,
}

impl Default for RetryPolicy {
    /// Kazoo's defaults: one try... no: `max_tries=1`, `delay=0.1`, `backoff=2`, `max_jitter=0.4`,
    /// `max_delay=60` (wazoo caps it at 5 s by default, so a retried call never sleeps long).
    fn default() -> Self {
        RetryPolicy {
            max_tries: Some(1),
            delay: Duration::from_millis(100),
            backoff: 2.0,
            max_jitter: 0.4,
            max_delay: Duration::from_secs(5),
            deadline: None,
            retry_expired: false,
        }
    }
}

impl RetryPolicy {
    /// How many retries after the first try (None: no limit; default 1).
    pub fn max_tries(mut self, n: Option<u32>) -> Self {
        self.max_tries = n;
        self
    }
    /// The first pause (default 100 ms).
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    /// Each pause is the previous one times this (default 2).
    pub fn backoff(mut self, f: f64) -> Self {
        self.backoff = f.max(1.0);
        self
    }
    /// Each pause is lengthened by a random fraction of it up to this (default 0.4).
    pub fn max_jitter(mut self, f: f64) -> Self {
        self.max_jitter = f.max(0.0);
        self
    }
    /// No pause is longer than this (default 5 s).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    /// Give up once this much time has passed since the first try (default none).
    pub fn deadline(mut self, d: Option<Duration>) -> Self {
        self.deadline = d;
        self
    }
    /// Also retry [`Error::SessionExpired`] (default false: expiry usually needs the caller to
    /// rebuild state).
    pub fn retry_session_expired(mut self, yes: bool) -> Self {
        self.retry_expired = yes;
        self
    }

    fn retryable(&self, e: &Error) -> bool {
        e.is_retryable() || (self.retry_expired && *e == Error::SessionExpired)
    }

    /// The pause before retry number `attempt` (0-based), or None to give up.
    fn pause(&self, attempt: u32, started: Instant, rng: &mut Rng) -> Option<Duration> {
        if let Some(max) = self.max_tries {
            if attempt >= max {
                return None;
            }
        }
        let base = self.delay.as_secs_f64() * self.backoff.powi(attempt.min(64) as i32);
        let jittered = base * (1.0 + self.max_jitter * rng.unit());
        let pause = Duration::from_secs_f64(jittered.min(self.max_delay.as_secs_f64()));
        if let Some(d) = self.deadline {
            if started.elapsed() + pause > d {
                return None;
            }
        }
        Some(pause)
    }

    /// Runs `op` until it succeeds, fails with an error not to retry, or the policy gives up
    /// (then the last error is returned).
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: IntoFuture<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut rng = Rng::new();
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if self.retryable(&e) => match self.pause(attempt, started, &mut rng) {
                    Some(p) => {
                        tracing::debug!(attempt, ?p, "retrying after {e}");
                        tokio::time::sleep(p).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// As [`RetryPolicy::run`], for blocking callers (sleeps the thread).
    pub fn run_blocking<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut rng = Rng::new();
        let mut attempt = 0;
        loop {
            match op() {
                Err(e) if self.retryable(&e) => match self.pause(attempt, started, &mut rng) {
                    Some(p) => {
                        std::thread::sleep(p);
                        attempt += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_it_should_and_stops() {
        let policy = RetryPolicy::default()
            .max_tries(Some(3))
            .delay(Duration::from_millis(1));
        let mut n = 0;
        let r: Result<()> = policy.run_blocking(|| {
            n += 1;
            Err(Error::ConnectionLoss)
        });
        assert_eq!(r, Err(Error::ConnectionLoss));
        assert_eq!(n, 4, "one try plus three retries");

        let mut n = 0;
        let r: Result<()> = policy.run_blocking(|| {
            n += 1;
            Err(Error::NoNode)
        });
        assert_eq!((r, n), (Err(Error::NoNode), 1));

        let mut n = 0;
        let r: Result<()> = policy.run_blocking(|| {
            n += 1;
            Err(Error::SessionExpired)
        });
        assert_eq!(n, 1, "expiry is not retried by default: {r:?}");
        let mut n = 0;
        let r = policy.clone().retry_session_expired(true).run_blocking(|| {
            n += 1;
            if n < 3 {
                Err(Error::SessionExpired)
            } else {
                Ok(n)
            }
        });
        assert_eq!(r, Ok(3));
    }

    #[test]
    fn pauses_grow_are_capped_and_respect_the_deadline() {
        let p = RetryPolicy::default()
            .max_tries(None)
            .delay(Duration::from_millis(100))
            .max_jitter(0.0)
            .max_delay(Duration::from_millis(350));
        let mut rng = Rng::new();
        let now = Instant::now();
        let pauses: Vec<_> = (0..4)
            .map(|i| p.pause(i, now, &mut rng).unwrap().as_millis())
            .collect();
        assert_eq!(pauses, vec![100, 200, 350, 350]);
        let d = p.deadline(Some(Duration::from_millis(50)));
        assert_eq!(d.pause(0, now, &mut rng), None);
    }
}
