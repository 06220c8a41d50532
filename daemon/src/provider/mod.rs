//! Traffic control in front of every target: per-target concurrency, RPM and TPM limits,
//! retries with jittered exponential backoff that honour `Retry-After`, a circuit breaker,
//! and a response cache. The Audit agent calls targets only through a [`Provider`]; the
//! daemon's own LLM (the judge) goes through one too.

mod breaker;
mod cache;
mod limiter;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

pub use breaker::{Breaker, BreakerState, Ticket};
pub use cache::ResponseCache;
pub use limiter::RateLimiter;

use crate::evidence::Digest;
use crate::targets::{ChatReply, ChatRequest, Target, TargetError};

/// Limits and policies for one target's traffic.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    pub concurrency: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub retries: u32,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// First retry wait; doubles per retry, with jitter, never above `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Tokens asked for in the answer, for the TPM estimate.
    pub max_tokens: u32,
}

pub struct Provider {
    target: Arc<dyn Target>,
    semaphore: Arc<Semaphore>,
    limiter: RateLimiter,
    /// Shared by every provider of one endpoint.
    breaker: Arc<Breaker>,
    config: TrafficConfig,
    /// Identifies the target's configuration in cache keys.
    fingerprint: Digest,
    cache: Option<ResponseCache>,
}

/// One call's result and what it took.
#[derive(Debug, Clone)]
pub struct Called {
    pub reply: ChatReply,
    pub from_cache: bool,
    /// Requests actually sent (retries included).
    pub sent: u32,
}

#[derive(Serialize)]
struct CacheKey<'a> {
    target: String,
    request: &'a ChatRequest,
    repeat: u32,
}

impl Provider {
    pub fn new(
        target: Arc<dyn Target>,
        config: TrafficConfig,
        fingerprint: Digest,
        cache: Option<ResponseCache>,
    ) -> Self {
        Self {
            target,
            semaphore: Arc::new(Semaphore::new(config.concurrency.max(1) as usize)),
            limiter: RateLimiter::new(config.rpm, config.tpm),
            breaker: Arc::new(Breaker::new(
                config.breaker_threshold,
                config.breaker_cooldown,
            )),
            config,
            fingerprint,
            cache,
        }
    }

    pub fn fingerprint(&self) -> Digest {
        self.fingerprint
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// This provider with `other`'s circuit breaker: two agents' traffic control on one
    /// endpoint, which is up or down for both.
    pub fn sharing_breaker_of(mut self, other: &Provider) -> Self {
        self.breaker = other.breaker.clone();
        self
    }

    /// The digest that identifies a request to this target: the cache key, and what the
    /// evidence records as the request.
    pub fn request_digest(&self, req: &ChatRequest, repeat: u32) -> Digest {
        let key = CacheKey {
            target: self.fingerprint.hex(),
            request: req,
            repeat,
        };
        Digest::of(&serde_json::to_vec(&key).unwrap_or_default())
    }

    /// Sends a request under every limit; answers from the cache when allowed.
    pub async fn call(
        &self,
        req: &ChatRequest,
        digest: &Digest,
        use_cache: bool,
    ) -> Result<Called, TargetError> {
        if use_cache && let Some(reply) = self.cache.as_ref().and_then(|c| c.get(digest)) {
            return Ok(Called {
                reply,
                from_cache: true,
                sent: 0,
            });
        }
        let _permit = self
            .semaphore
            .acquire()
            .await
            .map_err(|_| TargetError::Transport("the target is shutting down".into()))?;
        let estimate = estimate_tokens(req) + self.config.max_tokens;
        let mut sent = 0;
        let mut attempt = 0u32;
        loop {
            // Held until the outcome is known: if this call is abandoned, dropping it
            // releases a half-open breaker's probe.
            let ticket = match self.breaker.allow() {
                Ok(t) => t,
                Err(r) => {
                    return Err(TargetError::CircuitOpen {
                        retry_in: r.retry_in,
                    });
                }
            };
            let grant = self.limiter.acquire(estimate).await;
            sent += 1;
            match self.target.complete(req).await {
                Ok(reply) => {
                    ticket.success();
                    if let Some(t) = reply.usage_tokens {
                        self.limiter.record_usage(grant, t);
                    }
                    if let Some(c) = &self.cache
                        && let Err(e) = c.put(digest, &reply)
                    {
                        tracing::warn!(error = %e, "could not cache a response");
                    }
                    return Ok(Called {
                        reply,
                        from_cache: false,
                        sent,
                    });
                }
                Err(e) => {
                    if e.counts_against_endpoint() {
                        ticket.failure();
                    } else {
                        ticket.answered();
                    }
                    if !e.retryable() || attempt >= self.config.retries {
                        return Err(e);
                    }
                    let wait = e.retry_after().unwrap_or_else(|| {
                        backoff(
                            attempt,
                            self.config.backoff_initial,
                            self.config.backoff_max,
                        )
                    });
                    tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, attempt, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Roughly four characters a token, for limits only.
pub fn estimate_tokens(req: &ChatRequest) -> u32 {
    let chars: usize = req.messages.iter().map(|m| m.content.len()).sum();
    (chars / 4) as u32 + 4 * req.messages.len() as u32
}

/// Exponential backoff with full jitter in [d/2, d].
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let d = initial
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / 65535.0
    } else {
        0.5
    };
    d.mul_f64(0.5 + r / 2.0)
}
