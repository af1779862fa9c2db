//! Tests of the frame reader and writer: every payload length encoding, reads split anywhere,
//! several frames per read, fragmented messages with control frames between, close codes, the
//! protocol errors a client must catch, and masked frames out.

use super::*;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUE: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// A server frame as it goes on the wire (unmasked), encoded here without tungstenite.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=65535 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A payload of `n` bytes that differs at every offset a length mistake would land on.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A socket that hands out its bytes in the given pieces, one piece per read, then ends.
struct Pieces(VecDeque<Vec<u8>>);

impl Pieces {
    /// `bytes` cut into pieces of `size`.
    fn of(bytes: &[u8], size: usize) -> Pieces {
        Pieces(bytes.chunks(size).map(<[u8]>::to_vec).collect())
    }
}

impl AsyncRead for Pieces {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pieces = &mut self.get_mut().0;
        if let Some(mut piece) = pieces.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                pieces.push_front(piece.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn reader(bytes: &[u8], piece: usize) -> FrameReader<Pieces> {
    FrameReader::new(Pieces::of(bytes, piece))
}

/// The data frame `r` reads next, owned.
async fn data(r: &mut FrameReader<Pieces>) -> (Vec<u8>, bool) {
    match r.next().await {
        Ok(Frame::Data { data, binary }) => (data.to_vec(), binary),
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test]
async fn every_length_encoding_reads_whole() {
    // 125 is the last 7-bit length, 126 and 65535 the 16-bit ones, 65536 the first 64-bit one.
    for n in [0, 1, 125, 126, 127, 65535, 65536, 70_000] {
        let p = payload(n);
        let mut wire = frame(true, TEXT, &p);
        wire.extend(frame(true, BINARY, &p));
        let mut r = reader(&wire, wire.len());
        assert_eq!(data(&mut r).await, (p.clone(), false), "text of {n}");
        assert_eq!(data(&mut r).await, (p, true), "binary of {n}");
        assert_eq!(r.next().await, Err(ReadError::Eof));
    }
}

#[tokio::test]
async fn reads_split_anywhere_give_the_same_frames() {
    let lengths = [0, 125, 126, 65535, 65536];
    let wire: Vec<u8> = lengths
        .iter()
        .flat_map(|&n| frame(true, BINARY, &payload(n)))
        .collect();
    for piece in [1, 2, 3, 7, 1000, 4096, 65537] {
        let mut r = reader(&wire, piece);
        for n in lengths {
            assert_eq!(
                data(&mut r).await,
                (payload(n), true),
                "{n} in pieces of {piece}"
            );
        }
        assert_eq!(r.next().await, Err(ReadError::Eof));
    }
}

#[tokio::test]
async fn frames_one_read_brought_come_without_reading() {
    let mut wire = frame(true, TEXT, b"one");
    wire.extend(frame(true, TEXT, b"two"));
    wire.extend(frame(true, PING, b"p"));
    wire.extend(frame(true, TEXT, b"three"));
    // The fourth frame's last byte comes with a second read.
    let split = wire.len() - 1;
    let mut r = FrameReader::new(Pieces(
        [wire[..split].to_vec(), wire[split..].to_vec()].into(),
    ));
    assert_eq!(data(&mut r).await, (b"one".to_vec(), false));
    assert_eq!(
        r.buffered(),
        Ok(Some(Frame::Data {
            data: b"two",
            binary: false
        }))
    );
    assert_eq!(r.buffered(), Ok(Some(Frame::Ping(b"p"))));
    assert_eq!(r.buffered(), Ok(None));
    assert_eq!(data(&mut r).await, (b"three".to_vec(), false));
    assert_eq!(r.buffered(), Ok(None));
    assert_eq!(r.next().await, Err(ReadError::Eof));
}

#[tokio::test]
async fn fragments_join_with_control_frames_between() {
    let mut wire = frame(false, TEXT, b"hel");
    wire.extend(frame(true, PING, b"ping"));
    wire.extend(frame(false, CONTINUE, b"lo "));
    wire.extend(frame(true, PONG, b""));
    wire.extend(frame(true, CONTINUE, b"world"));
    wire.extend(frame(true, TEXT, b"next"));
    wire.extend(frame(false, BINARY, &payload(70_000)));
    wire.extend(frame(true, CONTINUE, &payload(3)));
    let mut joined = payload(70_000);
    joined.extend(payload(3));
    for piece in [1, 5, wire.len()] {
        let mut r = reader(&wire, piece);
        assert_eq!(r.next().await, Ok(Frame::Ping(b"ping")));
        assert_eq!(r.next().await, Ok(Frame::Pong));
        assert_eq!(data(&mut r).await, (b"hello world".to_vec(), false));
        // The joined message is dropped once the next frame is read.
        assert_eq!(data(&mut r).await, (b"next".to_vec(), false));
        assert_eq!(
            data(&mut r).await,
            (joined.clone(), true),
            "pieces of {piece}"
        );
        assert_eq!(r.next().await, Err(ReadError::Eof));
    }
}

#[tokio::test]
async fn close_frames_give_their_code() {
    let mut with_reason = 1001u16.to_be_bytes().to_vec();
    with_reason.extend_from_slice(b"going away");
    let mut wire = frame(true, CLOSE, &with_reason);
    wire.extend(frame(true, CLOSE, b""));
    let mut r = reader(&wire, wire.len());
    assert_eq!(r.next().await, Ok(Frame::Close(1001)));
    assert_eq!(r.next().await, Ok(Frame::Close(NO_STATUS)));
}

#[tokio::test]
async fn protocol_errors_are_caught() {
    let mut masked = frame(true, TEXT, b"");
    masked[1] |= 0x80;
    masked.extend_from_slice(&[1, 2, 3, 4]);
    let mut rsv = frame(true, TEXT, b"x");
    rsv[0] |= 0x40;
    let mut text_in_message = frame(false, TEXT, b"a");
    text_in_message.extend(frame(true, TEXT, b"b"));
    // Only the header of a frame over the limit: refused before its payload is waited for.
    let mut huge = vec![0x80 | BINARY, 127];
    huge.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
    let cases: [(&str, Vec<u8>); 7] = [
        ("masked", masked),
        ("reserved bits", rsv),
        ("lone continuation", frame(true, CONTINUE, b"x")),
        ("text inside a message", text_in_message),
        ("fragmented ping", frame(false, PING, b"")),
        ("long ping", frame(true, PING, &payload(126))),
        ("too long", huge),
    ];
    for (what, wire) in cases {
        let mut r = reader(&wire, wire.len());
        assert!(
            matches!(r.next().await, Err(ReadError::Protocol(_))),
            "{what}"
        );
    }
    let mut r = reader(&[0x80 | 0x3, 0], 2);
    assert!(
        matches!(r.next().await, Err(ReadError::Protocol(_))),
        "reserved opcode"
    );
}

#[tokio::test]
async fn a_stream_ending_inside_a_frame_is_eof() {
    let wire = frame(true, TEXT, &payload(300));
    let mut r = reader(&wire[..200], 64);
    assert_eq!(r.next().await, Err(ReadError::Eof));
}

/// Reads back the frames `out` holds, unmasking them; each must be masked.
fn unmask_all(mut out: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        let mut cursor = Cursor::new(out);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.is_final);
        let mask = header.mask.expect("a client's frames are masked");
        let start = cursor.position() as usize;
        let end = start + len as usize;
        let data = out[start..end]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        frames.push((header.opcode, data));
        out = &out[end..];
    }
    frames
}

#[tokio::test]
async fn frames_written_are_masked_and_whole() {
    let mut w = FrameWriter::new(Vec::new());
    for n in [0, 125, 126, 65535, 65536] {
        let text = String::from_utf8(vec![b'a'; n]).unwrap();
        w.feed(&Message::Text(text.into()));
    }
    w.feed(&Message::Binary(payload(300).into()));
    w.flush().await.unwrap();
    w.pong(b"hi").await.unwrap();
    w.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert!(w.out.is_empty());
    let frames = unmask_all(&w.io);
    let mut want: Vec<(OpCode, Vec<u8>)> = [0, 125, 126, 65535, 65536]
        .into_iter()
        .map(|n| (OpCode::Data(Data::Text), vec![b'a'; n]))
        .collect();
    want.push((OpCode::Data(Data::Binary), payload(300)));
    want.push((OpCode::Control(Control::Pong), b"hi".to_vec()));
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    want.push((OpCode::Control(Control::Close), close));
    assert_eq!(frames, want);
}
