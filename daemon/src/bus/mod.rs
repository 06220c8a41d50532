//! The message bus agents talk through: named topics, priorities, at-least-once delivery
//! with ack, redelivery after a visibility timeout, dead letters, TTL, and correlation
//! and causation ids on every envelope.
//!
//! [`Bus`] is the seam: [`SledBus`] keeps everything in the daemon's sled store; a
//! distributed engine can implement the same trait later without touching the agents.

mod sled_bus;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aura_proto::view::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use sled_bus::{BusConfig, DeadLetter, SledBus, queue};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// Sort rank in keys: lower is delivered first.
    fn rank(self) -> u8 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

/// A message on the bus, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub topic: String,
    pub priority: Priority,
    /// Shared by every message of one piece of work (e.g. an audit run).
    pub correlation_id: Option<String>,
    /// The message that caused this one.
    pub causation_id: Option<u64>,
    pub created: Timestamp,
    /// Not delivered after this; counted and moved aside instead.
    pub expires: Option<Timestamp>,
    /// Times handed to a consumer so far.
    pub deliveries: u32,
    /// The reason given with the last negative acknowledgement.
    pub last_error: Option<String>,
    /// The message, JSON.
    pub payload: String,
}

impl Envelope {
    pub fn decode<M: DeserializeOwned>(&self) -> Result<M, BusError> {
        serde_json::from_str(&self.payload).map_err(|e| BusError::Payload {
            topic: self.topic.clone(),
            message: e.to_string(),
        })
    }
}

/// What a publisher chooses besides the message.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub priority: Priority,
    pub correlation_id: Option<String>,
    pub causation_id: Option<u64>,
    pub ttl: Option<Duration>,
}

impl Meta {
    pub fn correlated(id: impl Into<String>) -> Self {
        Self {
            correlation_id: Some(id.into()),
            ..Self::default()
        }
    }

    /// Carries correlation forward and names `cause` as the cause.
    pub fn caused_by(cause: &Envelope) -> Self {
        Self {
            priority: cause.priority,
            correlation_id: cause.correlation_id.clone(),
            causation_id: Some(cause.id),
            ttl: None,
        }
    }
}

/// A message handed to a consumer; ack or nack it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) key: Vec<u8>,
    pub envelope: Envelope,
}

/// Counters per topic, for `aura status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStats {
    pub depth: u64,
    pub in_flight: u64,
    pub redeliveries: u64,
    pub dead_letters: u64,
    pub expired: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("message on topic {topic} is unreadable: {message}")]
    Payload { topic: String, message: String },
    #[error("the bus is shut down")]
    Closed,
    #[error("topic {topic} is full ({depth} messages waiting); its consumer is not keeping up")]
    Full { topic: String, depth: u64 },
    #[error("the bus could not make a message durable: {0}")]
    Durability(String),
}

pub trait Bus: Send + Sync + 'static {
    /// Stores a message durably, then returns its id.
    fn publish_raw<'a>(
        &'a self,
        topic: &'a str,
        payload: String,
        meta: Meta,
    ) -> BoxFuture<'a, Result<u64, BusError>>;

    /// Waits for the next deliverable message on `topic`: highest priority first, then
    /// oldest. The message stays invisible to other receives until acked, nacked, or its
    /// visibility timeout passes.
    fn receive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Delivery, BusError>>;

    /// Done with it: the message is removed.
    fn ack(&self, delivery: &Delivery) -> Result<(), BusError>;

    /// Failed: the message becomes deliverable again, or goes to the dead letters when it
    /// has been delivered the configured number of times.
    fn nack(&self, delivery: &Delivery, reason: &str) -> Result<(), BusError>;

    /// Keeps a message invisible for another visibility timeout: its consumer is still
    /// working on it (a long audit run).
    fn extend(&self, delivery: &Delivery);

    /// Makes every in-flight message of `topic` deliverable again at once, for a consumer
    /// that restarted and will not ack what it held.
    fn release(&self, topic: &str);

    fn stats(&self, topic: &str) -> TopicStats;
}

/// Publishes a typed message.
pub async fn publish<M: Serialize>(
    bus: &dyn Bus,
    topic: &str,
    message: &M,
    meta: Meta,
) -> Result<u64, BusError> {
    let payload = serde_json::to_string(message).map_err(|e| BusError::Payload {
        topic: topic.to_string(),
        message: e.to_string(),
    })?;
    bus.publish_raw(topic, payload, meta).await
}
