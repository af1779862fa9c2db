//! What the engine writes and reads: polls and votes, questions, the chat archive, the outbox.

use crate::common::TestApp;
use axum::http::{Method, StatusCode};
use evd_api::on_both_backends;
use evd_api::store::{
    ChatStore, NewChatMessage, NewQuestion, OutboxStore, QuestionStore, Sweeper, Upvote,
    UpvoteOutcome, Vote, VoteOutcome,
};
use evd_api::store::{MAX_POLLS_PER_TALLY, PollStore};
use evd_protocol::Event;
use evd_protocol::auth::Role;
use serde_json::json;
use std::time::Duration;

on_both_backends!(
    "conformance", crate::common::TestApp::new;
    polls_open_take_votes_close_and_reach_the_outbox,
    polls_close_by_themselves_when_due,
    a_vote_batch_gives_each_vote_its_own_outcome,
    questions_are_listed_upvoted_and_hidden,
    the_chat_archive_pages_back_in_time,
    a_large_archive_batch_keeps_its_order_across_orgs_and_skips_duplicates,
    the_outbox_is_claimed_in_order_and_marked_sent,
);

async fn polls_open_take_votes_close_and_reach_the_outbox(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    let (status, poll) = app
        .post(
            &format!("/sessions/{session}/polls"),
            &owner,
            json!({"question": "Tabs or spaces?", "options": ["tabs", "spaces"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{poll}");
    let poll_id = poll["id"].as_str().unwrap().to_owned();
    let (tabs, spaces) = (
        poll["options"][0]["id"].as_str().unwrap().to_owned(),
        poll["options"][1]["id"].as_str().unwrap().to_owned(),
    );
    for bad in [
        json!({"question": "?", "options": ["one"]}),
        json!({"question": "", "options": ["a", ""]}),
    ] {
        let (status, _) = app
            .post(&format!("/sessions/{session}/polls"), &owner, bad)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let attendee = app.token("bob", "acme", Role::Attendee);
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/polls"),
            &attendee,
            json!({"question": "?", "options": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = app
        .get(&format!("/sessions/{session}/polls"), &attendee)
        .await;
    assert_eq!(list[0]["question"], "Tabs or spaces?");

    let vote = |org: &str, user: &str, option: &str| Vote {
        org: org.into(),
        poll: poll_id.clone(),
        user: user.into(),
        option: option.into(),
    };
    let outcomes = app
        .store
        .record_votes(&[
            vote("acme", "u1", &tabs),
            vote("acme", "u2", &spaces),
            vote("acme", "u3", &spaces),
            vote("acme", "u1", &spaces),
            vote("acme", "u4", "no-such-option"),
            vote("other-org", "u5", &tabs),
        ])
        .await
        .unwrap();
    let recorded = VoteOutcome::Recorded {
        session: session.clone(),
    };
    assert_eq!(
        outcomes,
        [
            recorded.clone(),
            recorded.clone(),
            recorded,
            VoteOutcome::Duplicate,
            VoteOutcome::NotFound,
            VoteOutcome::NotFound
        ]
    );
    let (_, results) = app
        .get(&format!("/polls/{poll_id}/results"), &attendee)
        .await;
    assert_eq!(
        (
            results["total"].as_i64(),
            results["options"][1]["votes"].as_i64()
        ),
        (Some(3), Some(2))
    );

    let (status, _) = app
        .call(
            Method::POST,
            &format!("/polls/{poll_id}/close"),
            &attendee,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, closed) = app
        .call(
            Method::POST,
            &format!("/polls/{poll_id}/close"),
            &owner,
            None,
        )
        .await;
    assert_eq!(
        (status, closed["status"].as_str()),
        (StatusCode::OK, Some("closed"))
    );
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/polls/{poll_id}/close"),
            &owner,
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("poll_closed"))
    );
    assert_eq!(
        app.store
            .record_votes(&[vote("acme", "u9", &tabs)])
            .await
            .unwrap(),
        [VoteOutcome::Closed]
    );

    let rows = app.store.list_outbox(0, 100).await.unwrap();
    let events: Vec<Event> = rows
        .iter()
        .filter(|r| r.kind.starts_with("POLL_"))
        .map(|r| r.event().unwrap())
        .collect();
    match &events[..] {
        [Event::PollCreated(created), Event::PollClosed(closed)] => {
            assert_eq!(created.room, format!("session:{session}"));
            assert_eq!(created.poll.options.len(), 2);
            assert_eq!(closed.total, 3);
            assert_eq!(closed.counts[&spaces], 2);
            assert_eq!(closed.counts[&tabs], 1);
        }
        other => panic!("{other:?}"),
    }
}

async fn polls_close_by_themselves_when_due(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    let (status, poll) = app
        .post(
            &format!("/sessions/{session}/polls"),
            &owner,
            json!({"question": "?", "options": ["a", "b"], "closes_at": "2026-11-24T00:05:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{poll}");
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/polls"),
            &owner,
            json!({"question": "?", "options": ["a", "b"], "closes_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let id = poll["id"].as_str().unwrap();
    assert_eq!(app.store.sweep(10).await.unwrap().polls_closed, 0);
    app.clock.advance(5 * 60 * 1000);
    let option = poll["options"][0]["id"].as_str().unwrap();
    let late = Vote {
        org: "acme".into(),
        poll: id.into(),
        user: "u".into(),
        option: option.into(),
    };
    assert_eq!(
        app.store.record_votes(&[late]).await.unwrap(),
        [VoteOutcome::Closed]
    );
    assert_eq!(app.store.sweep(10).await.unwrap().polls_closed, 1);
    let (_, poll) = app.get(&format!("/polls/{id}"), &owner).await;
    assert_eq!(poll["status"], "closed");
}

/// Opens a poll with two options in `session`; its id and its options' ids.
async fn open_poll(app: &TestApp, owner: &str, session: &str) -> (String, String, String) {
    let (status, poll) = app
        .post(
            &format!("/sessions/{session}/polls"),
            owner,
            json!({"question": "?", "options": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{poll}");
    let id = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    (
        id(&poll["id"]),
        id(&poll["options"][0]["id"]),
        id(&poll["options"][1]["id"]),
    )
}

async fn a_vote_batch_gives_each_vote_its_own_outcome(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    let (other_owner, _, other_session) = app.seed("globex", "gina", 10).await;
    let (poll, a, b) = open_poll(&app, &owner, &session).await;
    let (shut, shut_a, _) = open_poll(&app, &owner, &session).await;
    let (other_poll, other_a, _) = open_poll(&app, &other_owner, &other_session).await;
    let (status, _) = app
        .call(Method::POST, &format!("/polls/{shut}/close"), &owner, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let vote = |org: &str, poll: &str, user: &str, option: &str| Vote {
        org: org.into(),
        poll: poll.into(),
        user: user.into(),
        option: option.into(),
    };
    assert_eq!(
        app.store
            .record_votes(&[vote("acme", &poll, "u0", &a)])
            .await
            .unwrap(),
        [VoteOutcome::Recorded {
            session: session.clone()
        }]
    );

    let outcomes = app
        .store
        .record_votes(&[
            vote("acme", &poll, "u1", &b),
            vote("acme", &poll, "u0", &b),
            vote("globex", &other_poll, "u1", &other_a),
            vote("acme", &poll, "u1", &a),
            vote("acme", &poll, "u2", "no-such-option"),
            vote("acme", &poll, "u2", &a),
            vote("acme", &shut, "u3", &shut_a),
            vote("acme", "no-such-poll", "u4", &a),
            vote("globex", &poll, "u5", &a),
            vote("acme", &poll, "u6", &other_a),
            vote("globex", &other_poll, "u1", &other_a),
        ])
        .await
        .unwrap();
    let here = VoteOutcome::Recorded {
        session: session.clone(),
    };
    assert_eq!(
        outcomes,
        [
            here.clone(),
            VoteOutcome::Duplicate,
            VoteOutcome::Recorded {
                session: other_session.clone()
            },
            VoteOutcome::Duplicate,
            VoteOutcome::NotFound,
            here,
            VoteOutcome::Closed,
            VoteOutcome::NotFound,
            VoteOutcome::NotFound,
            VoteOutcome::NotFound,
            VoteOutcome::Duplicate,
        ]
    );

    let tallies = app
        .store
        .poll_tallies(
            "acme",
            &[
                poll.clone(),
                shut.clone(),
                other_poll.clone(),
                "no-such-poll".into(),
            ],
        )
        .await
        .unwrap();
    let counts = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(tallies.len(), 2, "{tallies:?}");
    assert_eq!(tallies[&poll], counts(&[(&a, 2), (&b, 1)]));
    assert_eq!(tallies[&shut][&shut_a], 0);
    let theirs = app
        .store
        .poll_tallies("globex", &[other_poll.clone(), poll.clone()])
        .await
        .unwrap();
    assert_eq!(theirs.keys().collect::<Vec<_>>(), [&other_poll]);
    assert_eq!(theirs[&other_poll][&other_a], 1);

    let many: Vec<String> = (0..MAX_POLLS_PER_TALLY)
        .map(|i| format!("absent-{i}"))
        .chain([poll.clone()])
        .collect();
    let tallies = app.store.poll_tallies("acme", &many).await.unwrap();
    assert_eq!(tallies.keys().collect::<Vec<_>>(), [&poll]);
    let (_, results) = app.get(&format!("/polls/{poll}/results"), &owner).await;
    assert_eq!(results["total"].as_i64(), Some(3));

    // Another process's store keeps counts of its own; tallies and results add them up.
    let other = app.another_store().await;
    let outcomes = other
        .record_votes(&[vote("acme", &poll, "u7", &b), vote("acme", &poll, "u1", &b)])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            VoteOutcome::Recorded {
                session: session.clone()
            },
            VoteOutcome::Duplicate
        ]
    );
    let tallies = app
        .store
        .poll_tallies("acme", std::slice::from_ref(&poll))
        .await
        .unwrap();
    assert_eq!(tallies[&poll], counts(&[(&a, 2), (&b, 2)]));
    assert_eq!(
        other
            .poll_tallies("acme", std::slice::from_ref(&poll))
            .await
            .unwrap(),
        tallies
    );
    let (_, results) = app.get(&format!("/polls/{poll}/results"), &owner).await;
    assert_eq!(results["total"].as_i64(), Some(4));
    let of_b = results["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == b.as_str())
        .map(|o| o["votes"].as_i64());
    assert_eq!(of_b, Some(Some(2)), "{results}");
}

async fn questions_are_listed_upvoted_and_hidden(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    let ask = |user: &str, text: &str| NewQuestion {
        org: "acme".into(),
        session: session.clone(),
        user: user.into(),
        text: text.into(),
    };
    let asked = app
        .store
        .create_questions(&[
            ask("u1", "first?"),
            ask("u2", "second?"),
            NewQuestion {
                session: "nope".into(),
                ..ask("u3", "lost")
            },
        ])
        .await
        .unwrap();
    assert!(asked[2].is_none());
    let (q1, q2) = (asked[0].clone().unwrap().id, asked[1].clone().unwrap().id);
    let up = |user: &str, q: &str| Upvote {
        org: "acme".into(),
        question: q.into(),
        user: user.into(),
    };
    let outcomes = app
        .store
        .upvote_questions(&[up("a", &q2), up("b", &q2), up("a", &q2), up("a", "missing")])
        .await
        .unwrap();
    assert_eq!(
        outcomes[1],
        UpvoteOutcome::Recorded {
            session: session.clone(),
            votes: 2
        }
    );
    assert_eq!(
        &outcomes[2..],
        [UpvoteOutcome::Duplicate, UpvoteOutcome::NotFound]
    );

    let attendee = app.token("bob", "acme", Role::Attendee);
    let (_, list) = app
        .get(&format!("/sessions/{session}/questions"), &attendee)
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [q2.as_str(), q1.as_str()]);
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/questions/{q2}/hide"),
            &attendee,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, hidden) = app
        .call(Method::POST, &format!("/questions/{q2}/hide"), &owner, None)
        .await;
    assert_eq!(
        (status, hidden["hidden"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, list) = app
        .get(&format!("/sessions/{session}/questions"), &attendee)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = app
        .get(&format!("/sessions/{session}/questions?limit=1"), &owner)
        .await;
    assert_eq!(list[0]["id"], q2.as_str());
    let rows = app.store.list_outbox(0, 100).await.unwrap();
    let row = rows.iter().find(|r| r.kind == "QUESTION_UPDATED").unwrap();
    match row.event().unwrap() {
        Event::QuestionUpdated(u) => {
            assert_eq!((u.question, u.votes, u.hidden), (q2, 2, Some(true)));
            assert_eq!(u.room, format!("session:{session}"));
        }
        other => panic!("{other:?}"),
    }
}

async fn the_chat_archive_pages_back_in_time(app: TestApp) {
    let (owner, event, session) = app.seed("acme", "alice", 10).await;
    let room = format!("session:{session}");
    let batch: Vec<NewChatMessage> = (1..=5)
        .map(|i| NewChatMessage {
            org: "acme".into(),
            room: room.clone(),
            id: format!("m{i}"),
            user: "u1".into(),
            text: format!("hello {i}"),
            epoch: "e1".into(),
            offset: i,
            ts: crate::common::START_MS + i,
        })
        .collect();
    app.store.append_chat_messages(&batch).await.unwrap();
    app.store.append_chat_messages(&batch[4..]).await.unwrap();
    // What a node refills Redis with after a failover: one epoch, after an offset, in order.
    let since = |epoch: &'static str, after: i64, limit: i64| {
        let (store, room) = (app.store.clone(), room.clone());
        async move {
            let rows = store.chat_since("acme", &room, epoch, after, limit).await;
            rows.unwrap()
                .into_iter()
                .map(|m| m.offset)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(since("e1", 2, 10).await, [3, 4, 5]);
    assert_eq!(since("e1", 0, 2).await, [1, 2]);
    assert!(since("e2", 0, 10).await.is_empty(), "another epoch");
    let mut texts = vec![];
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(c) => format!("/rooms/{room}/messages?limit=2&before={c}"),
            None => format!("/rooms/{room}/messages?limit=2"),
        };
        let (status, page) = app.get(&path, &owner).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        texts.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        texts,
        ["hello 5", "hello 4", "hello 3", "hello 2", "hello 1"]
    );
    // Attendees read rooms they may join: a ticket, or a `rooms` grant.
    let bob = app.token("bob", "acme", Role::Attendee);
    let (status, _) = app.get(&format!("/rooms/{room}/messages"), &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.post(&format!("/sessions/{session}/tickets"), &bob, json!({}))
        .await;
    let (status, _) = app.get(&format!("/rooms/{room}/messages"), &bob).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .get(&format!("/rooms/event:{event}/messages"), &bob)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/rooms/user:bob/messages", &bob).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/rooms/user:carol/messages", &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/rooms/lobby/messages", &bob).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another org's archive of the same room name is another archive.
    let other = app.token("eve", "evil", Role::Owner);
    let (_, page) = app.get(&format!("/rooms/{room}/messages"), &other).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
}

/// A batch longer than one insert statement, in three runs of two orgs, with an id repeated
/// inside the batch and half of it archived again.
async fn a_large_archive_batch_keeps_its_order_across_orgs_and_skips_duplicates(app: TestApp) {
    let (_, _, acme_session) = app.seed("acme", "alice", 10).await;
    let (_, _, globex_session) = app.seed("globex", "gina", 10).await;
    let message = |org: &str, session: &str, i: i64, text: String| NewChatMessage {
        org: org.into(),
        room: format!("session:{session}"),
        id: format!("m{i}"),
        user: "u1".into(),
        text,
        epoch: "e1".into(),
        offset: i,
        ts: crate::common::START_MS + i,
    };
    let mut batch = vec![];
    for i in 0..40 {
        batch.push(message("acme", &acme_session, i, format!("acme {i}")));
    }
    for i in 0..25 {
        batch.push(message("globex", &globex_session, i, format!("globex {i}")));
    }
    for i in 40..75 {
        batch.push(message("acme", &acme_session, i, format!("acme {i}")));
    }
    batch.push(message("acme", &acme_session, 3, "a second m3".into()));
    app.store.append_chat_messages(&batch).await.unwrap();
    app.store.append_chat_messages(&batch[..50]).await.unwrap();

    let texts = |org: &'static str, session: String| {
        let store = app.store.clone();
        async move {
            let page = store
                .chat_history(org, &format!("session:{session}"), None, 200)
                .await
                .unwrap();
            assert!(page.next_cursor.is_none());
            page.items.into_iter().map(|m| m.text).collect::<Vec<_>>()
        }
    };
    let acme: Vec<String> = (0..75).rev().map(|i| format!("acme {i}")).collect();
    assert_eq!(texts("acme", acme_session).await, acme);
    let globex: Vec<String> = (0..25).rev().map(|i| format!("globex {i}")).collect();
    assert_eq!(texts("globex", globex_session).await, globex);
    // One message, archived alone, takes the short path on SQLite.
    app.store
        .append_chat_messages(&[message("globex", "x", 1, "alone".into())])
        .await
        .unwrap();
    let page = app
        .store
        .chat_history("globex", "session:x", None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].text, "alone");
}

async fn the_outbox_is_claimed_in_order_and_marked_sent(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    for i in 0..3 {
        app.post(
            &format!("/sessions/{session}/polls"),
            &owner,
            json!({"question": format!("q{i}"), "options": ["a", "b"]}),
        )
        .await;
    }
    let lease = Duration::from_secs(30);
    let first = app.store.claim_outbox(2, lease).await.unwrap();
    let second = app.store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.windows(2).all(|w| w[0].id < w[1].id));
    assert!(
        second.iter().all(|r| r.id > first[1].id),
        "claimed rows are not handed out twice"
    );
    let all: Vec<i64> = first.iter().chain(&second).map(|r| r.id).collect();
    assert!(app.store.claim_outbox(10, lease).await.unwrap().is_empty());
    // Claimed rows are still unsent: the backlog counts them.
    let backlog = app.store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.rows, all.len() as i64);
    assert_eq!(backlog.oldest_created_at, Some(first[0].created_at));
    // An unmarked row comes back after its lease.
    app.store
        .mark_outbox_sent(&all[..all.len() - 1])
        .await
        .unwrap();
    let backlog = app.store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.rows, 1, "only the unmarked row is pending");
    app.clock.advance(30_001);
    let again = app.store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.id).collect::<Vec<_>>(),
        [all[all.len() - 1]]
    );
    assert_eq!(again[0].org_id, "acme");
    // Sent rows are pruned once old enough; unsent ones never are.
    let now = app.clock.now();
    assert_eq!(app.store.prune_outbox(now - 60_000, 100).await.unwrap(), 0);
    let pruned = app.store.prune_outbox(now + 1, 100).await.unwrap();
    assert_eq!(pruned as usize, all.len() - 1);
    let left = app.store.list_outbox(0, 100).await.unwrap();
    assert_eq!(
        left.iter().map(|r| r.id).collect::<Vec<_>>(),
        [all[all.len() - 1]]
    );
    app.store.mark_outbox_sent(&[again[0].id]).await.unwrap();
    let backlog = app.store.outbox_backlog().await.unwrap();
    assert_eq!((backlog.rows, backlog.oldest_created_at), (0, None));
}
