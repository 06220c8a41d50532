//! Requests-per-minute and tokens-per-minute limits for one endpoint.
//!
//! RPM is enforced smoothly: requests are spaced at least `60s / rpm` apart, so no
//! window of any length sees more than its share (and no minute more than `rpm`). TPM is
//! a sliding one-minute window over estimated tokens, corrected by the usage the endpoint
//! reports. Time is tokio's, so tests run it on a paused clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RateLimiter {
    rpm: Option<u32>,
    tpm: Option<u32>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// (when, tokens) of requests in the last minute; ids let usage be corrected.
    log: VecDeque<(Instant, u64, u32)>,
    next_slot: Option<Instant>,
    next_id: u64,
}

/// A granted request; pass it back with the real token count.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    id: u64,
}

impl RateLimiter {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>) -> Self {
        Self {
            rpm: rpm.filter(|r| *r > 0),
            tpm: tpm.filter(|t| *t > 0),
            state: Mutex::new(State::default()),
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }

    /// Waits until a request estimated at `tokens` may go.
    pub async fn acquire(&self, tokens: u32) -> Grant {
        if self.unlimited() {
            return Grant { id: u64::MAX };
        }
        loop {
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while s
                    .log
                    .front()
                    .is_some_and(|(t, _, _)| now.duration_since(*t) >= WINDOW)
                {
                    s.log.pop_front();
                }
                let mut wait = Duration::ZERO;
                if let Some(rpm) = self.rpm {
                    if let Some(slot) = s.next_slot {
                        wait = wait.max(slot.saturating_duration_since(now));
                    }
                    if s.log.len() as u32 >= rpm
                        && let Some((oldest, _, _)) = s.log.front()
                    {
                        wait = wait.max((*oldest + WINDOW).saturating_duration_since(now));
                    }
                }
                if let Some(tpm) = self.tpm {
                    let used: u64 = s.log.iter().map(|(_, _, t)| *t as u64).sum();
                    // A single request larger than the budget still goes, alone.
                    if used > 0 && used + tokens as u64 > tpm as u64 {
                        let mut freed = 0u64;
                        let need = used + tokens as u64 - tpm as u64;
                        for (t, _, n) in &s.log {
                            freed += *n as u64;
                            if freed >= need {
                                wait = wait.max((*t + WINDOW).saturating_duration_since(now));
                                break;
                            }
                        }
                    }
                }
                if wait.is_zero() {
                    let id = s.next_id;
                    s.next_id += 1;
                    s.log.push_back((now, id, tokens));
                    if let Some(rpm) = self.rpm {
                        s.next_slot = Some(now + WINDOW / rpm);
                    }
                    return Grant { id };
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Replaces a request's estimate with the tokens the endpoint reported.
    pub fn record_usage(&self, grant: Grant, tokens: u32) {
        if self.tpm.is_none() {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = s.log.iter_mut().find(|(_, id, _)| *id == grant.id) {
            entry.2 = tokens;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window of `window` length starting at a request holds at most `max`.
    fn max_in_window(times: &[Instant], window: Duration) -> usize {
        times
            .iter()
            .map(|start| {
                times
                    .iter()
                    .filter(|t| **t >= *start && t.duration_since(*start) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn rpm_60_over_30_requests_is_smooth_and_never_exceeds_the_minute() {
        let limiter = std::sync::Arc::new(RateLimiter::new(Some(60), None));
        let mut tasks = Vec::new();
        // 30 callers at once, as a run at high concurrency would be.
        for _ in 0..30 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire(10).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        assert!(max_in_window(&times, Duration::from_secs(60)) <= 60);
        // Smooth: no second holds more than one request.
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 1);
        let span = *times.last().unwrap() - times[0];
        assert!(span >= Duration::from_secs(29), "{span:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_minute_blocks_until_the_oldest_ages_out() {
        let limiter = RateLimiter::new(None, Some(1000));
        let start = Instant::now();
        let g = limiter.acquire(600).await;
        limiter.acquire(300).await;
        // 900 used; 200 more would exceed 1000 until the first request leaves the window.
        limiter.record_usage(g, 700);
        limiter.acquire(200).await;
        assert!(Instant::now() - start >= Duration::from_secs(60));
    }
}
