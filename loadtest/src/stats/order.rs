//! Per-connection order tracking for one room, from the offsets the server assigns: what each
//! offset says about gaps and reorders.

/// Per-connection order tracking for one room, from the offsets the server assigns.
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetTracker {
    /// The highest offset seen (or the room's offset when joined); `None` until known.
    pub(crate) last: Option<u64>,
}

/// What one offset tells about order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The next offset.
    Next,
    /// Offsets were skipped: this many messages are missing.
    Gap(u64),
    /// At or below the highest offset seen: late or duplicated.
    Reorder,
}

impl OffsetTracker {
    /// Records `offset` and says how it relates to what came before.
    pub(crate) fn see(&mut self, offset: u64) -> Order {
        match self.last {
            None => {
                self.last = Some(offset);
                Order::Next
            }
            Some(last) if offset == last + 1 => {
                self.last = Some(offset);
                Order::Next
            }
            Some(last) if offset > last + 1 => {
                self.last = Some(offset);
                Order::Gap(offset - last - 1)
            }
            Some(_) => Order::Reorder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_gaps_and_reorders() {
        let mut t = OffsetTracker { last: Some(4) };
        assert_eq!(t.see(5), Order::Next);
        assert_eq!(t.see(8), Order::Gap(2));
        assert_eq!(t.see(7), Order::Reorder);
        assert_eq!(t.see(8), Order::Reorder);
        assert_eq!(t.see(9), Order::Next);
        let mut fresh = OffsetTracker::default();
        assert_eq!(fresh.see(17), Order::Next);
        assert_eq!(fresh.see(18), Order::Next);
    }
}
