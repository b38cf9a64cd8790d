//! Lines out of byte streams, cut one way for the whole crate.
//!
//! tokio-util's delimiter codec cuts at `\n` and keeps a partial line until
//! its end arrives; when the source ends, what is left is a last line of its
//! own. A `\r` before the `\n` and invalid UTF-8 stay in the line's bytes:
//! output passed through (a one-off command's) is written back as it came,
//! text for people goes through [`text`].

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, FramedRead};
use tokio_util::io::StreamReader;

fn codec() -> AnyDelimiterCodec {
    AnyDelimiterCodec::new(b"\n".to_vec(), Vec::new())
}

/// The lines of a stream of byte chunks (an HTTP body), each without its
/// `\n`, as they arrive. An error of the stream is passed on.
pub fn of_stream<S, B, E>(chunks: S) -> impl Stream<Item = io::Result<Bytes>>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let reader = StreamReader::new(chunks.map(|chunk| chunk.map_err(io::Error::other)));
    FramedRead::new(reader, codec()).map(|line| {
        line.map_err(|e| match e {
            AnyDelimiterCodecError::Io(e) => e,
            other => io::Error::other(other),
        })
    })
}

/// A line as text: invalid UTF-8 replaced, line-ending characters at its end
/// removed.
pub fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

/// Lines of a source whose pieces the caller pushes as they come (a Docker
/// stream that interleaves stdout and stderr needs one per channel), as
/// [`text`].
pub struct Lines {
    codec: AnyDelimiterCodec,
    buf: BytesMut,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            codec: codec(),
            buf: BytesMut::new(),
        }
    }
}

impl Lines {
    /// Adds a piece; returns the lines it completes.
    pub fn push(&mut self, piece: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(piece);
        let mut lines = Vec::new();
        // The codec has no length limit, so it cannot fail.
        while let Ok(Some(line)) = self.codec.decode(&mut self.buf) {
            lines.push(text(&line));
        }
        lines
    }

    /// The source ended: the partial line left, if any.
    pub fn finish(&mut self) -> Option<String> {
        self.codec
            .decode_eof(&mut self.buf)
            .ok()
            .flatten()
            .map(|line| text(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_pieces_split_across_chunks() {
        let mut s = Lines::default();
        assert_eq!(s.push(b"a\r\nb"), vec!["a"]);
        assert_eq!(s.push(b"c\n\nd"), vec!["bc", ""]);
        assert_eq!(s.push(b"\xffe"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("d\u{fffd}e"));
        assert_eq!(s.finish(), None);
    }

    #[tokio::test]
    async fn a_stream_keeps_bytes_and_its_partial_last_line() {
        let chunks: Vec<Result<Bytes, io::Error>> = vec![
            Ok(Bytes::from_static(b"one\r\ntw")),
            Ok(Bytes::from_static(b"o\n\xff\n")),
            Ok(Bytes::from_static(b"tail")),
        ];
        let lines: Vec<Bytes> = of_stream(futures_util::stream::iter(chunks))
            .map(|l| l.unwrap())
            .collect()
            .await;
        let want: [&[u8]; 4] = [b"one\r", b"two", b"\xff", b"tail"];
        assert_eq!(lines, want);
        assert_eq!(text(&lines[0]), "one");
        assert_eq!(text(&lines[2]), "\u{fffd}");
    }

    #[tokio::test]
    async fn a_stream_error_is_passed_on() {
        let chunks: Vec<Result<Bytes, io::Error>> = vec![
            Ok(Bytes::from_static(b"done\npart")),
            Err(io::Error::other("connection reset")),
        ];
        let mut lines = std::pin::pin!(of_stream(futures_util::stream::iter(chunks)));
        assert_eq!(lines.next().await.unwrap().unwrap(), "done");
        let e = lines.next().await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "connection reset");
    }
}
