//! The time source, injected so waitlist expiry is tested without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Unix milliseconds: how times are stored, compared and put on the wire.
pub type Millis = i64;

/// Tells the current time in unix milliseconds.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Millis + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| chrono::Utc::now().timestamp_millis()))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> Millis + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// A clock that stands still until moved, and the handle that moves it.
    pub fn manual(start: Millis) -> (Clock, ManualClock) {
        let now = Arc::new(AtomicI64::new(start));
        let read = now.clone();
        (
            Clock(Arc::new(move || read.load(Ordering::SeqCst))),
            ManualClock(now),
        )
    }

    /// Now.
    pub fn now(&self) -> Millis {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// Moves a [`Clock::manual`] clock.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// The time it shows.
    pub fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}
