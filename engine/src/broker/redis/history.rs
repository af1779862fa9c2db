//! A room's history stream: appending a chat message (the publish script, which also fans it
//! out) and reading the window (the history script).

use super::Inner;
use super::conn::unavailable;
use super::keys::{chat_envelope, chat_message, script_keys, value_u64};
use super::repair::{REPAIR_TRIES, failover};
use crate::broker::{
    BrokerError, History, HistoryRequest, MIN_IDEMPOTENCY_TTL, NewMessage, Original, Published,
    new_epoch,
};
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::ChatMessage;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::time::Duration;

impl Inner {
    /// Appends `msg` to the stream and publishes it in one script ([`crate::broker::lua`]).
    pub(super) async fn append(
        &self,
        room: &RoomKey,
        msg: NewMessage,
    ) -> Result<Published, BrokerError> {
        let idem = msg
            .client_id
            .as_ref()
            .map(|c| format!("{}:{}{}", msg.user.len(), msg.user, c))
            .unwrap_or_default();
        let (id, ts) = (msg.id.clone(), msg.ts);
        let envelope = Envelope {
            node: self.node.clone(),
            body: Body::Chat {
                epoch: String::new(),
                message: ChatMessage {
                    room: room.room().to_string(),
                    offset: 0,
                    id: msg.id,
                    user: msg.user,
                    text: msg.text,
                    ts: msg.ts,
                },
            },
        };
        let body = envelope.encode().map_err(unavailable)?;
        let ttl = Duration::from_secs(self.history.ttl_secs);
        let args: Vec<Value> = vec![
            new_epoch().into(),
            idem.into(),
            Value::Bytes(body),
            self.history.size.to_string().into(),
            ttl.as_millis().to_string().into(),
            ttl.max(MIN_IDEMPOTENCY_TTL).as_millis().to_string().into(),
            (self.history.meta_ttl_secs * 1000).to_string().into(),
            room.channel().into(),
            id.into(),
            ts.to_string().into(),
        ];
        let out = self
            .run_repairing(&self.publish, room, args)
            .await
            .map_err(|e| self.publish_failed(e))?;
        let text = |v: Option<&Value>| v.and_then(Value::as_string).filter(|s| !s.is_empty());
        match out.as_slice() {
            [epoch, offset, dup, rest @ ..] => Ok(Published {
                epoch: epoch.as_string().unwrap_or_default(),
                offset: value_u64(offset).unwrap_or_default(),
                duplicate: value_u64(dup) == Some(1),
                original: text(rest.first())
                    .zip(text(rest.get(1)).and_then(|t| t.parse().ok()))
                    .map(|(id, ts)| Original { id, ts }),
            }),
            _ => Err(BrokerError::Unavailable("unexpected publish reply".into())),
        }
    }

    /// Runs a publish or history `script` on `room`, repairing the room first when its primary
    /// failed over since the last write (`repair`).
    async fn run_repairing(
        &self,
        script: &Script,
        room: &RoomKey,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, BrokerError> {
        for _ in 0..REPAIR_TRIES {
            let out: Vec<Value> = script
                .evalsha_with_reload(&self.conn.client, script_keys(room), args.clone())
                .await
                .map_err(unavailable)?;
            match failover(&out) {
                Some((epoch, offset)) => self.repair(room, &epoch, offset).await?,
                None => return Ok(out),
            }
        }
        Err(BrokerError::Unavailable(
            "the room's primary keeps failing over".into(),
        ))
    }

    /// Counts a failed publish or broadcast and reports it.
    pub(super) fn publish_failed(&self, e: impl std::fmt::Display) -> BrokerError {
        self.metrics.publish_errors.increment(1);
        unavailable(e)
    }

    /// Reads the room's history window.
    pub(super) async fn read_history(
        &self,
        room: &RoomKey,
        req: &HistoryRequest,
    ) -> Result<History, BrokerError> {
        let (mode, a, b) = match req {
            HistoryRequest::Latest(n) => ("L", n.to_string(), String::new()),
            HistoryRequest::Since(pos) => ("S", pos.offset.to_string(), pos.epoch.clone()),
        };
        let args: Vec<Value> = vec![
            new_epoch().into(),
            mode.into(),
            a.into(),
            b.into(),
            (self.history.ttl_secs * 1000).to_string().into(),
            self.history.size.to_string().into(),
        ];
        let out = self.run_repairing(&self.read, room, args).await?;
        let bad = || BrokerError::Unavailable("unexpected history reply".into());
        let epoch = out.first().and_then(|v| v.as_string()).ok_or_else(bad)?;
        let offset = out.get(1).and_then(value_u64).ok_or_else(bad)?;
        let complete = out.get(2).and_then(value_u64).ok_or_else(bad)? == 1;
        let mut messages = Vec::with_capacity(out.len().saturating_sub(3) / 2);
        for pair in out.get(3..).unwrap_or_default().chunks(2) {
            let [o, body] = pair else { return Err(bad()) };
            let o = value_u64(o).ok_or_else(bad)?;
            let env = body
                .as_bytes()
                .and_then(|b| chat_envelope(&epoch, o, b))
                .ok_or_else(bad)?;
            messages.extend(chat_message(env));
        }
        Ok(History {
            epoch,
            offset,
            messages,
            complete,
        })
    }
}
