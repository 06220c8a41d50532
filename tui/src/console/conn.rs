//! The console's connection task: connects, subscribes to every topic, forwards what
//! arrives, and reconnects with capped backoff when the daemon goes away. Alerts resume
//! from the last one seen, so a restart of the daemon loses none.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aura_proto::handshake::Welcome;
use aura_proto::view::{AuditDetail, RunId};
use aura_proto::wire::{Reply, RequestBody, Subscription, Topic, Update};
use tokio::sync::mpsc;

use crate::client::Client;

#[derive(Debug, Clone)]
pub enum ConnEvent {
    Connecting {
        attempt: u32,
    },
    Connected(Welcome),
    Update(Update),
    /// A finished run's control results, as asked with [`ConnCommand::FetchAudit`].
    Audit(AuditDetail),
    /// How a request typed on the command line went, in a sentence.
    Outcome(Result<String, String>),
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

/// Asks of the connection task.
#[derive(Debug, Clone)]
pub enum ConnCommand {
    /// A gap in a topic's sequence: subscribe again for a fresh snapshot.
    Resubscribe(Topic),
    /// The control results of a run.
    FetchAudit(RunId),
    /// An operator's request; answered with [`ConnEvent::Outcome`].
    Request(RequestBody),
}

/// A request's reply in a sentence for the console's status line.
fn outcome(reply: Result<Reply, crate::client::ClientError>) -> Result<String, String> {
    match reply {
        Ok(Reply::AuditStarted { run }) => Ok(format!("audit run {run} started")),
        Ok(Reply::Done) => Ok("done".into()),
        Ok(other) => Ok(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Wait before reconnect attempt `n` (1-based): doubles, capped (`min`, so it never
/// grows past the cap).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_INITIAL.saturating_mul(factor).min(BACKOFF_MAX)
}

pub fn spawn(socket: PathBuf) -> (mpsc::Receiver<ConnEvent>, mpsc::Sender<ConnCommand>) {
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    tokio::spawn(run(socket, ev_tx, cmd_rx));
    (ev_rx, cmd_tx)
}

async fn run(
    socket: PathBuf,
    events: mpsc::Sender<ConnEvent>,
    mut commands: mpsc::Receiver<ConnCommand>,
) {
    let mut attempt = 0u32;
    // The next alert seq to ask for; 1 replays the whole log on first attach.
    let mut next_alert = 1u64;
    loop {
        attempt += 1;
        if events
            .send(ConnEvent::Connecting { attempt })
            .await
            .is_err()
        {
            return;
        }
        let error = match Client::connect(&socket).await {
            Ok(mut client) => {
                attempt = 0;
                let updates = client.take_updates();
                let client = Arc::new(client);
                if events
                    .send(ConnEvent::Connected(client.welcome.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
                match updates {
                    Some(updates) => {
                        serve(&client, updates, &events, &mut commands, &mut next_alert).await
                    }
                    None => "no update channel".into(),
                }
            }
            Err(e) => e.to_string(),
        };
        let retry_in = backoff(attempt.max(1));
        if events
            .send(ConnEvent::Disconnected { error, retry_in })
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(retry_in).await;
    }
}

/// Subscribes and forwards until the connection drops; returns why it dropped.
async fn serve(
    client: &Arc<Client>,
    mut updates: mpsc::Receiver<Update>,
    events: &mpsc::Sender<ConnEvent>,
    commands: &mut mpsc::Receiver<ConnCommand>,
    next_alert: &mut u64,
) -> String {
    let subs = [
        Subscription::Daemon,
        Subscription::Agents,
        Subscription::Audits,
        Subscription::Alerts {
            from: Some(*next_alert),
        },
    ];
    for sub in subs {
        if let Err(e) = client.request(RequestBody::Subscribe(sub)).await {
            return e.to_string();
        }
    }
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some(update) = update else {
                    return "the daemon closed the connection".into();
                };
                if let Update::Alert(a) = &update {
                    *next_alert = a.seq + 1;
                }
                if events.send(ConnEvent::Update(update)).await.is_err() {
                    return "console closed".into();
                }
            }
            Some(cmd) = commands.recv() => match cmd {
                ConnCommand::Resubscribe(topic) => {
                    let sub = match topic {
                        Topic::Daemon => Subscription::Daemon,
                        Topic::Agents => Subscription::Agents,
                        Topic::Audits => Subscription::Audits,
                        Topic::Alerts => Subscription::Alerts { from: Some(*next_alert) },
                        // The console does not follow the event log.
                        Topic::Events => continue,
                    };
                    let c = client.clone();
                    tokio::spawn(async move { let _ = c.request(RequestBody::Subscribe(sub)).await; });
                }
                ConnCommand::Request(body) => {
                    let (c, events) = (client.clone(), events.clone());
                    tokio::spawn(async move {
                        let _ = events.send(ConnEvent::Outcome(outcome(c.request(body).await))).await;
                    });
                }
                ConnCommand::FetchAudit(run) => {
                    let (c, events) = (client.clone(), events.clone());
                    tokio::spawn(async move {
                        if let Ok(Reply::Audit(detail)) = c.request(RequestBody::GetAudit { run }).await {
                            let _ = events.send(ConnEvent::Audit(detail)).await;
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stops_at_the_cap() {
        assert_eq!(backoff(1), BACKOFF_INITIAL);
        assert_eq!(backoff(2), BACKOFF_INITIAL * 2);
        assert_eq!(backoff(100), BACKOFF_MAX);
        assert!((1..50).all(|n| backoff(n) <= backoff(n + 1)));
    }
}
