//! A circuit breaker per endpoint: after `threshold` failures in a row it opens and
//! refuses requests for `cooldown`; then it lets one request through (half-open), and
//! closes on its success or opens again on its failure. An endpoint that is down costs
//! one request per cooldown instead of one per attempt.

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

    /// May a request go now?
    pub fn allow(&self) -> Result<(), Refused> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *s = Inner::HalfOpen { probing: true };
                    Ok(())
                } else {
                    Err(Refused {
                        retry_in: until - now,
                    })
                }
            }
            Inner::HalfOpen { probing: false } => {
                *s = Inner::HalfOpen { probing: true };
                Ok(())
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
            b.allow().unwrap();
            b.failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.allow().unwrap();
        // Only one probe at a time while half-open.
        assert!(b.allow().is_err());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        b.allow().unwrap();
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
