//! The probe's HTTP exchange over in-memory streams: no network.

use std::net::Ipv6Addr;

use tokio::io::DuplexStream;

use super::*;

fn http_check(expect_body: Option<&str>) -> HttpCheck {
    HttpCheck {
        path: "/healthz".into(),
        expect_status: 200..=299,
        host: None,
        expect_body: expect_body.map(str::to_owned),
    }
}

/// Runs the exchange against a server that reads the request and writes `answer`, then
/// closes the connection if `close`, or else holds it open (so that only the answer's
/// own framing can end the read). Returns the verdict and the request the server read.
async fn exchange(http: &HttpCheck, answer: Vec<u8>, close: bool) -> (Verdict, String) {
    exchange_in_pieces(http, answer, close, 256 * 1024).await
}

/// [`exchange`], the answer coming in reads of at most `piece` bytes.
async fn exchange_in_pieces(
    http: &HttpCheck,
    answer: Vec<u8>,
    close: bool,
    piece: usize,
) -> (Verdict, String) {
    let (mut client, server) = tokio::io::duplex(piece);
    let (request_tx, request_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(server, answer, close, request_tx));
    let verdict = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        http_exchange(&mut client, http, "10.0.0.11"),
    )
    .await
    .expect("the exchange waited for more than its answer's framing promised");
    (verdict, request_rx.await.unwrap())
}

async fn serve(
    mut server: DuplexStream,
    answer: Vec<u8>,
    close: bool,
    request_tx: tokio::sync::oneshot::Sender<String>,
) {
    let mut request = Vec::new();
    while find(&request, b"\r\n\r\n").is_none() {
        let mut byte = [0u8; 1];
        if server.read_exact(&mut byte).await.is_err() {
            break;
        }
        request.push(byte[0]);
    }
    request_tx
        .send(String::from_utf8(request).unwrap())
        .unwrap();
    server.write_all(&answer).await.unwrap();
    if !close {
        std::future::pending::<()>().await;
    }
}

fn answer(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// The verdict on `response` read in one piece.
fn judge(response: &[u8], complete: bool, http: &HttpCheck) -> Option<Verdict> {
    Judge::new(http).judge(response, complete)
}

/// The verdict on `response` read a byte at a time, the last read ending the stream.
fn judge_byte_by_byte(response: &[u8], http: &HttpCheck) -> Verdict {
    let mut judge = Judge::new(http);
    for read in 1..response.len() {
        if let Some(verdict) = judge.judge(&response[..read], false) {
            return verdict;
        }
    }
    judge
        .judge(response, true)
        .expect("the end of the stream decides")
}

/// A chunked body decoded from one piece: its data, and whether it ended.
fn dechunk(body: &[u8]) -> (Vec<u8>, bool) {
    let mut dechunk = Dechunk::at(0);
    dechunk.advance(body);
    (dechunk.data, dechunk.next == ChunkPart::None)
}

/// [`dechunk`], the body coming a byte at a time.
fn dechunk_byte_by_byte(body: &[u8]) -> (Vec<u8>, bool) {
    let mut dechunk = Dechunk::at(0);
    for read in 1..=body.len() {
        dechunk.advance(&body[..read]);
    }
    (dechunk.data, dechunk.next == ChunkPart::None)
}

#[tokio::test]
async fn the_request_is_a_plain_get_that_asks_to_close() {
    let (verdict, request) = exchange(
        &http_check(None),
        answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        true,
    )
    .await;
    assert_eq!(
        request,
        "GET /healthz HTTP/1.1\r\nHost: 10.0.0.11\r\nUser-Agent: lbd-health-check\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
}

#[tokio::test]
async fn without_expect_body_the_status_line_is_enough() {
    // The connection stays open and the headers never end: the status line decides.
    let (verdict, _) = exchange(
        &http_check(None),
        answer("HTTP/1.1 204 No Content\r\n"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::passed("HTTP 204"));
}

#[tokio::test]
async fn a_status_outside_the_range_fails_naming_both() {
    let (verdict, _) = exchange(
        &http_check(Some("ok")),
        answer("HTTP/1.1 503 Service Unavailable\r\n\r\nok"),
        true,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("HTTP 503 (expected 200-299)"));

    let mut exactly_200 = http_check(None);
    exactly_200.expect_status = 200..=200;
    let (verdict, _) = exchange(
        &exactly_200,
        answer("HTTP/1.0 204 No Content\r\n\r\n"),
        true,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("HTTP 204 (expected 200)"));
}

#[tokio::test]
async fn the_body_must_hold_expect_body() {
    let check = http_check(Some("ok"));
    // Content-Length ends the body; the connection stays open.
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot ready"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nall ok"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
    // What follows the Content-Length bytes is not the body.
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbusyok"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    // Without framing, the end of the stream ends the body.
    let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\r\n\r\nnope"), true).await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\r\n"), true).await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
}

#[tokio::test]
async fn lines_may_end_in_a_bare_lf() {
    let check = http_check(Some("ok"));
    // What `printf "HTTP/1.0 200 OK\n\nok"` in an inetd script answers.
    let (verdict, _) = exchange(&check, answer("HTTP/1.0 200 OK\n\nok"), true).await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
    // Its headers are read too: Content-Length ends the body on an open connection.
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\nContent-Length: 4\n\nbusy"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
}

#[test]
fn the_head_ends_at_the_first_blank_line_whatever_its_line_ending() {
    // Were the head to end at the CRLF pair, the body would be "ok".
    assert_eq!(
        judge(
            b"HTTP/1.1 200 OK\nContent-Length: 4\n\nbusy\r\n\r\nok",
            false,
            &http_check(Some("ok"))
        ),
        Some(Verdict::failed("body lacks \"ok\""))
    );
    let mut lines = Lines::at(0);
    let text = b"HTTP/1.1 200 OK\r\nA: b\n\r";
    assert_eq!(lines.next(text), Some(&b"HTTP/1.1 200 OK"[..]));
    assert_eq!(lines.next(text), Some(&b"A: b"[..]));
    // A CR may be the start of a CRLF.
    assert_eq!(lines.next(text), None);
    let text = b"HTTP/1.1 200 OK\r\nA: b\n\r\nok\n\n";
    assert_eq!(lines.next(text), Some(&b""[..]));
    assert_eq!(lines.rest(text), b"ok\n\n");
}

#[tokio::test]
async fn interim_answers_are_skipped_and_the_final_one_judged() {
    let (verdict, _) = exchange(
        &http_check(Some("ok")),
        answer(
            "HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
    // Several of them, with headers of their own, and bare LFs.
    let (verdict, _) = exchange(
        &http_check(None),
        answer(
            "HTTP/1.1 100 Continue\n\n\
             HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
             HTTP/1.1 503 Service Unavailable\r\n\r\n",
        ),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("HTTP 503 (expected 200-299)"));
    // 101 is the last answer in HTTP/1.1: a switch of protocol, which no health page asks.
    let (verdict, _) = exchange(
        &http_check(None),
        answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("HTTP 101 (expected 200-299)"));
    let (verdict, _) = exchange(
        &http_check(None),
        answer("HTTP/1.1 100 Continue\r\n\r\n"),
        true,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("no final answer after HTTP 100"));
}

#[test]
fn an_interim_answer_cut_short_waits_for_more() {
    let check = http_check(None);
    assert_eq!(judge(b"HTTP/1.1 100 Continue\r\n", false, &check), None);
    assert_eq!(
        judge(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", false, &check),
        None
    );
    assert_eq!(
        judge(b"HTTP/1.1 100 Continue\r\n", true, &check),
        Some(Verdict::failed("no final answer after HTTP 100"))
    );
}

#[tokio::test]
async fn a_chunked_body_is_searched_whole() {
    let check = http_check(Some("ok"));
    // "o" and "k" in two chunks; the last chunk ends the body on an open connection.
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nis \r\n1\r\no\r\n1;x=y\r\nk\r\n0\r\n\r\n"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
    let (verdict, _) = exchange(
        &check,
        answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n"),
        false,
    )
    .await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
}

#[tokio::test]
async fn at_most_64_kib_of_the_answer_is_read() {
    let mut text = answer("HTTP/1.1 200 OK\r\n\r\n");
    text.extend(std::iter::repeat_n(b'a', 70 * 1024));
    text.extend(b"ok");
    let (verdict, _) = exchange(&http_check(Some("ok")), text, false).await;
    assert_eq!(verdict, Verdict::failed("body lacks \"ok\""));
}

#[tokio::test]
async fn an_answer_read_in_small_pieces_is_looked_at_once() {
    // A 64 KiB answer in 16-byte reads gets the verdict one read would: the head, the
    // chunks and the searched text all span reads.
    let head = "HTTP/1.1 200 OK\r\n\r\n";
    let mut text = answer(head);
    text.extend(std::iter::repeat_n(
        b'a',
        MAX_RESPONSE_BYTES - head.len() - 2,
    ));
    text.extend(b"ok");
    let (verdict, _) = exchange_in_pieces(&http_check(Some("ok")), text, false, 16).await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));

    let mut text = answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..600 {
        text.extend(b"64\r\n");
        text.extend([b'a'; 100]);
        text.extend(b"\r\n");
    }
    text.extend(b"2\r\nok\r\n0\r\n\r\n");
    assert!(text.len() <= MAX_RESPONSE_BYTES);
    let (verdict, _) = exchange_in_pieces(&http_check(Some("ok")), text, false, 16).await;
    assert_eq!(verdict, Verdict::passed("HTTP 200"));
}

#[tokio::test]
async fn what_is_not_http_fails() {
    for (text, detail) in [
        ("SSH-2.0-OpenSSH_9.6\r\n", "malformed status line"),
        ("HTTP/1.1 2000 OK\r\n", "malformed status line"),
        ("HTTP/1.1\r\n", "malformed status line"),
        ("", "connection closed without an answer"),
    ] {
        let (verdict, _) = exchange(&http_check(None), answer(text), true).await;
        assert_eq!(verdict, Verdict::failed(detail), "{text:?}");
    }
}

#[test]
fn a_long_expect_body_is_quoted_short() {
    let expected = "x".repeat(50);
    let verdict = judge(
        b"HTTP/1.1 200 OK\r\n\r\n",
        true,
        &http_check(Some(&expected)),
    );
    assert_eq!(
        verdict,
        Some(Verdict::failed(format!(
            "body lacks \"{}\"...",
            "x".repeat(40)
        )))
    );
}

#[test]
fn an_answer_cut_short_waits_for_more() {
    let check = http_check(Some("ok"));
    assert_eq!(judge(b"HTTP/1.1 2", false, &check), None);
    assert_eq!(judge(b"HTTP/1.1 200 OK\r\nContent-Le", false, &check), None);
    assert_eq!(
        judge(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nno",
            false,
            &check
        ),
        None
    );
}

#[test]
fn dechunk_follows_the_chunks() {
    let cases: [(&[u8], &[u8], bool); 7] = [
        (b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", b"abc", true),
        (b"2\r\nab\r\n5\r\ncd", b"abcd", false),
        (b"2\r\nab", b"ab", false),
        (b"A\r\n0123456789\r\n", b"0123456789", false),
        (b"zz\r\nab\r\n", b"", true),
        (b"2\r\nabcd", b"ab", true),
        (b"2\nab\n1;x=y\nc\n0\n\n", b"abc", true),
    ];
    for (body, data, ended) in cases {
        let expected = (data.to_vec(), ended);
        assert_eq!(dechunk(body), expected, "{body:?}");
        assert_eq!(
            dechunk_byte_by_byte(body),
            expected,
            "{body:?} byte by byte"
        );
    }
}

#[test]
fn an_answer_read_in_pieces_gets_the_verdict_of_one_read() {
    let answers = [
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall ok",
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot ready",
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbusyok",
        "HTTP/1.0 200 OK\n\nok",
        "HTTP/1.0 200 OK\r\n\r\nnope",
        "HTTP/1.0 200 OK\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nok",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nnoXXok",
        "SSH-2.0-OpenSSH_9.6\r\n",
    ];
    for text in answers {
        for check in [http_check(None), http_check(Some("ok"))] {
            assert_eq!(
                judge_byte_by_byte(text.as_bytes(), &check),
                judge(text.as_bytes(), true, &check).unwrap(),
                "{text:?} expecting {:?}",
                check.expect_body
            );
        }
    }
}

#[test]
fn the_default_host_is_the_address_and_any_port_but_80() {
    let v4: IpAddr = "10.0.0.11".parse().unwrap();
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));
    assert_eq!(default_host(v4, 80), "10.0.0.11");
    assert_eq!(default_host(v4, 8080), "10.0.0.11:8080");
    assert_eq!(default_host(v6, 80), "[2001:db8::11]");
    assert_eq!(default_host(v6, 8080), "[2001:db8::11]:8080");
}

#[test]
fn os_errors_read_without_their_number() {
    let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
    assert_eq!(
        format!("connect: {}", os_message(&refused)),
        "connect: Connection refused"
    );
    assert_eq!(os_message(&io::Error::other("odd")), "odd");
}
