//! [`Bus`] on sled.
//!
//! Layout: tree `bus.messages` keyed `topic-len(1) topic priority-rank(1) id(8, BE)`, so a
//! prefix scan of a topic yields high priority first and, within a priority, publish
//! order. Dead letters and expired messages move to `bus.dead` with the reason. Which
//! messages are in flight is kept in memory only: after a crash every unacked message is
//! deliverable again, which is exactly at-least-once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aura_proto::view::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{BoxFuture, Bus, BusError, Delivery, Envelope, Meta, TopicStats};

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// How long a delivered message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// Deliveries after which a failing message goes to the dead letters.
    pub max_deliveries: u32,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(300),
            max_deliveries: 5,
        }
    }
}

/// A message that will not be delivered, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub envelope: Envelope,
    pub reason: String,
    pub time: Timestamp,
}

#[derive(Default)]
struct TopicState {
    notify: Arc<Notify>,
    in_flight: HashMap<Vec<u8>, Instant>,
    stats: TopicStats,
}

pub struct SledBus {
    db: sled::Db,
    messages: sled::Tree,
    dead: sled::Tree,
    config: BusConfig,
    topics: Mutex<HashMap<String, TopicState>>,
}

fn prefix(topic: &str) -> Vec<u8> {
    let t = topic.as_bytes();
    let mut k = Vec::with_capacity(t.len() + 10);
    k.push(t.len().min(255) as u8);
    k.extend_from_slice(&t[..t.len().min(255)]);
    k
}

impl SledBus {
    pub fn open(db: &sled::Db, config: BusConfig) -> Result<Self, BusError> {
        let bus = Self {
            messages: db.open_tree("bus.messages")?,
            dead: db.open_tree("bus.dead")?,
            db: db.clone(),
            config,
            topics: Mutex::new(HashMap::new()),
        };
        // Depth survives a restart: count what is stored.
        for item in bus.messages.iter() {
            let (_, v) = item?;
            if let Ok(env) = serde_json::from_slice::<Envelope>(&v) {
                bus.with_topic(&env.topic, |t| t.stats.depth += 1);
            }
        }
        Ok(bus)
    }

    fn with_topic<R>(&self, topic: &str, f: impl FnOnce(&mut TopicState) -> R) -> R {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        f(topics.entry(topic.to_string()).or_default())
    }

    /// Dead letters of every topic, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        self.dead
            .iter()
            .map(|r| {
                let (_, v) = r?;
                serde_json::from_slice(&v).map_err(|e| BusError::Payload {
                    topic: "bus.dead".into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    fn bury(&self, key: &[u8], envelope: Envelope, reason: String) -> Result<(), BusError> {
        let id = envelope.id;
        let letter = DeadLetter {
            envelope,
            reason,
            time: Timestamp::now(),
        };
        let bytes = serde_json::to_vec(&letter).map_err(|e| BusError::Payload {
            topic: letter.envelope.topic.clone(),
            message: e.to_string(),
        })?;
        self.dead.insert(id.to_be_bytes(), bytes)?;
        self.messages.remove(key)?;
        Ok(())
    }

    /// One scan for a deliverable message. `Ok(None)`: nothing now; the `Instant` says
    /// when an in-flight message becomes visible again, if any does.
    fn try_take(&self, topic: &str) -> Result<(Option<Delivery>, Option<Instant>), BusError> {
        let now = Instant::now();
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let state = topics.entry(topic.to_string()).or_default();
        let mut next_visible: Option<Instant> = None;
        for item in self.messages.scan_prefix(prefix(topic)) {
            let (key, value) = item?;
            if let Some(&visible_at) = state.in_flight.get(key.as_ref()) {
                if visible_at > now {
                    next_visible = Some(next_visible.map_or(visible_at, |n| n.min(visible_at)));
                    continue;
                }
                state.stats.redeliveries += 1;
            }
            let mut env: Envelope = match serde_json::from_slice(&value) {
                Ok(e) => e,
                Err(e) => {
                    // Unreadable: move it aside with the reason instead of looping on it.
                    self.dead.insert(
                        self.db.generate_id()?.to_be_bytes(),
                        serde_json::to_vec(&serde_json::json!({
                            "reason": format!("undecodable envelope: {e}"),
                            "raw": String::from_utf8_lossy(&value),
                        }))
                        .unwrap_or_default(),
                    )?;
                    self.messages.remove(&key)?;
                    state.in_flight.remove(key.as_ref());
                    state.stats.depth = state.stats.depth.saturating_sub(1);
                    state.stats.dead_letters += 1;
                    continue;
                }
            };
            if env.expires.is_some_and(|t| t <= Timestamp::now()) {
                state.in_flight.remove(key.as_ref());
                self.bury(&key, env, "expired before delivery".into())?;
                state.stats.depth = state.stats.depth.saturating_sub(1);
                state.stats.expired += 1;
                continue;
            }
            env.deliveries += 1;
            self.messages.insert(
                &key,
                serde_json::to_vec(&env).map_err(|e| BusError::Payload {
                    topic: topic.into(),
                    message: e.to_string(),
                })?,
            )?;
            state
                .in_flight
                .insert(key.to_vec(), now + self.config.visibility_timeout);
            return Ok((
                Some(Delivery {
                    key: key.to_vec(),
                    envelope: env,
                }),
                None,
            ));
        }
        Ok((None, next_visible))
    }

    async fn receive_inner(&self, topic: &str) -> Result<Delivery, BusError> {
        let notify = self.with_topic(topic, |t| t.notify.clone());
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (found, next_visible) = self.try_take(topic)?;
            if let Some(d) = found {
                return Ok(d);
            }
            let wait = next_visible
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn publish_inner(
        &self,
        topic: &str,
        payload: String,
        meta: Meta,
    ) -> Result<u64, BusError> {
        let id = self.db.generate_id()?;
        let now = Timestamp::now();
        let env = Envelope {
            id,
            topic: topic.to_string(),
            priority: meta.priority,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            created: now,
            expires: meta
                .ttl
                .map(|ttl| Timestamp(now.0 + ttl.as_millis() as u64)),
            deliveries: 0,
            last_error: None,
            payload,
        };
        let mut key = prefix(topic);
        key.push(meta.priority.rank());
        key.extend_from_slice(&id.to_be_bytes());
        let bytes = serde_json::to_vec(&env).map_err(|e| BusError::Payload {
            topic: topic.into(),
            message: e.to_string(),
        })?;
        self.messages.insert(key, bytes)?;
        self.db.flush_async().await?;
        let notify = self.with_topic(topic, |t| {
            t.stats.depth += 1;
            t.notify.clone()
        });
        notify.notify_waiters();
        Ok(id)
    }
}

impl Bus for SledBus {
    fn publish_raw<'a>(
        &'a self,
        topic: &'a str,
        payload: String,
        meta: Meta,
    ) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(self.publish_inner(topic, payload, meta))
    }

    fn receive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Delivery, BusError>> {
        Box::pin(self.receive_inner(topic))
    }

    fn ack(&self, d: &Delivery) -> Result<(), BusError> {
        self.messages.remove(&d.key)?;
        self.with_topic(&d.envelope.topic, |t| {
            if t.in_flight.remove(&d.key).is_some() {
                t.stats.depth = t.stats.depth.saturating_sub(1);
            }
        });
        Ok(())
    }

    fn nack(&self, d: &Delivery, reason: &str) -> Result<(), BusError> {
        let topic = d.envelope.topic.clone();
        let mut env = d.envelope.clone();
        env.last_error = Some(reason.to_string());
        if env.deliveries >= self.config.max_deliveries {
            let why = format!("failed {} deliveries; last error: {reason}", env.deliveries);
            self.bury(&d.key, env, why)?;
            self.with_topic(&topic, |t| {
                t.in_flight.remove(&d.key);
                t.stats.depth = t.stats.depth.saturating_sub(1);
                t.stats.dead_letters += 1;
            });
            return Ok(());
        }
        let bytes = serde_json::to_vec(&env).map_err(|e| BusError::Payload {
            topic: topic.clone(),
            message: e.to_string(),
        })?;
        self.messages.insert(d.key.as_slice(), bytes)?;
        let notify = self.with_topic(&topic, |t| {
            t.in_flight.remove(&d.key);
            t.notify.clone()
        });
        notify.notify_waiters();
        Ok(())
    }

    fn extend(&self, d: &Delivery) {
        let until = Instant::now() + self.config.visibility_timeout;
        self.with_topic(&d.envelope.topic, |t| {
            if let Some(v) = t.in_flight.get_mut(&d.key) {
                *v = until;
            }
        });
    }

    fn release(&self, topic: &str) {
        let notify = self.with_topic(topic, |t| {
            t.in_flight.clear();
            t.notify.clone()
        });
        notify.notify_waiters();
    }

    fn stats(&self, topic: &str) -> TopicStats {
        self.with_topic(topic, |t| TopicStats {
            in_flight: t.in_flight.len() as u64,
            ..t.stats.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Priority, publish};
    use super::*;

    fn bus(config: BusConfig) -> (tempfile::TempDir, SledBus) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, SledBus::open(&db, config).unwrap())
    }

    async fn next(bus: &SledBus, topic: &str) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), bus.receive(topic))
            .await
            .expect("a delivery within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn higher_priority_first_then_fifo() {
        let (_d, bus) = bus(BusConfig::default());
        for (p, n) in [
            (Priority::Low, 1),
            (Priority::Normal, 2),
            (Priority::High, 3),
            (Priority::Normal, 4),
        ] {
            let meta = Meta {
                priority: p,
                ..Meta::default()
            };
            publish(&bus, "t", &n, meta).await.unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            let d = next(&bus, "t").await;
            got.push(d.envelope.decode::<i32>().unwrap());
            bus.ack(&d).unwrap();
        }
        assert_eq!(got, vec![3, 2, 4, 1]);
        assert_eq!(bus.stats("t").depth, 0);
    }

    #[tokio::test]
    async fn unacked_message_is_redelivered_after_the_visibility_timeout() {
        let (_d, bus) = bus(BusConfig {
            visibility_timeout: Duration::from_millis(50),
            max_deliveries: 5,
        });
        publish(&bus, "t", &"x", Meta::correlated("run-1"))
            .await
            .unwrap();
        let first = next(&bus, "t").await;
        let again = next(&bus, "t").await;
        assert_eq!(first.envelope.id, again.envelope.id);
        assert_eq!(again.envelope.deliveries, 2);
        assert_eq!(again.envelope.correlation_id.as_deref(), Some("run-1"));
        assert_eq!(bus.stats("t").redeliveries, 1);
    }

    #[tokio::test]
    async fn nacked_too_often_goes_to_dead_letters_with_the_reason() {
        let (_d, bus) = bus(BusConfig {
            visibility_timeout: Duration::from_secs(60),
            max_deliveries: 3,
        });
        publish(&bus, "t", &"poison", Meta::default())
            .await
            .unwrap();
        for _ in 0..3 {
            let d = next(&bus, "t").await;
            bus.nack(&d, "handler exploded").unwrap();
        }
        let dead = bus.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].reason.contains("handler exploded"),
            "{}",
            dead[0].reason
        );
        assert_eq!(bus.stats("t").dead_letters, 1);
        assert_eq!(bus.stats("t").depth, 0);
    }

    #[tokio::test]
    async fn expired_messages_are_moved_aside_never_delivered() {
        let (_d, bus) = bus(BusConfig::default());
        let meta = Meta {
            ttl: Some(Duration::from_millis(1)),
            ..Meta::default()
        };
        publish(&bus, "t", &"stale", meta).await.unwrap();
        publish(&bus, "t", &"fresh", Meta::default()).await.unwrap();
        // Wait until the first one's expiry has certainly passed.
        let deadline = Timestamp::now().0 + 5;
        while Timestamp::now().0 < deadline {
            tokio::task::yield_now().await;
        }
        let d = next(&bus, "t").await;
        assert_eq!(d.envelope.decode::<String>().unwrap(), "fresh");
        assert_eq!(bus.stats("t").expired, 1);
    }
}
