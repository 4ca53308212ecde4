//! A client of BIRD's control socket (what `birdc` speaks): one connection per command, a
//! line out, numbered reply lines back. The reply parser is pure.
//!
//! BIRD greets with `0001 BIRD 2.0.12 ready.`; each reply line starts with a four-digit code
//! followed by `-` (more lines follow) or a space (the last line), or with a space alone (the
//! previous code continues). Codes 0xxx say an action completed, 1xxx and 2xxx are table rows
//! and headings, 8xxx and 9xxx are errors (runtime, parse).

use std::{path::PathBuf, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
};

/// How long one command may take, connecting included. A `configure` of lbd's few lines takes
/// milliseconds; BIRD busy for longer is reported rather than waited on.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest reply read (a `show protocols` of a few hundred sessions fits).
const MAX_REPLY_LINES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("cannot reach BIRD at {socket}: {source}")]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("BIRD at {socket} did not answer `{command}` within {}s", COMMAND_TIMEOUT.as_secs())]
    Timeout { socket: PathBuf, command: String },
    #[error("BIRD at {socket}: connection lost during `{command}`: {source}")]
    Io {
        socket: PathBuf,
        command: String,
        source: std::io::Error,
    },
    #[error("BIRD refused `{command}`: {message}")]
    Refused { command: String, message: String },
    #[error("BIRD at {socket} answered `{command}` with what is not its protocol: {line:?}")]
    Garbled {
        socket: PathBuf,
        command: String,
        line: String,
    },
}

/// One line of a reply: its code (that of the line it continues, for a continuation) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    pub code: u16,
    pub text: String,
}

/// Where a reply line leaves the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More lines follow.
    More(ReplyLine),
    /// The reply's last line.
    Last(ReplyLine),
    /// An asynchronous message (`+…`), not part of the reply.
    Aside,
}

/// One reply line; `previous` is the code of the line before (for continuations).
pub fn parse_line(line: &str, previous: Option<u16>) -> Option<Parsed> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.starts_with('+') {
        return Some(Parsed::Aside);
    }
    if let Some(text) = line.strip_prefix(' ') {
        return Some(Parsed::More(ReplyLine {
            code: previous?,
            text: text.to_owned(),
        }));
    }
    let code_text = line.get(..4)?;
    if !code_text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code_text.parse().ok()?;
    let text = line.get(5..).unwrap_or("").to_owned();
    match line.as_bytes().get(4) {
        Some(b'-') => Some(Parsed::More(ReplyLine { code, text })),
        Some(b' ') | None => Some(Parsed::Last(ReplyLine { code, text })),
        Some(_) => None,
    }
}

/// Whether a reply code is an error (8xxx runtime, 9xxx parse).
pub fn is_error(code: u16) -> bool {
    code >= 8000
}

/// A session as `show protocols` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolRow {
    pub name: String,
    /// BIRD's protocol state: `up`, `start`, `down`, …
    pub state: String,
    /// For BGP: the session state (`Established`, `Active`, `Connect`, …) and what follows
    /// (`Socket: Connection refused`).
    pub info: String,
}

/// BGP's session states as BIRD names them, which start a BGP row's info column.
const BGP_STATES: &[&str] = &[
    "Idle",
    "Connect",
    "Active",
    "OpenSent",
    "OpenConfirm",
    "Established",
    "Close",
    "Down",
];

/// The rows of a `show protocols` reply (code 1002). Columns: name, protocol, table, state,
/// since (one or two words, by BIRD's time format), info.
pub fn protocol_rows(reply: &[ReplyLine]) -> Vec<ProtocolRow> {
    reply
        .iter()
        .filter(|line| line.code == 1002)
        .filter_map(|line| {
            let words: Vec<&str> = line.text.split_whitespace().collect();
            let (name, state) = (words.first()?, words.get(3)?);
            let info = words
                .iter()
                .skip(4)
                .position(|word| BGP_STATES.contains(word))
                .map(|start| words[4 + start..].join(" "))
                .unwrap_or_default();
            Some(ProtocolRow {
                name: (*name).to_owned(),
                state: (*state).to_owned(),
                info,
            })
        })
        .collect()
}

/// BIRD's control socket at `socket`.
#[derive(Debug, Clone)]
pub struct BirdSocket {
    socket: PathBuf,
}

impl BirdSocket {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.socket
    }

    /// `configure`: BIRD reads its configuration again (lbd's file with it) and applies the
    /// difference; sessions whose settings did not change stay up. Returns BIRD's last line.
    pub async fn configure(&self) -> Result<String, BirdError> {
        let reply = self.command("configure").await?;
        Ok(reply
            .last()
            .map(|line| line.text.clone())
            .unwrap_or_default())
    }

    /// `show protocols`.
    pub async fn protocols(&self) -> Result<Vec<ProtocolRow>, BirdError> {
        Ok(protocol_rows(&self.command("show protocols").await?))
    }

    /// Sends `command` and returns its reply; an error code in it is [`BirdError::Refused`].
    pub async fn command(&self, command: &str) -> Result<Vec<ReplyLine>, BirdError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.exchange(command)).await {
            Ok(result) => result,
            Err(_) => Err(BirdError::Timeout {
                socket: self.socket.clone(),
                command: command.to_owned(),
            }),
        }
    }

    async fn exchange(&self, command: &str) -> Result<Vec<ReplyLine>, BirdError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| BirdError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                })?;
        let io_error = |source| BirdError::Io {
            socket: self.socket.clone(),
            command: command.to_owned(),
            source,
        };
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        // The greeting is a reply of its own.
        self.read_reply(&mut reader, command).await?;
        writer
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io_error)?;
        let reply = self.read_reply(&mut reader, command).await?;
        if let Some(error) = reply.iter().find(|line| is_error(line.code)) {
            let message = reply
                .iter()
                .filter(|line| line.code == error.code)
                .map(|line| line.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            return Err(BirdError::Refused {
                command: command.to_owned(),
                message,
            });
        }
        Ok(reply)
    }

    async fn read_reply(
        &self,
        reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
        command: &str,
    ) -> Result<Vec<ReplyLine>, BirdError> {
        let mut lines = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .await
                .map_err(|source| BirdError::Io {
                    socket: self.socket.clone(),
                    command: command.to_owned(),
                    source,
                })?;
            if read == 0 {
                return Err(BirdError::Io {
                    socket: self.socket.clone(),
                    command: command.to_owned(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            let garbled = || BirdError::Garbled {
                socket: self.socket.clone(),
                command: command.to_owned(),
                line: line.trim_end().to_owned(),
            };
            let previous = lines.last().map(|last: &ReplyLine| last.code);
            match parse_line(&line, previous).ok_or_else(garbled)? {
                Parsed::Aside => {}
                Parsed::More(reply_line) => {
                    if lines.len() == MAX_REPLY_LINES {
                        return Err(garbled());
                    }
                    lines.push(reply_line);
                }
                Parsed::Last(reply_line) => {
                    lines.push(reply_line);
                    return Ok(lines);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(code: u16, text: &str) -> ReplyLine {
        ReplyLine {
            code,
            text: text.to_owned(),
        }
    }

    #[test]
    fn reply_lines_parse_by_their_code_and_separator() {
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready.\n", None),
            Some(Parsed::Last(line(1, "BIRD 2.0.12 ready.")))
        );
        assert_eq!(
            parse_line(
                "0002-Reading configuration from /etc/bird/bird.conf\n",
                None
            ),
            Some(Parsed::More(line(
                2,
                "Reading configuration from /etc/bird/bird.conf"
            )))
        );
        assert_eq!(
            parse_line(" more of it\n", Some(8002)),
            Some(Parsed::More(line(8002, "more of it")))
        );
        assert_eq!(parse_line("+log line\n", None), Some(Parsed::Aside));
        assert_eq!(parse_line("0000\n", None), Some(Parsed::Last(line(0, ""))));
        // A continuation with nothing to continue, and lines without a code, are garbled.
        assert_eq!(parse_line(" orphan\n", None), None);
        assert_eq!(parse_line("hello\n", None), None);
        assert_eq!(parse_line("12ab text\n", None), None);
        assert_eq!(parse_line("0003xReconfigured\n", None), None);
        assert!(is_error(8002) && is_error(9001) && !is_error(3) && !is_error(1002));
    }

    #[test]
    fn show_protocols_rows_give_each_session_state() {
        // BIRD 2.0.12's `show protocols`, time format of either width.
        let reply = vec![
            line(
                2002,
                "Name       Proto      Table      State  Since         Info",
            ),
            line(
                1002,
                "lbd_device Device     ---        up     06:41:07.123  ",
            ),
            line(
                1002,
                "lbd_vips4  Static     lbd_vips4  up     06:41:07.123  ",
            ),
            line(
                1002,
                "lbd_peer1  BGP        ---        up     06:41:08.456  Established   ",
            ),
            line(
                1002,
                "lbd_peer2  BGP        ---        start  2026-11-27 06:41:07  Active        Socket: Connection refused",
            ),
            line(0, ""),
        ];
        let rows = protocol_rows(&reply);
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[2],
            ProtocolRow {
                name: "lbd_peer1".into(),
                state: "up".into(),
                info: "Established".into()
            }
        );
        assert_eq!(
            rows[3],
            ProtocolRow {
                name: "lbd_peer2".into(),
                state: "start".into(),
                info: "Active Socket: Connection refused".into()
            }
        );
        assert_eq!(rows[0].info, "");
    }
}
