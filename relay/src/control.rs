//! The relay↔controller protocol: its messages and their framing (sans-IO codec).
//!
//! One QUIC bidirectional stream per session, opened by the relay, over the same
//! mutual-TLS connection rules as peer links. Each message is a 4-byte big-endian
//! length followed by that many bytes of JSON (one object with a `type` field).
//! JSON keeps the control plane easy to inspect; it carries a few messages per
//! second, not media.
//!
//! relay → controller: `hello` (who I am, the table version I hold), `links`
//! (my links' state and measurements, on change and periodically), `applied`
//! (the table version now in force).
//! controller → relay: `table` (the whole table when `full`, else a diff).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest message accepted: a full table for 2,000 destinations is ~200 KB.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    Hello {
        node: String,
        table_version: u64,
    },
    Links {
        links: Vec<LinkReport>,
        /// The relay is draining (stopping): route transit traffic around it.
        #[serde(default)]
        draining: bool,
    },
    Applied {
        version: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMessage {
    Table(TableUpdate),
}

/// One link as seen from the reporting relay's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    pub peer: String,
    pub up: bool,
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: f64,
}

/// A route table for one relay, whole or as a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableUpdate {
    pub version: u64,
    /// When true, `set` is the whole table and anything not in it is removed.
    pub full: bool,
    pub set: Vec<RouteEntry>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub dst: String,
    pub primary: String,
    pub backup: Option<String>,
}

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("control stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a message as length + JSON.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ControlError> {
    let json = serde_json::to_vec(message)?;
    if json.len() > MAX_MESSAGE {
        return Err(ControlError::TooLarge(json.len()));
    }
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read<T, R>(stream: &mut R) -> Result<Option<T>, ControlError>
where
    T: for<'de> Deserialize<'de>,
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ControlError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one message.
pub async fn write<T: Serialize, W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    message: &T,
) -> Result<(), ControlError> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(&encode(message)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_through_the_framing() {
        let msgs = vec![
            RelayMessage::Hello {
                node: "sha".into(),
                table_version: 0,
            },
            RelayMessage::Links {
                links: vec![LinkReport {
                    peer: "pdx".into(),
                    up: true,
                    rtt_ms: Some(121.5),
                    min_rtt_ms: Some(120.0),
                    jitter_ms: Some(0.4),
                    loss: 0.0,
                }],
                draining: true,
            },
            RelayMessage::Applied { version: 7 },
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode(m).expect("encode"));
        }
        let mut reader = &bytes[..];
        for m in &msgs {
            let back: RelayMessage = read(&mut reader).await.expect("read").expect("a message");
            assert_eq!(&back, m);
        }
        assert!(read::<RelayMessage, _>(&mut reader)
            .await
            .expect("clean end")
            .is_none());
        let json =
            String::from_utf8(encode(&msgs[2]).expect("encode")[4..].to_vec()).expect("utf8");
        assert_eq!(json, r#"{"type":"applied","version":7}"#);
    }

    #[tokio::test]
    async fn oversized_and_malformed_messages_are_errors() {
        let mut huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            read::<RelayMessage, _>(&mut &huge[..]).await,
            Err(ControlError::TooLarge(_))
        ));
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{oops");
        assert!(matches!(
            read::<RelayMessage, _>(&mut &bad[..]).await,
            Err(ControlError::Malformed(_))
        ));
        let truncated = 10u32.to_be_bytes().to_vec();
        assert!(matches!(
            read::<RelayMessage, _>(&mut &truncated[..]).await,
            Err(ControlError::Io(_))
        ));
    }
}
