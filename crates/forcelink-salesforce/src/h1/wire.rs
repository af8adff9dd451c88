//! One exchange on a connection: the request's bytes out, then the answer's head and body by
//! its framing (`Content-Length`, `chunked`, or the end of the connection).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::Connection;
use super::{Answer, Failure};

/// The largest answer accepted (token answers are about 2 KB).
pub(super) const MAX_BODY: usize = 1 << 20;
/// The largest status line and headers accepted.
const MAX_HEAD: usize = 64 << 10;
/// Headers parsed per answer at most.
const MAX_HEADERS: usize = 64;

/// Writes the request and reads one answer. `sent` turns true once any byte was handed to the
/// connection. Returns the answer and whether the connection can be reused.
pub(super) async fn exchange(
    connection: &mut Connection,
    request: &[u8],
    sent: &mut bool,
) -> Result<(Answer, bool), Failure> {
    connection.buffer.clear();
    let mut written = 0;
    while written < request.len() {
        match connection.stream.write(&request[written..]).await {
            Ok(0) | Err(_) => return Err(Failure::Lost),
            Ok(n) => {
                *sent = true;
                written += n;
            }
        }
    }
    connection.stream.flush().await.map_err(|_| Failure::Lost)?;
    loop {
        let (status, head_len, framing, close) = read_head(connection).await?;
        connection.buffer.drain(..head_len);
        // An interim answer (100 Continue and the like) is followed by the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = read_body(connection, framing).await?;
        let keep_alive = !close && framing != Framing::UntilClose && connection.buffer.is_empty();
        return Ok((Answer { status, body }, keep_alive));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads until a complete head is buffered: its status, length, framing and `Connection: close`.
async fn read_head(connection: &mut Connection) -> Result<(u16, usize, Framing, bool), Failure> {
    loop {
        if !connection.buffer.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&connection.buffer) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.ok_or(Failure::Lost)?;
                    let minor = response.version.unwrap_or(1);
                    let mut framing = Framing::UntilClose;
                    let mut close = minor == 0;
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            let value =
                                std::str::from_utf8(header.value).map_err(|_| Failure::Lost)?;
                            // Anything but a final `chunked` cannot be framed: read to the end.
                            framing = if value
                                .rsplit(',')
                                .next()
                                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
                            {
                                Framing::Chunked
                            } else {
                                close = true;
                                Framing::UntilClose
                            };
                        } else if header.name.eq_ignore_ascii_case("content-length")
                            && framing != Framing::Chunked
                        {
                            let length = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|value| value.trim().parse::<usize>().ok())
                                .ok_or(Failure::Lost)?;
                            if matches!(framing, Framing::Length(other) if other != length) {
                                return Err(Failure::Lost);
                            }
                            framing = Framing::Length(length);
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            let value = std::str::from_utf8(header.value).unwrap_or("");
                            if value
                                .split(',')
                                .any(|token| token.trim().eq_ignore_ascii_case("close"))
                            {
                                close = true;
                            }
                        }
                    }
                    // No body, whatever the headers say.
                    if status == 204 || status == 304 || (100..200).contains(&status) {
                        framing = Framing::Length(0);
                    }
                    return Ok((status, head_len, framing, close));
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(Failure::Lost),
            }
        }
        if connection.buffer.len() > MAX_HEAD {
            return Err(Failure::Lost);
        }
        fill(connection).await?;
    }
}

/// Reads more into the buffer; the end of the connection here is a failure.
async fn fill(connection: &mut Connection) -> Result<(), Failure> {
    let before = connection.buffer.len();
    connection.buffer.reserve(8 << 10);
    match connection.stream.read_buf(&mut connection.buffer).await {
        Ok(0) | Err(_) => Err(Failure::Lost),
        Ok(_) => {
            debug_assert!(connection.buffer.len() > before);
            Ok(())
        }
    }
}

async fn read_body(connection: &mut Connection, framing: Framing) -> Result<Vec<u8>, Failure> {
    match framing {
        Framing::Length(length) => {
            if length > MAX_BODY {
                return Err(Failure::Lost);
            }
            while connection.buffer.len() < length {
                fill(connection).await?;
            }
            Ok(connection.buffer.drain(..length).collect())
        }
        Framing::UntilClose => {
            loop {
                if connection.buffer.len() > MAX_BODY {
                    return Err(Failure::Lost);
                }
                connection.buffer.reserve(8 << 10);
                match connection.stream.read_buf(&mut connection.buffer).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(Failure::Lost),
                }
            }
            Ok(std::mem::take(&mut connection.buffer))
        }
        Framing::Chunked => read_chunked(connection).await,
    }
}

/// Decodes a chunked body (RFC 9112 §7.1), extensions and trailers ignored.
async fn read_chunked(connection: &mut Connection) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        let line = read_line(connection).await?;
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_text).map_err(|_| Failure::Lost)?;
        let size = usize::from_str_radix(size_text.trim(), 16).map_err(|_| Failure::Lost)?;
        if size == 0 {
            // Trailer fields, then the empty line.
            while !read_line(connection).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(Failure::Lost);
        }
        while connection.buffer.len() < size + 2 {
            fill(connection).await?;
        }
        if &connection.buffer[size..size + 2] != b"\r\n" {
            return Err(Failure::Lost);
        }
        body.extend_from_slice(&connection.buffer[..size]);
        connection.buffer.drain(..size + 2);
    }
}

/// Takes one CRLF-terminated line off the buffer (without the CRLF).
async fn read_line(connection: &mut Connection) -> Result<Vec<u8>, Failure> {
    loop {
        if let Some(end) = connection.buffer.windows(2).position(|w| w == b"\r\n") {
            let line = connection.buffer[..end].to_vec();
            connection.buffer.drain(..end + 2);
            return Ok(line);
        }
        if connection.buffer.len() > MAX_HEAD {
            return Err(Failure::Lost);
        }
        fill(connection).await?;
    }
}
