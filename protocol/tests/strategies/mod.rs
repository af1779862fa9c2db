//! proptest strategies for every wire type: each op as a [`Request`] that passes the decoder's
//! own checks, each event, and each broker [`Envelope`] body. The round-trip and fuzz tests share
//! them.
#![allow(dead_code, unreachable_pub)]

use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::*;
use evd_protocol::op::*;
use evd_protocol::{ErrorCode, RoomKind, RoomName};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::Union;

/// Any text, control characters and astral planes included, kept short so cases stay fast.
pub fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

/// Text that is not empty, as the decoder requires of `text`, ids and tokens.
pub fn non_empty() -> impl Strategy<Value = String> {
    vec(any::<char>(), 1..12).prop_map(String::from_iter)
}

/// A valid id: 1 to 128 printable ASCII characters other than `{` and `}`.
pub fn id() -> impl Strategy<Value = String> {
    let ch = prop_oneof![proptest::char::range('!', 'z'), Just('|'), Just('~'),];
    prop_oneof![
        4 => vec(ch.clone(), 1..8),
        1 => vec(ch, 120..=128),
    ]
    .prop_map(String::from_iter)
}

/// Any role.
pub fn role() -> impl Strategy<Value = evd_protocol::auth::Role> {
    use evd_protocol::auth::Role;
    prop_oneof![
        Just(Role::Attendee),
        Just(Role::Organizer),
        Just(Role::Owner)
    ]
}

pub fn room() -> impl Strategy<Value = RoomName> {
    let kind = prop_oneof![
        Just(RoomKind::Event),
        Just(RoomKind::Session),
        Just(RoomKind::User)
    ];
    (kind, id()).prop_map(|(k, id)| RoomName::new(k, &id).expect("a valid id"))
}

pub fn op() -> impl Strategy<Value = Op> {
    let position =
        (non_empty(), any::<u64>()).prop_map(|(epoch, offset)| StreamPosition { epoch, offset });
    Union::new(vec![
        (
            room(),
            0..=evd_protocol::MAX_HISTORY_REQUEST,
            proptest::option::of(position),
        )
            .prop_map(|(room, history, recover)| {
                Op::JoinRoom(JoinRoom {
                    room,
                    history,
                    recover,
                })
            })
            .boxed(),
        room()
            .prop_map(|room| Op::LeaveRoom(LeaveRoom { room }))
            .boxed(),
        (room(), non_empty(), proptest::option::of(non_empty()))
            .prop_map(|(room, text, client_id)| {
                Op::SendMessage(SendMessage {
                    room,
                    text,
                    client_id,
                })
            })
            .boxed(),
        (non_empty(), non_empty())
            .prop_map(|(poll, option)| Op::SubmitPollResponse(SubmitPollResponse { poll, option }))
            .boxed(),
        (room(), non_empty())
            .prop_map(|(room, text)| Op::AskQuestion(AskQuestion { room, text }))
            .boxed(),
        non_empty()
            .prop_map(|question| Op::UpvoteQuestion(UpvoteQuestion { question }))
            .boxed(),
        non_empty()
            .prop_map(|offer| Op::AcceptOffer(OfferAnswer { offer }))
            .boxed(),
        non_empty()
            .prop_map(|offer| Op::DeclineOffer(OfferAnswer { offer }))
            .boxed(),
        Just(Op::Ping(Ping {})).boxed(),
        non_empty()
            .prop_map(|token| Op::Refresh(Refresh { token }))
            .boxed(),
    ])
}

pub fn request() -> impl Strategy<Value = Request> {
    (proptest::option::of(any::<i64>()), op()).prop_map(|(r#ref, op)| Request { r#ref, op })
}

fn r#ref() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(any::<i64>())
}

fn outbox_id() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(any::<i64>())
}

fn member() -> impl Strategy<Value = PresenceMember> {
    text().prop_map(|user| PresenceMember { user })
}

pub fn chat() -> impl Strategy<Value = ChatMessage> {
    (text(), any::<u64>(), text(), text(), text(), any::<i64>()).prop_map(
        |(room, offset, id, user, text, ts)| ChatMessage {
            room,
            offset,
            id,
            user,
            text,
            ts,
        },
    )
}

fn counts() -> impl Strategy<Value = std::collections::BTreeMap<String, u64>> {
    btree_map(text(), any::<u64>(), 0..4)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn waitlist_status() -> impl Strategy<Value = WaitlistStatus> {
    proptest::sample::select(vec![
        WaitlistStatus::Waiting,
        WaitlistStatus::Offered,
        WaitlistStatus::Accepted,
        WaitlistStatus::Declined,
        WaitlistStatus::Expired,
        WaitlistStatus::Left,
    ])
}

/// Every event kind, with any field values.
pub fn event() -> impl Strategy<Value = Event> {
    Union::new(vec![
        (text(), text(), text(), any::<u64>(), any::<i64>())
            .prop_map(|(conn, node, user, heartbeat_ms, server_time)| {
                Event::Hello(Hello {
                    conn,
                    node,
                    user,
                    heartbeat_ms,
                    server_time,
                })
            })
            .boxed(),
        (
            r#ref(),
            text(),
            text(),
            any::<u64>(),
            any::<bool>(),
            (any::<u64>(), vec(member(), 0..3)),
            vec(chat(), 0..3),
        )
            .prop_map(
                |(r#ref, room, epoch, offset, recovered, (count, members), history)| {
                    Event::RoomJoined(RoomJoined {
                        r#ref,
                        room,
                        epoch,
                        offset,
                        recovered,
                        presence: PresenceSnapshot { count, members },
                        history,
                    })
                },
            )
            .boxed(),
        (r#ref(), text(), proptest::option::of(text()))
            .prop_map(|(r#ref, room, reason)| {
                Event::RoomLeft(RoomLeft {
                    r#ref,
                    room,
                    reason,
                })
            })
            .boxed(),
        (
            r#ref(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        )
            .prop_map(|(r#ref, offset, question, ticket)| {
                Event::Ack(Ack {
                    r#ref,
                    offset,
                    question,
                    ticket,
                })
            })
            .boxed(),
        r#ref()
            .prop_map(|r#ref| Event::Pong(Pong { r#ref }))
            .boxed(),
        chat().prop_map(Event::MessageReceived).boxed(),
        (
            text(),
            any::<u64>(),
            proptest::option::of(vec(member(), 0..3)),
            proptest::option::of(vec(member(), 0..3)),
        )
            .prop_map(|(room, count, joins, leaves)| {
                Event::PresenceUpdate(PresenceUpdate {
                    room,
                    count,
                    joins,
                    leaves,
                })
            })
            .boxed(),
        (text(), text(), counts(), any::<u64>())
            .prop_map(|(room, poll, counts, total)| {
                Event::PollResults(PollResults {
                    room,
                    poll,
                    counts,
                    total,
                })
            })
            .boxed(),
        (
            text(),
            (
                text(),
                text(),
                vec((text(), text()), 0..3),
                proptest::option::of(any::<i64>()),
            ),
            outbox_id(),
        )
            .prop_map(|(room, (id, question, options, closes_at), outbox_id)| {
                Event::PollCreated(PollCreated {
                    room,
                    poll: Poll {
                        id,
                        question,
                        options: options
                            .into_iter()
                            .map(|(id, text)| PollOption { id, text })
                            .collect(),
                        closes_at,
                    },
                    outbox_id,
                })
            })
            .boxed(),
        (text(), text(), counts(), any::<u64>(), outbox_id())
            .prop_map(|(room, poll, counts, total, outbox_id)| {
                Event::PollClosed(PollClosed {
                    room,
                    poll,
                    counts,
                    total,
                    outbox_id,
                })
            })
            .boxed(),
        (text(), text(), text(), text(), any::<u64>())
            .prop_map(|(room, id, user, text, votes)| {
                Event::QuestionAsked(QuestionAsked {
                    room,
                    question: Question {
                        id,
                        user,
                        text,
                        votes,
                    },
                })
            })
            .boxed(),
        (
            text(),
            text(),
            any::<u64>(),
            proptest::option::of(any::<bool>()),
            outbox_id(),
        )
            .prop_map(|(room, question, votes, hidden, outbox_id)| {
                Event::QuestionUpdated(QuestionUpdated {
                    room,
                    question,
                    votes,
                    hidden,
                    outbox_id,
                })
            })
            .boxed(),
        (text(), text(), any::<i64>(), outbox_id())
            .prop_map(|(offer, session, expires_at, outbox_id)| {
                Event::WaitlistOffer(WaitlistOffer {
                    offer,
                    session,
                    expires_at,
                    outbox_id,
                })
            })
            .boxed(),
        (
            text(),
            waitlist_status(),
            proptest::option::of(any::<u64>()),
            outbox_id(),
        )
            .prop_map(|(session, status, position, outbox_id)| {
                Event::WaitlistUpdate(WaitlistUpdate {
                    session,
                    status,
                    position,
                    outbox_id,
                })
            })
            .boxed(),
        (
            r#ref(),
            error_code(),
            text(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(r#ref, code, message, retry_after_ms)| {
                Event::Error(ErrorEvent {
                    r#ref,
                    code,
                    message,
                    retry_after_ms,
                })
            })
            .boxed(),
        (any::<u64>(), text())
            .prop_map(|(after_ms, reason)| Event::Reconnect(Reconnect { after_ms, reason }))
            .boxed(),
        (
            (text(), text(), text()),
            (any::<i64>(), any::<i64>()),
            (any::<i64>(), any::<i64>()),
            any::<bool>(),
            outbox_id(),
        )
            .prop_map(
                |(
                    (room, session, title),
                    (capacity, available),
                    (starts_at, ends_at),
                    deleted,
                    outbox_id,
                )| {
                    Event::SessionUpdated(SessionUpdated {
                        room,
                        session,
                        title,
                        capacity,
                        available,
                        starts_at,
                        ends_at,
                        deleted,
                        outbox_id,
                    })
                },
            )
            .boxed(),
        (r#ref(), any::<i64>())
            .prop_map(|(r#ref, expires_at)| {
                Event::TokenRefreshed(TokenRefreshed { r#ref, expires_at })
            })
            .boxed(),
        any::<i64>()
            .prop_map(|expires_at| Event::TokenExpiring(TokenExpiring { expires_at }))
            .boxed(),
        (text(), proptest::option::of(role()), outbox_id())
            .prop_map(|(user, role, outbox_id)| {
                Event::MembershipChanged(MembershipChanged {
                    user,
                    role,
                    outbox_id,
                })
            })
            .boxed(),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(any::<i64>()),
            outbox_id(),
        )
            .prop_map(|(user, reason, banned_until, outbox_id)| {
                Event::Disconnected(Disconnected {
                    user,
                    reason,
                    banned_until,
                    outbox_id,
                })
            })
            .boxed(),
    ])
}

/// Every broker envelope body.
pub fn envelope() -> impl Strategy<Value = Envelope> {
    let body = Union::new(vec![
        (text(), chat())
            .prop_map(|(epoch, message)| Body::Chat { epoch, message })
            .boxed(),
        (vec(member(), 0..3), vec(member(), 0..3))
            .prop_map(|(joins, leaves)| Body::Presence { joins, leaves })
            .boxed(),
        (event(), outbox_id())
            .prop_map(|(event, outbox_id)| Body::Event { event, outbox_id })
            .boxed(),
        (text(), counts())
            .prop_map(|(poll, counts)| Body::PollTally { poll, counts })
            .boxed(),
        (text(), any::<u64>())
            .prop_map(|(question, votes)| Body::QuestionVotes { question, votes })
            .boxed(),
    ]);
    (text(), body).prop_map(|(node, body)| Envelope { node, body })
}

/// Names every op and event kind without a wildcard, so a new kind stops this compiling until it
/// has a strategy above (and the coverage tests count it).
pub fn kind_of(v: Result<&Op, &Event>) -> &'static str {
    match v {
        Ok(op) => match op {
            Op::JoinRoom(_)
            | Op::LeaveRoom(_)
            | Op::SendMessage(_)
            | Op::SubmitPollResponse(_)
            | Op::AskQuestion(_)
            | Op::UpvoteQuestion(_)
            | Op::AcceptOffer(_)
            | Op::DeclineOffer(_)
            | Op::Ping(_)
            | Op::Refresh(_) => op.name(),
        },
        Err(ev) => match ev {
            Event::Hello(_)
            | Event::RoomJoined(_)
            | Event::RoomLeft(_)
            | Event::Ack(_)
            | Event::Pong(_)
            | Event::MessageReceived(_)
            | Event::PresenceUpdate(_)
            | Event::PollResults(_)
            | Event::PollCreated(_)
            | Event::PollClosed(_)
            | Event::QuestionAsked(_)
            | Event::QuestionUpdated(_)
            | Event::WaitlistOffer(_)
            | Event::WaitlistUpdate(_)
            | Event::Error(_)
            | Event::Reconnect(_)
            | Event::SessionUpdated(_)
            | Event::TokenRefreshed(_)
            | Event::TokenExpiring(_)
            | Event::MembershipChanged(_)
            | Event::Disconnected(_) => ev.name(),
        },
    }
}

/// How many event kinds [`kind_of`] names.
pub const EVENT_KINDS: usize = 21;
