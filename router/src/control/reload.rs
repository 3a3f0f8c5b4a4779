//! The reload hook: how the control socket asks the daemon to re-read its
//! config (`weft reload`). The daemon owns the reload; the control side
//! only sends a [`ReloadRequest`] and relays the answer.

use tokio::sync::{mpsc, oneshot};

/// The answer to a reload: a one-line summary of what changed, or every
/// problem that made the daemon keep its running config.
pub type ReloadResult = Result<String, Vec<String>>;

/// One `weft reload`.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Where the daemon answers.
    pub reply: oneshot::Sender<ReloadResult>,
}

/// The daemon's end of the hook: requests arrive on the receiver.
pub fn reload_hook() -> (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>) {
    mpsc::channel(4)
}

/// Asks the daemon behind `hook` to reload and waits for its answer.
pub async fn request_reload(hook: Option<&mpsc::Sender<ReloadRequest>>) -> ReloadResult {
    let unavailable = || vec!["reload not available in this weftd".to_owned()];
    let Some(hook) = hook else {
        return Err(unavailable());
    };
    let (tx, rx) = oneshot::channel();
    if hook.send(ReloadRequest { reply: tx }).await.is_err() {
        return Err(unavailable());
    }
    rx.await
        .unwrap_or_else(|_| Err(vec!["the reload ended without an answer".to_owned()]))
}
