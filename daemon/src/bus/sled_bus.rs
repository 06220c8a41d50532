//! [`Bus`] on sled.
//!
//! Layout: tree `bus.messages` keyed `queue-len(1) queue priority-rank(1) id(8, BE)`,
//! where a queue is a topic (its default consumer group) or `topic/group` for each
//! consumer group registered on the topic; a publish puts one copy in each. A prefix scan
//! of a queue yields high priority first and, within a priority, publish order. Acked
//! messages are deleted, so the store stays bounded. Dead letters and expired messages
//! move to `bus.dead` with the reason. Which messages are in flight is kept in memory
//! only: after a crash every unacked message is deliverable again, which is exactly
//! at-least-once. A publish returns after a (shared) flush, so it is durable; a queue
//! at its maximum depth makes publishers wait, then fail, never drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aura_proto::view::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{BoxFuture, Bus, BusError, Delivery, Envelope, Meta, TopicStats};
use crate::durability::Committer;

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// How long a delivered message stays invisible before it is delivered again.
    pub visibility_timeout: Duration,
    /// Deliveries after which a failing message goes to the dead letters.
    pub max_deliveries: u32,
    /// Messages waiting in a queue before publishers wait.
    pub max_depth: u64,
    /// How long a publisher waits for room before it gets [`BusError::Full`].
    pub publish_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(300),
            max_deliveries: 5,
            max_depth: 100_000,
            publish_timeout: Duration::from_secs(30),
        }
    }
}

impl From<&crate::config::BusSection> for BusConfig {
    fn from(c: &crate::config::BusSection) -> Self {
        Self {
            visibility_timeout: c.visibility_timeout,
            max_deliveries: c.max_deliveries,
            max_depth: c.max_depth,
            publish_timeout: c.publish_timeout,
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
    /// Wakes receivers when a message arrives or becomes visible again.
    notify: Arc<Notify>,
    /// Wakes publishers waiting for room.
    room: Arc<Notify>,
    in_flight: HashMap<Vec<u8>, Instant>,
    stats: TopicStats,
}

pub struct SledBus {
    db: sled::Db,
    messages: sled::Tree,
    dead: sled::Tree,
    groups: sled::Tree,
    committer: Committer,
    config: BusConfig,
    topics: Mutex<HashMap<String, TopicState>>,
}

/// The queue a consumer group of a topic reads.
pub fn queue(topic: &str, group: &str) -> String {
    format!("{topic}/{group}")
}

fn prefix(topic: &str) -> Vec<u8> {
    let t = topic.as_bytes();
    let mut k = Vec::with_capacity(t.len() + 10);
    k.push(t.len().min(255) as u8);
    k.extend_from_slice(&t[..t.len().min(255)]);
    k
}

impl SledBus {
    pub fn open(db: &sled::Db, config: BusConfig, committer: Committer) -> Result<Self, BusError> {
        let bus = Self {
            messages: db.open_tree("bus.messages")?,
            dead: db.open_tree("bus.dead")?,
            groups: db.open_tree("bus.groups")?,
            db: db.clone(),
            committer,
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
            // A message its consumer never settles (it crashes on it) stops here too.
            if env.deliveries >= self.config.max_deliveries {
                state.in_flight.remove(key.as_ref());
                let why = format!(
                    "delivered {} times without being acknowledged; last error: {}",
                    env.deliveries,
                    env.last_error
                        .clone()
                        .unwrap_or_else(|| "the consumer stopped while handling it".into())
                );
                self.bury(&key, env, why)?;
                state.stats.depth = state.stats.depth.saturating_sub(1);
                state.stats.dead_letters += 1;
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

    /// Registers a consumer group: from now on each message published to `topic` is also
    /// queued for it, read with `receive(&queue(topic, group))`. Registered groups persist.
    pub fn add_group(&self, topic: &str, group: &str) -> Result<(), BusError> {
        self.groups
            .insert(queue(topic, group).as_bytes(), topic.as_bytes())?;
        Ok(())
    }

    /// The queues a publish to `topic` fills: its registered groups, or the topic itself.
    fn queues(&self, topic: &str) -> Result<Vec<String>, BusError> {
        let mut out = Vec::new();
        for item in self.groups.scan_prefix(format!("{topic}/").as_bytes()) {
            let (k, v) = item?;
            if v.as_ref() == topic.as_bytes() {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        if out.is_empty() {
            out.push(topic.to_string());
        }
        Ok(out)
    }

    /// Waits until `queue` has room; errors after the publish timeout.
    async fn wait_for_room(&self, queue: &str) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout;
        loop {
            let (depth, room) = self.with_topic(queue, |t| (t.stats.depth, t.room.clone()));
            if depth < self.config.max_depth {
                return Ok(());
            }
            let wait = room.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            // Re-check after registering, so an ack in between is not missed.
            if self.with_topic(queue, |t| t.stats.depth) < self.config.max_depth {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return Err(BusError::Full {
                    topic: queue.to_string(),
                    depth,
                });
            }
        }
    }

    async fn publish_inner(
        &self,
        topic: &str,
        payload: String,
        meta: Meta,
    ) -> Result<u64, BusError> {
        let queues = self.queues(topic)?;
        for q in &queues {
            self.wait_for_room(q).await?;
        }
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
        for q in &queues {
            let mut env = env.clone();
            env.topic = q.clone();
            let mut key = prefix(q);
            key.push(meta.priority.rank());
            key.extend_from_slice(&id.to_be_bytes());
            let bytes = serde_json::to_vec(&env).map_err(|e| BusError::Payload {
                topic: topic.into(),
                message: e.to_string(),
            })?;
            self.messages.insert(key, bytes)?;
        }
        self.committer
            .commit()
            .await
            .map_err(BusError::Durability)?;
        for q in &queues {
            let notify = self.with_topic(q, |t| {
                t.stats.depth += 1;
                t.notify.clone()
            });
            notify.notify_waiters();
        }
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
        let room = self.with_topic(&d.envelope.topic, |t| {
            if t.in_flight.remove(&d.key).is_some() {
                t.stats.depth = t.stats.depth.saturating_sub(1);
            }
            t.room.clone()
        });
        room.notify_waiters();
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
        let c = Committer::start(&db);
        (dir, SledBus::open(&db, config, c).unwrap())
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
    async fn acked_messages_leave_the_store_so_it_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let bus = SledBus::open(&db, BusConfig::default(), Committer::start(&db)).unwrap();
        for round in 0..5 {
            for i in 0..200 {
                publish(&bus, "t", &(round * 1000 + i), Meta::default())
                    .await
                    .unwrap();
            }
            for _ in 0..200 {
                let d = next(&bus, "t").await;
                bus.ack(&d).unwrap();
            }
            assert_eq!(
                bus.messages.len(),
                0,
                "round {round}: acked messages remain"
            );
        }
        // Reopened, nothing acked comes back.
        drop(bus);
        let bus = SledBus::open(&db, BusConfig::default(), Committer::start(&db)).unwrap();
        assert_eq!(bus.stats("t").depth, 0);
        publish(&bus, "t", &"fresh", Meta::default()).await.unwrap();
        assert_eq!(
            next(&bus, "t").await.envelope.decode::<String>().unwrap(),
            "fresh"
        );
    }

    #[tokio::test]
    async fn unacked_message_is_redelivered_after_the_visibility_timeout() {
        let (_d, bus) = bus(BusConfig {
            visibility_timeout: Duration::from_millis(50),
            ..BusConfig::default()
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
            ..BusConfig::default()
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
    async fn a_slow_consumer_makes_publishers_wait_then_fail_never_drop() {
        let (_d, bus) = bus(BusConfig {
            max_depth: 3,
            publish_timeout: Duration::from_millis(200),
            ..BusConfig::default()
        });
        let bus = std::sync::Arc::new(bus);
        for i in 0..3 {
            publish(&*bus, "t", &i, Meta::default()).await.unwrap();
        }
        // Full: the next publish waits; consuming one lets it through.
        let b2 = bus.clone();
        let waiting = tokio::spawn(async move { publish(&*b2, "t", &3, Meta::default()).await });
        let d = next(&bus, "t").await;
        bus.ack(&d).unwrap();
        waiting.await.unwrap().unwrap();
        // With nobody consuming, the publisher gets an error, and nothing was dropped.
        let err = publish(&*bus, "t", &4, Meta::default()).await.unwrap_err();
        assert!(matches!(err, BusError::Full { .. }), "{err}");
        let mut got = Vec::new();
        for _ in 0..3 {
            let d = next(&bus, "t").await;
            got.push(d.envelope.decode::<i32>().unwrap());
            bus.ack(&d).unwrap();
        }
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn every_consumer_group_gets_its_own_copy() {
        let (_d, bus) = bus(BusConfig::default());
        bus.add_group("events", "report").unwrap();
        bus.add_group("events", "learning").unwrap();
        publish(&bus, "events", &"e1", Meta::correlated("c"))
            .await
            .unwrap();
        for g in ["report", "learning"] {
            let d = next(&bus, &queue("events", g)).await;
            assert_eq!(d.envelope.decode::<String>().unwrap(), "e1");
            assert_eq!(d.envelope.correlation_id.as_deref(), Some("c"));
            bus.ack(&d).unwrap();
        }
        assert_eq!(bus.stats(&queue("events", "report")).depth, 0);
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
