//! A circuit breaker per endpoint: after `threshold` failures in a row it opens and
//! refuses requests for `cooldown`; then it lets one request through (half-open), and
//! closes on its success or opens again on its failure. An endpoint that is down costs
//! one request per cooldown instead of one per attempt.
//!
//! [`Breaker::allow`] hands out a [`Ticket`] that settles the request: a probe that is
//! answered with something neither good nor a sign of trouble (e.g. HTTP 400) closes
//! the breaker, and a probe that is abandoned (its run cancelled) lets the next request
//! probe instead, so the breaker can never stay half-open with no probe under way.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Permission for one request; settle it with its outcome. Dropped unsettled (the
/// request was abandoned), it changes nothing, except that an abandoned probe lets the
/// next request probe.
#[derive(Debug)]
#[must_use = "settle the ticket with the request's outcome"]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Ticket<'_> {
    /// The endpoint answered usefully.
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.success();
    }

    /// The endpoint failed in a way that counts against it.
    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.failure();
    }

    /// The endpoint answered, but not usefully (e.g. a client error): it is up. A probe
    /// closes the breaker; otherwise nothing changes.
    pub fn answered(mut self) {
        self.settled = true;
        if self.probe {
            self.breaker.success();
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            let mut s = self.breaker.lock();
            if matches!(*s, Inner::HalfOpen { probing: true }) {
                *s = Inner::HalfOpen { probing: false };
            }
        }
    }
}

/// Refused: the breaker is open.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub retry_in: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ticket(&self, probe: bool) -> Ticket<'_> {
        Ticket {
            breaker: self,
            probe,
            settled: false,
        }
    }

    /// May a request go now?
    pub fn allow(&self) -> Result<Ticket<'_>, Refused> {
        let mut s = self.lock();
        match *s {
            Inner::Closed { .. } => Ok(self.ticket(false)),
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *s = Inner::HalfOpen { probing: true };
                    Ok(self.ticket(true))
                } else {
                    Err(Refused {
                        retry_in: until - now,
                    })
                }
            }
            Inner::HalfOpen { probing: false } => {
                *s = Inner::HalfOpen { probing: true };
                Ok(self.ticket(true))
            }
            Inner::HalfOpen { probing: true } => Err(Refused {
                retry_in: Duration::ZERO,
            }),
        }
    }

    pub fn success(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Inner::Closed { failures: 0 };
    }

    pub fn failure(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s = match *s {
            Inner::Closed { failures } if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            _ => Inner::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    pub fn state(&self) -> BreakerState {
        match *self.inner.lock().unwrap_or_else(|p| p.into_inner()) {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        match *self.inner.lock().unwrap_or_else(|p| p.into_inner()) {
            Inner::Closed { failures } => failures,
            _ => self.threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_half_opens_after_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            b.allow().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.allow().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.allow().unwrap();
        // Only one probe at a time while half-open.
        assert!(b.allow().is_err());
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        b.allow().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_or_abandoned_probe_does_not_leave_it_half_open_for_ever() {
        let b = Breaker::new(1, Duration::from_secs(10));
        b.allow().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        // Abandoned: the next request may probe.
        drop(b.allow().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.allow().unwrap();
        assert!(b.allow().is_err());
        // Answered with a client error: the endpoint is up.
        probe.answered();
        assert_eq!(b.state(), BreakerState::Closed);
        // Outside a probe, such an answer changes nothing.
        b.allow().unwrap().answered();
        assert_eq!(b.consecutive_failures(), 0);
        b.allow().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
