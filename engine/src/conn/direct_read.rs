//! The read side of a direct connection ([`super::direct`]): WebSocket frames parsed straight
//! from the plain TCP socket (RFC 6455 §5; the header parser is tungstenite's).
//!
//! A read goes into a per-thread scratch buffer, and whole frames are parsed from there, so an
//! idle connection holds no read buffer at all: only the bytes of a frame that arrived in part,
//! or of a fragmented message not yet complete, are kept, and freed once it is.
//!
//! Pings are answered (the pong goes out behind what already waits, through
//! [`Conn::write_raw`]) and passed on as liveness; a client's close is checked, echoed and
//! passed on. A broken rule ends the stream with tungstenite's error for it, so the session
//! closes with the same codes as on every other link (1002, 1007, 1009).

use super::Conn;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::Stream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{self, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::{self as ts};

/// Bytes read from a socket at once, into the thread's scratch buffer.
const READ_CHUNK: usize = 16 * 1024;

/// A control frame's payload is at most this long (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

thread_local! {
    static SCRATCH: RefCell<Box<[u8; READ_CHUNK]>> = RefCell::new(Box::new([0; READ_CHUNK]));
}

/// The messages a direct connection receives, as the session reads them. Boxed: moved through
/// two futures' arguments (the connection's task and its read loop), it would take its room in
/// each.
pub type DirectStream = Pin<Box<DirectReader>>;

/// Reads messages from `conn`'s direct socket, starting with `read_buf` (bytes read past the
/// upgrade request). Messages and frames over `max_message` bytes are refused (1009).
pub fn messages(conn: Arc<Conn>, read_buf: &[u8], max_message: usize) -> DirectStream {
    let mut reader = DirectReader {
        conn,
        frames: FrameState::new(max_message),
        ready: VecDeque::new(),
        ended: false,
    };
    if !read_buf.is_empty() {
        reader.feed(read_buf);
    }
    Box::pin(reader)
}

/// The stream of a direct connection's messages.
#[derive(Debug)]
pub struct DirectReader {
    conn: Arc<Conn>,
    frames: FrameState,
    /// Messages parsed but not handed out yet (several frames can arrive in one read); without
    /// a buffer when empty.
    ready: VecDeque<Result<Message, ts::Error>>,
    /// The stream is over (after a close, an error, or the end of the socket).
    ended: bool,
}

impl DirectReader {
    fn feed(&mut self, bytes: &[u8]) {
        feed(&self.conn, &mut self.frames, &mut self.ready, bytes);
    }
}

/// Parses `bytes`: messages and errors join `ready`, replies go out on `conn`.
fn feed(
    conn: &Conn,
    frames: &mut FrameState,
    ready: &mut VecDeque<Result<Message, ts::Error>>,
    bytes: &[u8],
) {
    frames.feed(bytes, &mut |event| match event {
        Parsed::Message(m) => ready.push_back(Ok(m)),
        Parsed::Reply(frame) => conn.write_raw(&frame),
        Parsed::Error(e) => ready.push_back(Err(e)),
    });
}

impl Stream for DirectReader {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(next) = this.ready.pop_front() {
                if this.ready.is_empty() {
                    this.ready = VecDeque::new();
                }
                if next.is_err() {
                    this.ended = true;
                    this.ready.clear();
                }
                return Poll::Ready(Some(next.map_err(axum::Error::new)));
            }
            if this.ended || this.frames.closed {
                return Poll::Ready(None);
            }
            let DirectReader {
                conn,
                frames,
                ready,
                ..
            } = this;
            let Some(direct) = &conn.direct else {
                this.ended = true;
                let e = io::Error::from(io::ErrorKind::Unsupported);
                return Poll::Ready(Some(Err(axum::Error::new(ts::Error::Io(e)))));
            };
            let stream = direct.stream();
            if let Err(e) = std::task::ready!(stream.poll_read_ready(cx)) {
                this.ended = true;
                return Poll::Ready(Some(Err(axum::Error::new(ts::Error::Io(e)))));
            }
            let read = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                match stream.try_read(&mut scratch[..]) {
                    Ok(0) => Ok(None),
                    Ok(n) => {
                        feed(conn, frames, ready, &scratch[..n]);
                        Ok(Some(()))
                    }
                    Err(e) => Err(e),
                }
            });
            match read {
                Ok(Some(())) => {}
                // The socket ended: a client gone without a close frame ends the stream too.
                Ok(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(axum::Error::new(ts::Error::Io(e)))));
                }
            }
        }
    }
}

/// What parsing produced.
enum Parsed {
    /// A complete message for the session.
    Message(Message),
    /// A frame to send back (a pong, the close echo).
    Reply(Vec<u8>),
    /// A broken rule: the stream ends with it.
    Error(ts::Error),
}

/// A fragmented message so far.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    bytes: Vec<u8>,
    /// Text: the bytes up to here are checked UTF-8 (a char boundary), so a bad sequence fails
    /// as soon as its fragment arrives, not at the end.
    checked: usize,
}

/// The frame parser's state: empty (no buffers) between frames.
#[derive(Debug)]
struct FrameState {
    max_message: usize,
    /// The start of a frame that has not fully arrived.
    partial: Vec<u8>,
    /// A fragmented message being assembled; boxed, as it is `None` between messages.
    message: Option<Box<Fragmented>>,
    /// The client's close arrived (and was echoed), or a rule was broken: nothing more is read.
    closed: bool,
}

impl FrameState {
    fn new(max_message: usize) -> FrameState {
        FrameState {
            max_message,
            partial: Vec::new(),
            message: None,
            closed: false,
        }
    }

    /// Parses every whole frame in what has arrived; keeps the rest of a frame for later.
    fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(Parsed)) {
        if self.closed {
            return;
        }
        if self.partial.is_empty() {
            let used = self.parse(bytes, out);
            if !self.closed && used < bytes.len() {
                self.partial.extend_from_slice(&bytes[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(bytes);
            let used = self.parse(&buf, out);
            if !self.closed && used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
        }
    }

    /// Parses whole frames from the start of `buf`; returns the bytes used.
    fn parse(&mut self, buf: &[u8], out: &mut dyn FnMut(Parsed)) -> usize {
        let mut pos = 0;
        while !self.closed {
            let mut cur = Cursor::new(&buf[pos..]);
            let (header, len) = match FrameHeader::parse(&mut cur) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.fail(e, out);
                    break;
                }
            };
            let head = cur.position() as usize;
            let too_big = usize::try_from(len).map_or(true, |l| l > self.max_message);
            if too_big {
                let size = usize::try_from(len).unwrap_or(usize::MAX);
                let max_size = self.max_message;
                self.fail(
                    ts::Error::Capacity(CapacityError::MessageTooLong { size, max_size }),
                    out,
                );
                break;
            }
            let len = len as usize;
            if buf.len() - pos - head < len {
                break;
            }
            let mut payload = buf[pos + head..pos + head + len].to_vec();
            pos += head + len;
            if let Err(e) = self.frame(&header, &mut payload, out) {
                self.fail(e, out);
            }
        }
        pos
    }

    fn fail(&mut self, e: ts::Error, out: &mut dyn FnMut(Parsed)) {
        self.closed = true;
        self.partial = Vec::new();
        self.message = None;
        out(Parsed::Error(e));
    }

    /// One whole frame.
    fn frame(
        &mut self,
        h: &FrameHeader,
        payload: &mut Vec<u8>,
        out: &mut dyn FnMut(Parsed),
    ) -> Result<(), ts::Error> {
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(ProtocolError::NonZeroReservedBits.into());
        }
        let Some(mask) = h.mask else {
            return Err(ProtocolError::UnmaskedFrameFromClient.into());
        };
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        match h.opcode {
            OpCode::Control(c) => {
                if !h.is_final {
                    return Err(ProtocolError::FragmentedControlFrame.into());
                }
                if payload.len() as u64 > MAX_CONTROL_PAYLOAD {
                    return Err(ProtocolError::ControlFrameTooBig.into());
                }
                self.control(c, std::mem::take(payload), out)
            }
            OpCode::Data(d) => self.data(d, h.is_final, std::mem::take(payload), out),
        }
    }

    fn control(
        &mut self,
        c: Control,
        payload: Vec<u8>,
        out: &mut dyn FnMut(Parsed),
    ) -> Result<(), ts::Error> {
        match c {
            Control::Ping => {
                out(Parsed::Reply(control_frame(0xA, &payload)));
                out(Parsed::Message(Message::Ping(Bytes::from(payload))));
            }
            Control::Pong => out(Parsed::Message(Message::Pong(Bytes::from(payload)))),
            Control::Close => {
                let frame = match payload.len() {
                    0 => None,
                    1 => return Err(ProtocolError::InvalidCloseSequence.into()),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !coding::CloseCode::from(code).is_allowed() {
                            return Err(ProtocolError::InvalidCloseSequence.into());
                        }
                        let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(&payload[2..]))
                            .map_err(|_| ts::Error::Utf8("close reason".into()))?;
                        Some(CloseFrame { code, reason })
                    }
                };
                // The echo carries the client's code (none for none).
                out(Parsed::Reply(control_frame(
                    0x8,
                    &payload[..payload.len().min(2)],
                )));
                self.closed = true;
                self.partial = Vec::new();
                self.message = None;
                out(Parsed::Message(Message::Close(frame)));
            }
            Control::Reserved(op) => return Err(ProtocolError::UnknownControlFrameType(op).into()),
        }
        Ok(())
    }

    fn data(
        &mut self,
        d: Data,
        fin: bool,
        payload: Vec<u8>,
        out: &mut dyn FnMut(Parsed),
    ) -> Result<(), ts::Error> {
        let mut m = match (d, self.message.take()) {
            (Data::Continue, None) => return Err(ProtocolError::UnexpectedContinueFrame.into()),
            (Data::Continue, Some(m)) => {
                let mut m = *m;
                if m.bytes.len() + payload.len() > self.max_message {
                    return Err(ts::Error::Capacity(CapacityError::MessageTooLong {
                        size: m.bytes.len() + payload.len(),
                        max_size: self.max_message,
                    }));
                }
                m.bytes.extend_from_slice(&payload);
                m
            }
            (Data::Text | Data::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedFragment(d).into());
            }
            (Data::Text | Data::Binary, None) => Fragmented {
                text: d == Data::Text,
                bytes: payload,
                checked: 0,
            },
            (Data::Reserved(op), _) => return Err(ProtocolError::UnknownDataFrameType(op).into()),
        };
        if !fin {
            if m.text {
                match std::str::from_utf8(&m.bytes[m.checked..]) {
                    Ok(_) => m.checked = m.bytes.len(),
                    Err(e) if e.error_len().is_none() => m.checked += e.valid_up_to(),
                    Err(_) => return Err(ts::Error::Utf8("text message".into())),
                }
            }
            self.message = Some(Box::new(m));
            return Ok(());
        }
        let (text, bytes) = (m.text, m.bytes);
        let msg = if text {
            let t = Utf8Bytes::try_from(Bytes::from(bytes))
                .map_err(|_| ts::Error::Utf8("text message".into()))?;
            Message::Text(t)
        } else {
            Message::Binary(Bytes::from(bytes))
        };
        out(Parsed::Message(msg));
        Ok(())
    }
}

/// A whole unmasked control frame.
fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(2 + payload.len());
    f.push(0x80 | opcode);
    f.push(payload.len() as u8);
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    fn run(state: &mut FrameState, bytes: &[u8]) -> (Vec<Message>, Vec<Vec<u8>>, Option<String>) {
        let (mut msgs, mut replies, mut err) = (Vec::new(), Vec::new(), None);
        state.feed(bytes, &mut |p| match p {
            Parsed::Message(m) => msgs.push(m),
            Parsed::Reply(r) => replies.push(r),
            Parsed::Error(e) => err = Some(e.to_string()),
        });
        (msgs, replies, err)
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_the_parser_keeps_nothing_after() {
        let mut bytes = frame(0x81, b"hello");
        bytes.extend(frame(0x02, b"bin"));
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x80, b"ary"));
        bytes.extend(frame(0x81, &[b'x'; 300]));
        for cut in 0..bytes.len() {
            let mut s = FrameState::new(1 << 20);
            let (mut msgs, mut replies, err) = run(&mut s, &bytes[..cut]);
            assert!(err.is_none());
            let (m2, r2, err) = run(&mut s, &bytes[cut..]);
            assert!(err.is_none(), "cut at {cut}: {err:?}");
            msgs.extend(m2);
            replies.extend(r2);
            assert_eq!(msgs.len(), 4, "cut at {cut}");
            assert!(matches!(&msgs[0], Message::Text(t) if t.as_str() == "hello"));
            assert!(matches!(&msgs[1], Message::Ping(p) if &p[..] == b"p"));
            assert!(matches!(&msgs[2], Message::Binary(b) if &b[..] == b"binary"));
            assert!(matches!(&msgs[3], Message::Text(t) if t.len() == 300));
            assert_eq!(replies, vec![vec![0x8a, 1, b'p']], "the ping is answered");
            assert_eq!(s.partial.capacity(), 0, "no buffer kept between frames");
            assert!(s.message.is_none());
        }
    }

    #[test]
    fn broken_rules_end_the_stream_with_the_matching_error() {
        let cases: [(Vec<u8>, &str); 7] = [
            (frame(0xC1, b"x"), "reserved"),
            (vec![0x81, 0x01, b'x'], "unmasked"),
            (frame(0x00, b"x"), "continue"),
            (frame(0x09, b"x"), "fragmented"),
            (frame(0x83, b"x"), "opcode"),
            (frame(0x81, &[0xff, 0xfe]), "UTF-8"),
            (frame(0x88, &[0x03, 0xed]), "close"),
        ];
        for (bytes, what) in cases {
            let mut s = FrameState::new(1 << 20);
            let (msgs, _, err) = run(&mut s, &bytes);
            assert!(msgs.is_empty(), "{what}");
            let err = err.unwrap_or_else(|| panic!("{what} was accepted"));
            assert!(
                err.to_lowercase().contains(&what.to_lowercase()) || what == "close",
                "{what}: {err}"
            );
            assert!(s.closed, "{what}: nothing more is read");
        }
        let mut s = FrameState::new(10);
        let (_, _, err) = run(&mut s, &frame(0x82, &[0; 11]));
        assert!(err.unwrap().contains("too long"), "over the message limit");
    }

    #[test]
    fn bad_utf8_in_a_fragment_fails_before_the_message_ends() {
        let mut s = FrameState::new(1 << 20);
        // "κ" split across fragments is fine; a byte that can never be UTF-8 is not.
        let (msgs, _, err) = run(&mut s, &frame(0x01, &[0xce]));
        assert!(
            msgs.is_empty() && err.is_none(),
            "an incomplete sequence waits"
        );
        let (_, _, err) = run(&mut s, &frame(0x00, &[0xba, b'a']));
        assert!(err.is_none(), "completed");
        let (_, _, err) = run(&mut s, &frame(0x00, &[0xff]));
        assert!(err.unwrap().contains("UTF-8"), "failed at its fragment");
    }

    #[test]
    fn a_close_is_echoed_with_its_code_and_ends_reading() {
        let mut s = FrameState::new(1 << 20);
        let mut bytes = frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
        bytes.extend(frame(0x81, b"after"));
        let (msgs, replies, err) = run(&mut s, &bytes);
        assert!(err.is_none());
        assert_eq!(replies, vec![vec![0x88, 2, 0x03, 0xe8]]);
        assert_eq!(msgs.len(), 1, "nothing after the close");
        assert!(
            matches!(&msgs[0], Message::Close(Some(f)) if f.code == 1000 && f.reason.as_str() == "bye")
        );
    }

    /// A connection on a real loopback socket, read through [`messages`], and the client's end.
    async fn socket_pair() -> (DirectStream, tokio::net::TcpStream) {
        let stats = Arc::new(super::super::queue::QueueStats::default());
        let (conn, client) = super::super::testing::direct_conn(1, stats).await;
        (messages(conn, &[], 1 << 16), client)
    }

    // Paused: the waits below end when the runtime has nothing left to do, not after real time.
    #[tokio::test(start_paused = true)]
    async fn bytes_after_a_short_read_and_the_end_of_stream_are_still_read() {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (mut stream, mut client) = socket_pair().await;
        async fn next(s: &mut DirectStream) -> Option<Result<Message, axum::Error>> {
            tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
                .await
                .expect("the reader saw bytes that arrived after its last short read")
        }
        // One frame in three writes: the reader takes in each of the first two (a short read,
        // no whole frame yet) before the next is written, and each later write must wake it.
        let f = frame(0x81, b"{\"op\":\"ping\"}");
        for part in [&f[..1], &f[1..5]] {
            client.write_all(part).await.unwrap();
            let early = tokio::time::timeout(std::time::Duration::from_millis(20), stream.next());
            assert!(early.await.is_err(), "no message before its frame is whole");
        }
        client.write_all(&f[5..]).await.unwrap();
        match next(&mut stream).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "{\"op\":\"ping\"}"),
            other => panic!("expected the text frame, got {other:?}"),
        }
        // A frame and the end of the stream at once: the frame, then the end.
        client.write_all(&frame(0x81, b"last")).await.unwrap();
        client.shutdown().await.unwrap();
        match next(&mut stream).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "last"),
            other => panic!("expected the last frame, got {other:?}"),
        }
        assert!(
            next(&mut stream).await.is_none(),
            "the end of the stream ends it"
        );
    }
}
