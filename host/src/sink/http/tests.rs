use super::config::{Found, base64};
use super::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

fn config(text: &str) -> HttpSinkConfig {
    toml::from_str::<HttpSinkConfig>(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The key paths (`a.b`) of the problems `validate` would report.
fn problems(text: &str) -> Vec<String> {
    let mut found: Found = Vec::new();
    let resolved = config(text).resolve(&mut found);
    assert_eq!(resolved.is_some(), found.is_empty());
    found.iter().map(|(path, _)| path.join(".")).collect()
}

fn events(bodies: &[&str]) -> Vec<Event> {
    bodies
        .iter()
        .map(|b| Event::from_body(Arc::from("t"), b.as_bytes().to_vec()))
        .collect()
}

#[test]
fn retry_after_in_seconds_and_dates() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let p = |v: &str| parse_retry_after(v.as_bytes(), now);
    assert_eq!(p("1"), Some(Duration::from_secs(1)));
    assert_eq!(p(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(p("0"), None, "zero falls back to the backoff");
    assert_eq!(p("999999999999999999999999"), Some(MAX_RETRY_AFTER));
    assert_eq!(p("86400"), Some(MAX_RETRY_AFTER));
    for bad in [
        "",
        "-1",
        "1.5",
        "soon",
        "1e3",
        "Sun, 06 Nov 1994 08:49:37 CET",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
    // The three date forms, 30 s ahead.
    for date in [
        "Sun, 06 Nov 1994 08:50:07 GMT",
        "Sunday, 06-Nov-94 08:50:07 GMT",
        "Sun Nov  6 08:50:07 1994",
    ] {
        assert_eq!(p(date), Some(Duration::from_secs(30)), "{date}");
    }
    assert_eq!(p("Sun, 06 Nov 1994 08:49:00 GMT"), None, "in the past");
    assert_eq!(p("Sun, 06 Nov 2094 08:49:00 GMT"), Some(MAX_RETRY_AFTER));
    assert_eq!(p("Sun, 32 Nov 1994 08:50:07 GMT"), None);
    assert_eq!(p("Sun, 06 Nov 1994 24:50:07 GMT"), None);
    // Checked against Python's email.utils.parsedate + calendar.timegm.
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date("Wed, 29 Feb 2040 23:59:60 GMT"),
        Some(2_214_172_800)
    );
}

#[test]
fn statuses_are_classified() {
    use Class::*;
    for (status, class) in [
        (200, Delivered),
        (201, Delivered),
        (204, Delivered),
        (100, Reject),
        (301, Reject),
        (302, Reject),
        (304, Reject),
        (307, Reject),
        (400, Reject),
        (401, Reject),
        (403, Reject),
        (404, Reject),
        (408, Retry),
        (409, Reject),
        (413, Reject),
        (422, Reject),
        (429, Retry),
        (500, Retry),
        (502, Retry),
        (503, Retry),
        (504, Retry),
        (599, Retry),
    ] {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(classify(status), class, "{status}");
    }
    let e = status_error(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Duration::from_secs(1)),
        None,
        b"",
        "http://h/",
    );
    assert!(matches!(e, SendError::Retry { after: Some(d), .. } if d == Duration::from_secs(1)));
    let e = status_error(
        StatusCode::BAD_REQUEST,
        None,
        None,
        b"bad line 3\n",
        "http://h/x",
    );
    let SendError::Reject { message } = e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "http://h/x answered 400 Bad Request: bad line 3");
    let e = status_error(
        StatusCode::FOUND,
        None,
        Some("https://h/y"),
        b"",
        "http://h/x",
    );
    assert!(
        matches!(&e, SendError::Reject { message } if message.contains("302 Found to https://h/y")),
        "{e:?}"
    );
}

#[test]
fn signature_matches_an_independent_computation() {
    let signer = Signer::new(
        b"s3cret-key",
        HeaderName::from_static("x-runnel-timestamp"),
        HeaderName::from_static("x-runnel-signature"),
    );
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"s3cret-key",
    //     b"1700000000." + b"{\"a\":1}\n", hashlib.sha256).hexdigest())'
    assert_eq!(
        signer.sign("1700000000", b"{\"a\":1}\n"),
        "v1=e2c8fc050805c1aab686e070a9948ccbc4df06d4347d0fceea8ff1e546624112"
    );
}

#[test]
fn basic_credentials_are_base64() {
    // Python's base64.b64encode.
    assert_eq!(
        base64(b"aladdin:open sesame"),
        "YWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64("user:päss".as_bytes()), "dXNlcjpww6Rzcw==");
    assert_eq!(base64(b""), "");
}

#[test]
fn json_arrays_are_valid_json() {
    for bodies in [&[][..], &["one"][..], &["a", "b \"quoted\"\nline", "c"][..]] {
        let mut out = Vec::new();
        encode_body(BodyEncoding::JsonArray, &events(bodies), &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&out)));
        let items = value.as_array().unwrap();
        assert_eq!(items.len(), bodies.len());
        for (item, body) in items.iter().zip(bodies) {
            assert_eq!(item["body"], *body);
        }
    }
    let mut out = Vec::new();
    encode_body(BodyEncoding::Ndjson, &events(&["a", "b"]), &mut out);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 2);
}

#[test]
fn gzip_round_trips() {
    let service = HttpService::new(
        &config("uri = \"http://127.0.0.1:1/\"\ncompression = \"gzip\"\ncompression_level = 9"),
        "gz",
    )
    .unwrap();
    let batch = events(&["x"; 100]);
    let mut plain = Vec::new();
    encode_body(BodyEncoding::Ndjson, &batch, &mut plain);
    for _ in 0..2 {
        let mut out = b"kept".to_vec();
        service.encode(&batch, &mut out);
        assert_eq!(&out[..4], b"kept");
        assert!(out.len() - 4 < plain.len() / 4);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[4..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain);
    }
}

#[test]
fn defaults() {
    let c = config("uri = \"https://logs.example.com/in\"");
    assert_eq!(c.method, config::Method::Post);
    assert_eq!(c.encoding, BodyEncoding::Ndjson);
    assert_eq!(c.compression, config::CompressionKind::None);
    assert_eq!(
        (c.connect_timeout_ms, c.request_timeout_ms, c.in_flight),
        (5000, 30000, 2)
    );
    let r = c.resolve(&mut Vec::new()).unwrap();
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/x-ndjson");
    assert!(r.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(r.user_agent, concat!("runnel/", env!("CARGO_PKG_VERSION")));
    let r = config("uri = \"http://h/\"\nencoding = \"json_array\"\ncompression = \"gzip\"")
        .resolve(&mut Vec::new())
        .unwrap();
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(r.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(r.gzip, Some(1));
}

#[test]
fn validation_names_the_keys() {
    assert!(problems("uri = \"http://127.0.0.1:8080/x\"").is_empty());
    assert_eq!(problems("uri = \"not a url\""), ["uri"]);
    assert_eq!(problems("uri = \"ftp://h/\""), ["uri"]);
    assert_eq!(problems("uri = \"http://h/#frag\""), ["uri"]);
    assert_eq!(
        problems("uri = \"http://h/\"\ncompression_level = 3"),
        ["compression_level"]
    );
    assert_eq!(
        problems("uri = \"http://h/\"\ncompression = \"gzip\"\ncompression_level = 10"),
        ["compression_level"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nheaders = { \"bad name\" = \"v\", \"X-Ok\" = \"v\", \"X-Nl\" = \"a\\nb\", \"Content-Length\" = \"1\", \"User-Agent\" = \"x\" }"
        ),
        [
            "headers.Content-Length",
            "headers.User-Agent",
            "headers.X-Nl",
            "headers.bad name"
        ]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nin_flight = 0\nconnect_timeout_ms = 0\nrequest_timeout_ms = 99999999"
        ),
        ["connect_timeout_ms", "request_timeout_ms", "in_flight"]
    );
    assert_eq!(
        problems("uri = \"http://h/\"\nin_flight = 65"),
        ["in_flight"]
    );
    assert_eq!(
        problems("uri = \"http://h/\"\nuser_agent = \"\""),
        ["user_agent"]
    );
    assert_eq!(
        problems("uri = \"http://h/\"\nauth = { strategy = \"bearer\" }"),
        ["auth"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nauth = { strategy = \"bearer\", token = \"a\", token_file = \"/x\" }"
        ),
        ["auth.token_file"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nauth = { strategy = \"bearer\", token_file = \"/nonexistent/token\" }"
        ),
        ["auth.token_file"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nauth = { strategy = \"basic\", user = \"a:b\", password = \"p\" }"
        ),
        ["auth.user"]
    );
    assert_eq!(
        problems(
            "uri = \"http://u:p@h/\"\nauth = { strategy = \"basic\", user = \"a\", password = \"p\" }"
        ),
        ["auth"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nauth = { strategy = \"bearer\", token = \"t\" }\nheaders = { Authorization = \"x\" }"
        ),
        ["headers.Authorization"]
    );
    assert_eq!(
        problems(
            "uri = \"http://h/\"\nsignature = { key_file = \"/nonexistent/key\", header_prefix = \"X Bad \" }"
        ),
        ["signature.key_file", "signature.header_prefix"]
    );
    assert_eq!(
        problems("uri = \"http://h/\"\ntls = { verify = false }"),
        ["tls"]
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    assert_eq!(
        problems(&format!(
            "uri = \"https://h/\"\ntls = {{ ca_file = {:?} }}",
            not_pem.display().to_string()
        )),
        ["tls.ca_file"]
    );
    // Unknown keys and strategies are refused by serde.
    assert!(toml::from_str::<HttpSinkConfig>("uri = \"http://h/\"\nurl = \"x\"").is_err());
    assert!(
        toml::from_str::<HttpSinkConfig>(
            "uri = \"http://h/\"\nauth = { strategy = \"bearer\", token = \"t\", user = \"u\" }"
        )
        .is_err()
    );
    assert!(
        toml::from_str::<HttpSinkConfig>("uri = \"http://h/\"\nauth = { strategy = \"digest\" }")
            .is_err()
    );
    assert!(toml::from_str::<HttpSinkConfig>("uri = \"http://h/\"\nmethod = \"get\"").is_err());
}

#[test]
fn secrets_stay_out_of_debug_and_messages() {
    let c = config(
        "uri = \"http://user:hunter2@h/\"\nheaders = { \"X-Api-Key\" = \"k-123\" }\nuser_agent = \"x\"",
    );
    let debug = format!("{c:?}");
    assert!(
        debug.contains("X-Api-Key") && !debug.contains("k-123"),
        "{debug}"
    );
    let r = config("uri = \"http://h/\"\nauth = { strategy = \"bearer\", token = \"hunter2\" }");
    assert!(!format!("{r:?}").contains("hunter2"));
    let resolved = c.resolve(&mut Vec::new()).unwrap();
    assert_eq!(resolved.display_uri, "http://h/");
}

// ---- against the test peer -------------------------------------------------------------

/// `tests/peers/http_receiver.py`, driven through its stdin.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/http_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/peers/http_receiver.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Peer {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// Sends a command and returns its reply line.
    fn command(&mut self, command: &str) -> String {
        use std::io::Write as _;
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("ok {command}"), "reply to {command:?}");
        line
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(text: &str) -> Arc<HttpService> {
    Arc::new(HttpService::new(&config(text), "test").unwrap())
}

async fn send(service: &Arc<HttpService>, bodies: &[&str]) -> Result<(), SendError> {
    let mut bytes = Vec::new();
    service.encode(&events(bodies), &mut bytes);
    let payload = Payload {
        bytes: bytes.into(),
        events: bodies.len(),
        parts: Vec::new(),
    };
    service.clone().send(Arc::new(payload)).await
}

fn lines(path: &PathBuf) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn delivers_to_the_peer_and_classifies_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let key = dir.path().join("key");
    std::fs::write(&key, "k3y-for-hmac\n").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "T\n").unwrap();
    let mut peer = Peer::start(&[
        "--out",
        out.to_str().unwrap(),
        "--hmac-key-file",
        key.to_str().unwrap(),
        "--bearer",
        "T",
    ]);
    let uri = format!("http://127.0.0.1:{}/ingest", peer.port);
    let signed = format!(
        "uri = {uri:?}\nauth = {{ strategy = \"bearer\", token_file = {:?} }}\n\
         signature = {{ key_file = {:?} }}\nrequest_timeout_ms = 700\nconnect_timeout_ms = 700\n",
        token.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let gzip = service(&format!("{signed}compression = \"gzip\""));
    let array = service(&format!("{signed}encoding = \"json_array\""));

    // Delivered: gzip NDJSON and a plain JSON array, both signed.
    send(&gzip, &["one", "two", "thr\"ee"]).await.unwrap();
    send(&array, &["four", "five"]).await.unwrap();
    let got: Vec<String> = lines(&out)
        .iter()
        .map(|v| v["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["one", "two", "thr\"ee", "four", "five"]);
    assert_eq!(lines(&out)[0]["name"], "t");

    // Outages: retried, after the peer's Retry-After.
    for mode in ["503", "429"] {
        peer.command(&format!("mode {mode}"));
        match send(&gzip, &["x"]).await {
            Err(SendError::Retry { after, message }) => {
                assert_eq!(after, Some(Duration::from_secs(1)), "{message}");
                assert!(
                    message.contains(mode) && message.contains(&uri),
                    "{message}"
                );
            }
            other => panic!("mode {mode}: {other:?}"),
        }
    }
    peer.command("mode 500");
    assert!(matches!(
        send(&gzip, &["x"]).await,
        Err(SendError::Retry { after: None, .. })
    ));
    peer.command("mode 413");
    match send(&gzip, &["x"]).await {
        Err(SendError::Reject { message }) => assert!(message.contains("413"), "{message}"),
        other => panic!("{other:?}"),
    }

    // Refused for good: a bad batch, bad credentials.
    peer.command("mode ok");
    peer.command("reject-marker POISON");
    match send(&array, &["fine", "POISON pill"]).await {
        Err(SendError::Reject { message }) => {
            assert!(
                message.contains("400") && message.contains("reject-marker matched"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    peer.command("reject-marker");
    let wrong = service(&format!(
        "uri = {uri:?}\nauth = {{ strategy = \"bearer\", token = \"wrong\" }}"
    ));
    match send(&wrong, &["x"]).await {
        Err(SendError::Reject { message }) => assert!(message.contains("401"), "{message}"),
        other => panic!("{other:?}"),
    }
    let unsigned = service(&format!(
        "uri = {uri:?}\nauth = {{ strategy = \"bearer\", token = \"T\" }}"
    ));
    match send(&unsigned, &["x"]).await {
        Err(SendError::Reject { message }) => {
            assert!(message.contains("missing signature"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // No server: retried.
    peer.command("mode refuse");
    match send(&gzip, &["x"]).await {
        Err(SendError::Retry {
            after: None,
            message,
        }) => assert!(message.contains(&uri), "{message}"),
        other => panic!("refuse: {other:?}"),
    }
    // No answer: timed out, retried.
    peer.command("mode ok");
    peer.command("mode hang");
    let started = std::time::Instant::now();
    match send(&gzip, &["x"]).await {
        Err(SendError::Retry {
            after: None,
            message,
        }) => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("hang: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    peer.command("mode ok");

    // Back: the same services deliver again (fresh signatures, new connections).
    send(&gzip, &["six"]).await.unwrap();
    send(&array, &["seven"]).await.unwrap();
    let got: Vec<String> = lines(&out)
        .iter()
        .map(|v| v["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        ["one", "two", "thr\"ee", "four", "five", "six", "seven"]
    );
}

#[tokio::test]
async fn basic_auth_put_and_extra_headers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let requests = dir.path().join("requests.jsonl");
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\r\n").unwrap();
    let peer = Peer::start(&[
        "--out",
        out.to_str().unwrap(),
        "--requests-out",
        requests.to_str().unwrap(),
        "--basic",
        "edge:s3cret",
        "--expect-header",
        "X-Tenant:edge-7",
    ]);
    let base = format!("http://127.0.0.1:{}/put/here", peer.port);
    let s = service(&format!(
        "uri = {base:?}\nmethod = \"put\"\nauth = {{ strategy = \"basic\", user = \"edge\", password_file = {:?} }}\n\
         headers = {{ \"X-Tenant\" = \"edge-7\" }}\nuser_agent = \"agent/9\"",
        password.to_str().unwrap()
    ));
    send(&s, &["a"]).await.unwrap();
    // Credentials in the URL work too, and stay out of messages.
    let in_url = service(&format!(
        "uri = \"http://edge:s3cret@127.0.0.1:{}/u\"\nheaders = {{ \"X-Tenant\" = \"edge-7\" }}",
        peer.port
    ));
    send(&in_url, &["b"]).await.unwrap();
    let no_header = service(&format!(
        "uri = \"http://edge:s3cret@127.0.0.1:{}/u\"",
        peer.port
    ));
    match send(&no_header, &["c"]).await {
        Err(SendError::Reject { message }) => {
            assert!(
                message.contains("400") && !message.contains("s3cret"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lines(&out).len(), 2);
    let request = &lines(&requests)[0];
    assert_eq!(request["method"], "PUT", "{request}");
    assert_eq!(request["path"], "/put/here");
    assert_eq!(request["content_type"], "application/x-ndjson");
    let headers = request["headers"].to_string().to_ascii_lowercase();
    assert!(headers.contains("agent/9"), "{headers}");
}

/// A small HTTP/1.1 server for redirect tests: answers each request with what
/// `answer(path)` gives (a status line and headers, no body) and keeps each request's
/// head and body.
async fn redirecting_server(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (answer, kept) = (Arc::new(answer), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (answer, kept) = (answer.clone(), kept.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            let text = String::from_utf8_lossy(&request).into_owned();
                            let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                            kept.lock().unwrap().push(text);
                            let response = format!(
                                "{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                answer(&path)
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn redirects_are_followed_only_to_the_same_origin_and_not_at_all_when_told() {
    // `other` is another origin (another port): it must never see the body or headers.
    let (other, other_seen) = redirecting_server(|_| "HTTP/1.1 200 OK".to_owned()).await;
    let (origin, origin_seen) = redirecting_server(move |path| match path {
        "/moved" => "HTTP/1.1 200 OK".to_owned(),
        "/same" => "HTTP/1.1 307 Temporary Redirect\r\nLocation: /moved".to_owned(),
        _ => format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{other}/?k=v"),
    })
    .await;
    let sink = |path: &str, extra: &str| {
        service(&format!(
            "uri = \"http://127.0.0.1:{origin}{path}\"\nheaders = {{ \"X-Api-Key\" = \"hunter2\" }}\n{extra}"
        ))
    };

    let cross = send(&sink("/away?api_key=hunter2", ""), &["secret body"]).await;
    match &cross {
        Err(SendError::Reject { message, .. }) => {
            assert!(message.contains("another origin"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        other_seen.lock().unwrap().is_empty(),
        "the other origin got the request"
    );

    send(&sink("/same", ""), &["same origin"]).await.unwrap();
    let seen = origin_seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("POST /moved") && r.contains("same origin")),
        "{seen:?}"
    );

    let never = send(&sink("/same", "follow_redirects = \"never\""), &["x"]).await;
    assert!(matches!(never, Err(SendError::Reject { .. })), "{never:?}");
}

#[test]
fn query_values_are_redacted_in_messages() {
    let url = Url::parse("https://u:p@h:8443/in?api_key=hunter2&tenant=t1&flag").unwrap();
    let shown = config::display_uri(&url);
    assert_eq!(
        shown,
        "https://h:8443/in?api_key=REDACTED&tenant=REDACTED&flag=REDACTED"
    );
}
