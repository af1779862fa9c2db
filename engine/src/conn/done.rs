//! [`Done`]: the connection's "writer side is done" signal (its close frame is out, or the
//! socket failed), set by whoever writes and waited for by the connection's reader.
//!
//! A flag and one waker, not a `Notify`: the reader waits on it for the connection's whole
//! life, and a `Notify`'s waiter (a list node inside the waiting future) would sit in every idle
//! connection's task, where this wait holds one reference.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// A signal set once, with one waiter at a time. See the module docs.
#[derive(Debug, Default)]
pub struct Done {
    set: AtomicBool,
    waiter: AtomicWaker,
}

impl Done {
    /// Sets the signal and wakes the waiter; setting it again changes nothing.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.waiter.wake();
    }

    /// Whether the signal is set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Completes once the signal is set (at once if it is). One waiter at a time: a second
    /// one's wake-ups replace the first's.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_set() {
                return Poll::Ready(());
            }
            self.waiter.register(cx.waker());
            // Set between the look and the registration: its wake-up may have missed us.
            if self.is_set() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_wakes_once_set_and_a_later_one_at_once() {
        let done = Arc::new(Done::default());
        let d = Arc::clone(&done);
        let waiter = tokio::spawn(async move { d.wait().await });
        tokio::task::yield_now().await;
        assert!(!done.is_set());
        done.set();
        waiter.await.unwrap();
        // Set stays set: a wait that starts afterwards completes at once.
        done.wait().await;
        done.set();
        assert!(done.is_set());
    }
}
