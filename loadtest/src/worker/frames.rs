//! The harness's own WebSocket frame reader and writer, for a connection whose handshake is done.
//!
//! The reader keeps one `BytesMut` per connection and reads the socket into its spare capacity
//! (`read_buf`: nothing is zero-filled, unlike tungstenite's read path, which zero-fills its
//! read chunk before every read). A complete frame is handed out as a slice of that buffer, so
//! receiving a frame costs no allocation, no copy and no reference count; only a fragmented
//! message is copied, into a second buffer kept for the connection. Frame headers are parsed by
//! tungstenite's `FrameHeader`, and frames are written with its header format.
//!
//! What the reader checks is what a client must (RFC 6455): server frames are unmasked, use no
//! extension bits, control frames are final and at most 125 bytes, continuations only continue
//! a started message. It does not check that text is UTF-8: the harness's wire parser reads
//! every text frame as UTF-8 and counts one that is not as a bad frame. Pings are handed to the
//! caller, which answers them with [`FrameWriter::pong`] outside any `select!` (a write
//! cancelled halfway would corrupt the stream).

use bytes::{Buf, BytesMut};
use std::fmt;
use std::io::{self, Cursor};
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The read buffer's first capacity: a few frames of a busy room. A larger frame grows it.
const READ_BUFFER: usize = 8 * 1024;
/// Free room wanted at the buffer's end before a read; with less, the unread bytes move to the
/// buffer's start (usually none or a partial frame, a small copy).
const MIN_READ: usize = 2 * 1024;
/// The largest frame accepted (tungstenite's default `max_frame_size`).
const MAX_FRAME: u64 = 16 << 20;
/// The largest message accepted, fragments together (tungstenite's default
/// `max_message_size`).
const MAX_MESSAGE: usize = 64 << 20;
/// The largest control frame payload (RFC 6455, 5.5).
const MAX_CONTROL: u64 = 125;
/// The close code reported for a close frame without a status (RFC 6455, 7.1.5).
pub(super) const NO_STATUS: u16 = 1005;

/// One frame received, borrowed from the reader until its next read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A text (`binary` false) or binary message, its fragments joined.
    Data { data: &'a [u8], binary: bool },
    /// A ping with its payload, to be answered with a pong.
    Ping(&'a [u8]),
    /// A pong, which the harness does not read.
    Pong,
    /// The peer closed, with this close code.
    Close(u16),
}

/// Why no frame could be read: the connection is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadError {
    /// The socket failed.
    Io(io::ErrorKind),
    /// The peer closed the TCP connection (without a close frame).
    Eof,
    /// The peer broke the protocol.
    Protocol(&'static str),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(kind) => write!(f, "read: {kind:?}"),
            ReadError::Eof => f.write_str("closed"),
            ReadError::Protocol(what) => write!(f, "protocol: {what}"),
        }
    }
}

/// Where the frame to hand out is, found before it is borrowed.
enum Found {
    Data {
        at: Range<usize>,
        binary: bool,
    },
    /// The message joined in `message`.
    Joined {
        binary: bool,
    },
    Ping(Range<usize>),
    Pong,
    Close(u16),
}

/// Reads the frames of one connection.
pub(super) struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet handed out.
    buf: BytesMut,
    /// Bytes of `buf` handed out in the last frame, dropped on the next call.
    handed: usize,
    /// The fragments of a message so far.
    message: Vec<u8>,
    /// Whether the message in `message` is binary, while it is being joined.
    joining: Option<bool>,
    /// `message` was handed out whole, and is cleared on the next call.
    joined: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `io`.
    pub(super) fn new(io: R) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(READ_BUFFER),
            handed: 0,
            message: Vec::new(),
            joining: None,
            joined: false,
        }
    }

    /// The next frame, reading the socket when the buffer holds none. Cancel-safe: a read that
    /// is cancelled leaves the buffer as it was, and the next call carries on.
    pub(super) async fn next(&mut self) -> Result<Frame<'_>, ReadError> {
        loop {
            if let Some(found) = self.step()? {
                return Ok(self.view(found));
            }
            self.fill().await?;
        }
    }

    /// The next frame if the buffer already holds all of it, without reading the socket: what
    /// one read brought is handled before the caller waits on anything else.
    pub(super) fn buffered(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        Ok(self.step()?.map(|found| self.view(found)))
    }

    /// Reads what the socket has into the buffer's spare capacity.
    async fn fill(&mut self) -> Result<(), ReadError> {
        // Reserving moves the unread bytes to the buffer's start, keeping the allocation (the
        // buffer is never split off). With nothing unread that moves nothing, and the read goes
        // to the start again: small frames keep landing on the same cached bytes instead of
        // walking through cold memory, which made the kernel's copy cost more than the
        // zero-filling saved. Otherwise it happens once the end is used up.
        self.buf.reserve(if self.buf.is_empty() {
            READ_BUFFER
        } else {
            MIN_READ
        });
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) => Err(ReadError::Eof),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e.kind())),
        }
    }

    /// Drops the last frame handed out, then finds the next complete one in the buffer; a
    /// fragment is joined into `message` and the search goes on.
    fn step(&mut self) -> Result<Option<Found>, ReadError> {
        self.buf.advance(std::mem::take(&mut self.handed));
        if std::mem::take(&mut self.joined) {
            self.message.clear();
        }
        loop {
            let mut cursor = Cursor::new(&self.buf[..]);
            let Some((header, len)) =
                FrameHeader::parse(&mut cursor).map_err(|_| ReadError::Protocol("bad opcode"))?
            else {
                return Ok(None);
            };
            if len > MAX_FRAME {
                return Err(ReadError::Protocol("frame too long"));
            }
            if header.mask.is_some() {
                return Err(ReadError::Protocol("masked frame from the server"));
            }
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(ReadError::Protocol("reserved bits set"));
            }
            let start = cursor.position() as usize;
            let end = start + len as usize;
            if self.buf.len() < end {
                self.buf.reserve(end - self.buf.len());
                return Ok(None);
            }
            let at = start..end;
            let found = match header.opcode {
                OpCode::Control(control) => {
                    if !header.is_final || len > MAX_CONTROL {
                        return Err(ReadError::Protocol("fragmented or long control frame"));
                    }
                    match control {
                        Control::Ping => Found::Ping(at),
                        Control::Pong => Found::Pong,
                        Control::Close => Found::Close(match &self.buf[at] {
                            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                            _ => NO_STATUS,
                        }),
                        // `FrameHeader::parse` refuses reserved opcodes.
                        Control::Reserved(_) => return Err(ReadError::Protocol("bad opcode")),
                    }
                }
                OpCode::Data(data) => {
                    let binary = match (data, self.joining) {
                        (Data::Text, None) => false,
                        (Data::Binary, None) => true,
                        (Data::Continue, Some(binary)) => binary,
                        (Data::Text | Data::Binary, Some(_)) => {
                            return Err(ReadError::Protocol("new message inside a message"));
                        }
                        (Data::Continue, None) => {
                            return Err(ReadError::Protocol("continuation without a message"));
                        }
                        (Data::Reserved(_), _) => return Err(ReadError::Protocol("bad opcode")),
                    };
                    if header.is_final && self.joining.is_none() {
                        Found::Data { at, binary }
                    } else {
                        if self.message.len() + at.len() > MAX_MESSAGE {
                            return Err(ReadError::Protocol("message too long"));
                        }
                        self.message.extend_from_slice(&self.buf[at]);
                        self.buf.advance(end);
                        if !header.is_final {
                            self.joining = Some(binary);
                            continue;
                        }
                        self.joining = None;
                        self.joined = true;
                        return Ok(Some(Found::Joined { binary }));
                    }
                }
            };
            self.handed = end;
            return Ok(Some(found));
        }
    }

    /// The frame `found` points at.
    fn view(&self, found: Found) -> Frame<'_> {
        match found {
            Found::Data { at, binary } => Frame::Data {
                data: &self.buf[at],
                binary,
            },
            Found::Joined { binary } => Frame::Data {
                data: &self.message,
                binary,
            },
            Found::Ping(at) => Frame::Ping(&self.buf[at]),
            Found::Pong => Frame::Pong,
            Found::Close(code) => Frame::Close(code),
        }
    }
}

/// Writes the frames of one connection, masked as a client's must be (RFC 6455, 5.3).
pub(super) struct FrameWriter<W> {
    io: W,
    /// Frames encoded and not yet written.
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer to `io`.
    pub(super) fn new(io: W) -> FrameWriter<W> {
        FrameWriter {
            io,
            out: Vec::new(),
        }
    }

    /// Queues `msg`; [`FrameWriter::flush`] writes everything queued at once.
    pub(super) fn feed(&mut self, msg: &Message) {
        encode(msg, &mut self.out);
    }

    /// Writes everything queued.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        self.io.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Writes `msg` now.
    pub(super) async fn send(&mut self, msg: Message) -> io::Result<()> {
        self.feed(&msg);
        self.flush().await
    }

    /// Answers a ping carrying `payload`.
    pub(super) async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        encode_frame(OpCode::Control(Control::Pong), payload, &mut self.out);
        self.flush().await
    }
}

/// Appends `msg` to `out` as one final, masked frame.
fn encode(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Text(t) => encode_frame(OpCode::Data(Data::Text), t.as_bytes(), out),
        Message::Binary(b) => encode_frame(OpCode::Data(Data::Binary), b, out),
        Message::Ping(p) => encode_frame(OpCode::Control(Control::Ping), p, out),
        Message::Pong(p) => encode_frame(OpCode::Control(Control::Pong), p, out),
        Message::Close(close) => {
            let payload = close.as_ref().map_or_else(Vec::new, |c| {
                let mut p = u16::from(c.code).to_be_bytes().to_vec();
                p.extend_from_slice(c.reason.as_bytes());
                p
            });
            encode_frame(OpCode::Control(Control::Close), &payload, out);
        }
        Message::Frame(f) => encode_frame(f.header().opcode, f.payload(), out),
    }
}

/// Appends one final frame of `opcode` carrying `payload` to `out`, masked with a fresh key.
fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mask = fastrand::u32(..).to_ne_bytes();
    let header = FrameHeader {
        opcode,
        mask: Some(mask),
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

#[cfg(test)]
mod tests;
