//! `sd_notify`: tells systemd (`Type=notify`) when the daemon is ready and stopping.
//! Does nothing when `NOTIFY_SOCKET` is unset.

use sd_notify::NotifyState;

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
