//! The wire layout in Redis: a room's keys and its slot's owner, the pub/sub payload format, and
//! decoding what the scripts return.

use crate::room_key::RoomKey;
use bytes::Bytes;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::ChatMessage;
use fred::prelude::*;
use fred::types::cluster::ClusterRouting;

/// The keys of the publish and history scripts: the room's meta hash and its stream.
pub(super) fn script_keys(room: &RoomKey) -> Vec<String> {
    let channel = room.channel();
    vec![format!("{channel}:m"), format!("{channel}:s")]
}

/// `channel`'s cluster slot (a CRC16 of its hash tag): worked out once per subscribed room, as
/// the probe round compares every room's owner with the slot map each second.
pub(super) fn slot_of(channel: &str) -> u16 {
    ClusterRouting::hash_key(channel.as_bytes())
}

/// The primary owning `slot` in `state` (`None` for a single Redis).
pub(super) fn owner_at(state: Option<&ClusterRouting>, slot: u16) -> Option<&Server> {
    state?.get_server(slot)
}

/// The primary owning `channel`'s slot in `state` (`None` for a single Redis).
pub(super) fn owner_in(state: Option<&ClusterRouting>, channel: &str) -> Option<Server> {
    owner_at(state, slot_of(channel)).cloned()
}

/// A pub/sub payload: `C<epoch>\n<offset>\n<envelope>` for chat (the script fills in the
/// position), `E<envelope>` for everything else.
pub(super) enum Payload<'a> {
    Chat(&'a str, u64, &'a [u8]),
    Other(&'a [u8]),
}

pub(super) fn parse_payload(bytes: &[u8]) -> Option<Payload<'_>> {
    match bytes.split_first()? {
        (b'C', rest) => {
            let mut it = rest.splitn(3, |b| *b == b'\n');
            let epoch = std::str::from_utf8(it.next()?).ok()?;
            let offset = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
            Some(Payload::Chat(epoch, offset, it.next()?))
        }
        (b'E', rest) => Some(Payload::Other(rest)),
        _ => None,
    }
}

/// The [`Payload::Other`] payload of an encoded envelope.
pub(super) fn other_payload(encoded: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(encoded.len() + 1);
    payload.push(b'E');
    payload.extend_from_slice(encoded);
    Bytes::from(payload)
}

/// Decodes a history body: the envelope with the offset and epoch the script assigned.
pub(super) fn chat_envelope(epoch: &str, offset: u64, body: &[u8]) -> Option<Envelope> {
    let mut env = Envelope::decode(body).ok()?;
    match &mut env.body {
        Body::Chat { epoch: e, message } => {
            *e = epoch.to_owned();
            message.offset = offset;
        }
        _ => return None,
    }
    Some(env)
}

pub(super) fn chat_message(env: Envelope) -> Option<ChatMessage> {
    match env.body {
        Body::Chat { message, .. } => Some(message),
        _ => None,
    }
}

/// An integer reply, a numeric string or numeric bytes.
pub(super) fn value_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        let Some(Payload::Chat(e, o, b)) = parse_payload(b"Cabc\n12\n\x81\x01") else {
            panic!("chat payload");
        };
        assert_eq!((e, o, b), ("abc", 12, &b"\x81\x01"[..]));
        assert!(matches!(
            parse_payload(b"Exyz"),
            Some(Payload::Other(b"xyz"))
        ));
        assert!(parse_payload(b"").is_none());
        assert!(parse_payload(b"Cnope").is_none());
    }
}
