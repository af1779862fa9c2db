//! The stamp a publisher puts at the front of every message text: `<seq>:<intended µs>:` and
//! padding up to the payload size.
//!
//! The intended send time is the open-loop schedule's time for that message, not the time it
//! actually left: a publisher that falls behind still stamps the time it should have sent, so
//! the receivers' latency includes the wait (no coordinated omission).

/// A parsed stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The publisher's sequence number for this message.
    pub(crate) seq: u64,
    /// When the message was due to be sent, unix microseconds.
    pub(crate) intended_us: u64,
}

/// The text for message `seq` due at `intended_us`, padded with `x` to `payload` bytes (never
/// shorter than the stamp itself).
pub(crate) fn text(seq: u64, intended_us: u64, payload: usize) -> String {
    let mut s = format!("{seq}:{intended_us}:");
    if s.len() < payload {
        s.extend(std::iter::repeat_n('x', payload - s.len()));
    }
    s
}

/// Reads the stamp at the front of a message text; `None` for texts the harness did not send.
pub(crate) fn parse(text: &str) -> Option<Stamp> {
    let mut parts = text.splitn(3, ':');
    let seq = parts.next()?.parse().ok()?;
    let intended_us = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(Stamp { seq, intended_us })
}

/// Now, unix microseconds.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_pads_to_the_payload() {
        let t = text(42, 1_795_000_000_123_456, 64);
        assert_eq!(t.len(), 64);
        assert!(t.ends_with('x'));
        assert_eq!(
            parse(&t),
            Some(Stamp {
                seq: 42,
                intended_us: 1_795_000_000_123_456
            })
        );
    }

    #[test]
    fn a_payload_smaller_than_the_stamp_keeps_the_whole_stamp() {
        let t = text(7, 123, 2);
        assert_eq!(t, "7:123:");
        assert_eq!(parse(&t).map(|s| s.seq), Some(7));
    }

    #[test]
    fn foreign_texts_have_no_stamp() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("1:2"), None);
        assert_eq!(parse("a:2:x"), None);
    }
}
