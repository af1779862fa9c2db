//! WebSocket close codes used by the engine.
//!
//! Codes below 4500 mean "reconnect with backoff and jitter"; codes from 4500 up mean "do not
//! reconnect until something changes" (a new token, a fixed client).

use std::fmt;

/// A close code the engine sends, with its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1000: normal closure (the client asked to close).
    Normal = 1000,
    /// 1002: the peer broke the WebSocket protocol (bad framing, bad close code).
    ProtocolError = 1002,
    /// 1007: a text message or close reason was not valid UTF-8.
    InvalidPayload = 1007,
    /// 1009: a frame or message was larger than the server accepts.
    MessageTooBig = 1009,
    /// 1011: an internal error on the server.
    InternalError = 1011,
    /// 4001: the server is shutting down or draining; reconnect elsewhere.
    ShuttingDown = 4001,
    /// 4008: slow consumer; the outbound queue went over its byte limit.
    SlowConsumer = 4008,
    /// 4012: heartbeat timeout; nothing was received for two heartbeat intervals.
    HeartbeatTimeout = 4012,
    /// 4029: flood; the client kept sending after being rate limited.
    Flood = 4029,
    /// 4500: protocol violation.
    ProtocolViolation = 4500,
    /// 4501: the token expired or was revoked.
    TokenExpired = 4501,
    /// 4503: forbidden.
    Forbidden = 4503,
    /// 4504: an organizer disconnected this user (`DISCONNECTED` came first, with the reason
    /// and any ban). Reconnect only when the user acts, not on a timer.
    Disconnected = 4504,
}

impl CloseCode {
    /// Every code, for docs and exhaustive tests.
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Normal,
        CloseCode::ProtocolError,
        CloseCode::InvalidPayload,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::ShuttingDown,
        CloseCode::SlowConsumer,
        CloseCode::HeartbeatTimeout,
        CloseCode::Flood,
        CloseCode::ProtocolViolation,
        CloseCode::TokenExpired,
        CloseCode::Forbidden,
        CloseCode::Disconnected,
    ];

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The short reason sent in the close frame and used as a metrics label.
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::ProtocolError => "websocket_protocol_error",
            CloseCode::InvalidPayload => "invalid_utf8",
            CloseCode::MessageTooBig => "too_large",
            CloseCode::InternalError => "internal",
            CloseCode::ShuttingDown => "shutting_down",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::HeartbeatTimeout => "heartbeat_timeout",
            CloseCode::Flood => "flood",
            CloseCode::ProtocolViolation => "protocol_violation",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::Forbidden => "forbidden",
            CloseCode::Disconnected => "disconnected",
        }
    }

    /// Whether a client should reconnect (with backoff and jitter) after this code.
    pub const fn should_reconnect(self) -> bool {
        reconnect_allowed(self.code())
    }
}

/// Whether a client should reconnect after a close with `code`: true below 4500.
pub const fn reconnect_allowed(code: u16) -> bool {
    code < 4500
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_split_at_4500() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert!(CloseCode::SlowConsumer.should_reconnect());
        assert!(CloseCode::ShuttingDown.should_reconnect());
        assert!(!CloseCode::TokenExpired.should_reconnect());
        assert!(!CloseCode::ProtocolViolation.should_reconnect());
        assert!(!CloseCode::Disconnected.should_reconnect());
        assert_eq!(CloseCode::from_code(4504), Some(CloseCode::Disconnected));
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
