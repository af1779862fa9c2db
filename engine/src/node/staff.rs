//! The tokens of this node's staff connections (organizers and owners), by connection: what a
//! membership change re-checks their rooms against. Attendee tokens are not kept: a membership
//! change never lowers an attendee (nothing is below it), and they are nearly every connection.

use crate::conn::ConnId;
use evd_protocol::auth::Claims;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Staff connections' current tokens. A `std`-style mutex: no await while it is held.
#[derive(Debug, Default)]
pub struct StaffConns(Mutex<HashMap<ConnId, Arc<Claims>>>);

impl StaffConns {
    /// Keeps `claims` for `conn` if they are staff's; forgets the connection otherwise (a
    /// `refresh` may change the role).
    pub fn track(&self, conn: ConnId, claims: &Claims) {
        let mut map = self.0.lock();
        if claims.role.is_staff() {
            map.insert(conn, Arc::new(claims.clone()));
        } else {
            map.remove(&conn);
        }
    }

    /// Forgets a closed connection.
    pub fn forget(&self, conn: ConnId) {
        self.0.lock().remove(&conn);
    }

    /// The token of a staff connection.
    pub fn claims(&self, conn: ConnId) -> Option<Arc<Claims>> {
        self.0.lock().get(&conn).cloned()
    }
}
