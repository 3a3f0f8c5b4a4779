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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_hook_reload_is_not_available() {
        let e = request_reload(None).await.unwrap_err();
        assert_eq!(e, vec!["reload not available in this weftd"]);
        let (tx, rx) = reload_hook();
        drop(rx);
        assert_eq!(request_reload(Some(&tx)).await.unwrap_err(), e);
    }

    #[tokio::test]
    async fn the_daemon_answers_through_the_hook() {
        let (tx, mut rx) = reload_hook();
        let daemon = tokio::spawn(async move {
            let first = rx.recv().await.unwrap_or_else(|| unreachable!());
            let _ = first.reply.send(Ok("1 peer added".into()));
            let second = rx.recv().await.unwrap_or_else(|| unreachable!());
            let _ = second
                .reply
                .send(Err(vec!["bgp.asn: must not be 0".into()]));
            let third = rx.recv().await.unwrap_or_else(|| unreachable!());
            drop(third);
        });
        assert_eq!(request_reload(Some(&tx)).await, Ok("1 peer added".into()));
        assert_eq!(
            request_reload(Some(&tx)).await,
            Err(vec!["bgp.asn: must not be 0".into()])
        );
        assert_eq!(
            request_reload(Some(&tx)).await,
            Err(vec!["the reload ended without an answer".into()])
        );
        let _ = daemon.await;
    }
}
