//! Encoding and framing. The only module that knows the payload encoding is bincode.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::MAX_FRAME_LEN;

/// Why a value could not be encoded, decoded or moved over a framed stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("could not encode message: {0}")]
    Encode(String),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("malformed message: {extra} unexpected bytes after the value")]
    TrailingBytes { extra: usize },
    #[error("message of {len} bytes exceeds the {max}-byte frame limit")]
    TooLarge { len: usize, max: usize },
    #[error("connection closed")]
    Closed,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_LEN>,
>;

const fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes one value as a frame payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes exactly one value from a frame payload; leftover bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// The length-prefix codec: 4-byte big-endian length, capped at [`MAX_FRAME_LEN`].
pub fn length_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// A framed, typed message stream over any async byte stream.
pub struct FramedConn<S> {
    inner: Framed<S, LengthDelimitedCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedConn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            inner: Framed::new(stream, length_codec()),
        }
    }

    /// Sends one value as one frame.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> Result<(), CodecError> {
        let bytes = encode(value)?;
        self.inner.send(Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Receives one frame and decodes it. `Ok(None)` is a clean end of stream.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Ok(frame)) => decode(&frame).map(Some),
            Some(Err(e)) => Err(frame_error(e)),
        }
    }

    /// Receives one frame, treating end of stream as an error.
    pub async fn expect<T: DeserializeOwned>(&mut self) -> Result<T, CodecError> {
        self.recv().await?.ok_or(CodecError::Closed)
    }

    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
}

/// `LengthDelimitedCodec` reports an oversize length as `InvalidData`; name it properly.
fn frame_error(e: std::io::Error) -> CodecError {
    if e.kind() == std::io::ErrorKind::InvalidData
        && e.get_ref()
            .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
    {
        return CodecError::Decode(format!(
            "frame length exceeds the {MAX_FRAME_LEN}-byte limit"
        ));
    }
    // tokio-util reports EOF inside a frame as a bare `Other` error with this text.
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || (e.kind() == std::io::ErrorKind::Other && e.to_string() == "bytes remaining on stream")
    {
        return CodecError::Decode("connection closed in the middle of a frame".into());
    }
    CodecError::Io(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&42u32).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn declared_length_beyond_limit_is_refused_without_allocating() {
        // A Vec<u8> claiming 2^40 elements: the limit stops it before any allocation.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode::<Vec<u8>>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)), "{err}");
    }

    #[tokio::test]
    async fn oversize_frame_header_is_a_clear_error() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = FramedConn::new(a);
        use tokio::io::AsyncWriteExt;
        b.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = conn.recv::<u32>().await.unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[tokio::test]
    async fn truncated_frame_is_a_clear_error() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = FramedConn::new(a);
        use tokio::io::AsyncWriteExt;
        b.write_all(&10u32.to_be_bytes()).await.unwrap();
        b.write_all(&[1, 2, 3]).await.unwrap();
        drop(b);
        let err = conn.recv::<u32>().await.unwrap_err();
        assert!(err.to_string().contains("middle of a frame"), "{err}");
    }
}
