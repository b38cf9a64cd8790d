//! WebSocket tunnels that end cleanly at a drain deadline.
//!
//! A byte-copying tunnel cut at the deadline leaves the browser with a
//! dropped connection (close code 1006). This one follows the frame
//! boundaries of what the backend sends (only the headers: the payload is
//! copied untouched), and when the route's drain deadline passes it lets
//! the frame in flight finish, then sends the client a close frame with
//! code 1001 (going away), so its code reconnects — to the new release.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The close frame paas sends: FIN + close opcode, 2 payload bytes, 1001.
pub const GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];
/// How long a frame in flight at the deadline may take to finish, and the
/// client to answer the close.
const FINISH: Duration = Duration::from_secs(2);

/// Where a stream of WebSocket frames is: in a header, in a payload, or
/// between frames.
#[derive(Debug, Default)]
pub struct Frames {
    header: [u8; 14],
    /// Header bytes seen of the current frame.
    have: usize,
    /// Header length, once its first two bytes say it (0 before).
    need: usize,
    /// Payload bytes still to come.
    remaining: u64,
}

impl Frames {
    /// Between two frames: a frame of our own may be sent now.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Follows `bytes` of the stream.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(bytes.len() as u64)) as usize;
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 2 {
                let extra = match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + extra + mask;
            }
            if self.have >= 2 && self.have == self.need {
                self.remaining = match self.header[1] & 0x7f {
                    126 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
                    127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0; 8])),
                    n => n as u64,
                };
                self.have = 0;
                self.need = 0;
            }
        }
    }
}

/// Copies a WebSocket connection both ways until either side ends it; at
/// `closing` (the drain deadline), ends it with a close frame (1001).
pub async fn tunnel<C, B>(client: C, backend: B, closing: CancellationToken)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut backend_rx, mut backend_tx) = tokio::io::split(backend);
    let up = async {
        let _ = tokio::io::copy(&mut client_rx, &mut backend_tx).await;
        let _ = backend_tx.shutdown().await;
    };
    let down = async {
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Only the read is raced with the deadline: a write is never
            // cut in the middle, so `frames` knows what the client got.
            let n = tokio::select! {
                r = backend_rx.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                () = closing.cancelled() => {
                    close_cleanly(&mut backend_rx, &mut client_tx, &mut frames, &mut buf).await;
                    return;
                }
            };
            frames.advance(&buf[..n]);
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => {
            // The backend ended (or the deadline did): the client has a
            // moment to answer the close, then the connection goes.
            let _ = tokio::time::timeout(FINISH, &mut up).await;
        }
        () = &mut up => {
            // The client ended: the backend saw EOF and should end too,
            // else the deadline ends it.
            down.await;
        }
    }
}

/// Lets the frame in flight reach the client (at most [`FINISH`]), then
/// sends the close frame and ends the client's side.
async fn close_cleanly<R, W>(backend: &mut R, client: &mut W, frames: &mut Frames, buf: &mut [u8])
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let finish = async {
        while !frames.at_boundary() {
            match backend.read(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Only up to the end of the frame in flight.
                    let mut taken = 0;
                    while taken < n && !frames.at_boundary() {
                        frames.advance(&buf[taken..taken + 1]);
                        taken += 1;
                    }
                    if client.write_all(&buf[..taken]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(FINISH, finish).await;
    if frames.at_boundary() {
        let _ = client.write_all(&GOING_AWAY).await;
    }
    let _ = client.flush().await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked) with `len` payload bytes.
    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0x81];
        match len {
            0..=125 => f.push(len as u8),
            126..=65535 => {
                f.push(126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    #[test]
    fn frame_boundaries_are_followed_across_reads_of_any_size() {
        let stream: Vec<u8> = [frame(5), frame(300), frame(70_000), frame(0)].concat();
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut f = Frames::default();
            let mut boundaries = Vec::new();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                for (i, b) in piece.iter().enumerate() {
                    f.advance(std::slice::from_ref(b));
                    if f.at_boundary() {
                        boundaries.push(at + i + 1);
                    }
                }
                at += piece.len();
            }
            let want = [7, 7 + 304, 7 + 304 + 70_010, 7 + 304 + 70_010 + 2];
            assert_eq!(boundaries, want, "chunk {chunk}");
        }
        // A masked client frame: 4 more header bytes.
        let mut f = Frames::default();
        f.advance(&[0x81, 0x83, 1, 2, 3, 4, b'a', b'b']);
        assert!(!f.at_boundary());
        f.advance(b"c");
        assert!(f.at_boundary());
    }

    #[tokio::test]
    async fn the_deadline_waits_for_the_frame_in_flight_then_sends_going_away() {
        let (client, mut client_end) = tokio::io::duplex(1 << 16);
        let (backend, mut backend_end) = tokio::io::duplex(1 << 16);
        let closing = CancellationToken::new();
        let task = tokio::spawn(tunnel(client, backend, closing.clone()));
        let big = frame(1000);
        // Half a frame, then the deadline, then the rest.
        backend_end.write_all(&big[..500]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        closing.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        backend_end.write_all(&big[500..]).await.unwrap();
        let mut got = Vec::new();
        client_end.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), big.len() + GOING_AWAY.len());
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], &GOING_AWAY);
        drop(client_end);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
