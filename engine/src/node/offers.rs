//! Offer catch-up: a new connection gets the user's open waitlist offers, so an offer made while
//! the user was offline (or between two connections) is not missed. The lookups are batched
//! ([`crate::live::Live::open_offers`]): one read for the connections that open close together.

use super::Node;
use crate::clock::unix_ms;
use crate::conn::Conn;
use evd_protocol::Event;
use evd_protocol::auth::Claims;
use std::sync::Arc;

impl Node {
    /// Sends a new connection the user's open waitlist offers, so an offer made while the user
    /// was offline (or between two connections) is not missed. Runs beside the connection.
    pub(super) fn catch_up_offers(&self, conn: &Arc<Conn>, claims: &Claims) {
        let Some(live) = &self.live else { return };
        let (lookup, hub) = (
            live.open_offers(&claims.org, &claims.sub),
            Arc::clone(&self.hub),
        );
        let conn = Arc::clone(conn);
        self.shutdown.spawn(async move {
            let offers = match lookup.await {
                Ok(offers) => offers,
                Err(e) => return tracing::warn!(error = %e, "open offers lookup failed"),
            };
            let now = unix_ms();
            for o in offers.into_iter().filter(|o| o.expires_at > now) {
                let event = Event::WaitlistOffer(evd_protocol::event::WaitlistOffer {
                    offer: o.id,
                    session: o.session_id,
                    expires_at: o.expires_at,
                    outbox_id: None,
                });
                hub.send(&conn, &event);
            }
        });
    }
}
