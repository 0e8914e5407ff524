//! One signed POST of a delivery, and what its answer means: delivered,
//! retry later, give up, or the URL is gone.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{SignedHeaders, WebhookConfig};

/// Most of an answer's body read (to keep the connection reusable and to
/// quote its start in `last_error`).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Characters of an answer's body quoted in `last_error`.
const QUOTED_CHARS: usize = 200;
/// How long an idle connection to a receiver is kept for the next delivery.
const IDLE_CONNECTION: Duration = Duration::from_secs(30);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// 2xx: the receiver has it.
    Delivered,
    /// Worth trying again later (timeout, connection error, 408, 429,
    /// 5xx): why.
    Retry(String),
    /// The receiver refuses it and will refuse it again (another 4xx, a
    /// redirect, no valid URL): why.
    Refused(String),
    /// 410 Gone: the URL is to get nothing more: why.
    Gone(String),
}

/// The HTTP(S) client deliveries are sent with.
#[derive(Debug, Clone)]
pub(super) struct Sender {
    /// Pooled connections, http or https (rustls) by the URL's scheme.
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Bound on one attempt, connecting and reading the answer included.
    timeout: Duration,
}

impl Sender {
    /// A client with `config`'s TLS settings and timeout.
    pub(super) fn new(config: &WebhookConfig) -> Self {
        let mut http = HttpConnector::new();
        // https URLs reach the TLS layer through this connector too.
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.request_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config.tls()).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_CONNECTION)
            .build(connector);
        Sender {
            client,
            timeout: config.request_timeout,
        }
    }

    /// POSTs `body` to `url` with the signature `headers`, and reads what
    /// the answer means.
    pub(super) async fn post(&self, url: &str, headers: &SignedHeaders, body: Vec<u8>) -> Answer {
        let request = match request(url, headers, body) {
            Ok(request) => request,
            Err(reason) => return Answer::Refused(reason),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // A body that fails or runs long does not change the status.
            let quoted = match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
            {
                Ok(collected) => quote(&collected.to_bytes()),
                Err(_) => String::new(),
            };
            Ok::<_, hyper_util::client::legacy::Error>((status, quoted))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Retry(format!(
                "no answer within the request timeout ({} ms)",
                self.timeout.as_millis()
            )),
            Ok(Err(e)) => Answer::Retry(describe(&e)),
            Ok(Ok((status, quoted))) => classify(status, &quoted),
        }
    }
}

/// The request: POST, JSON, the three Standard Webhooks headers.
fn request(
    url: &str,
    signed: &SignedHeaders,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("not sent: {url:?} is not a URL ({e})"))?;
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| format!("not sent: the header value {text:?} is invalid"))
    };
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(
            USER_AGENT,
            HeaderValue::from_static(concat!("activity-processor/", env!("CARGO_PKG_VERSION"))),
        )
        .header("webhook-id", value(&signed.id)?)
        .header("webhook-timestamp", value(&signed.timestamp)?)
        .header("webhook-signature", value(&signed.signature)?)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("not sent: {e}"))
}

/// What an answer with `status` means; `quoted` is the start of its body.
fn classify(status: StatusCode, quoted: &str) -> Answer {
    let reason = if quoted.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {quoted}")
    };
    if status.is_success() {
        Answer::Delivered
    } else if status == StatusCode::GONE {
        Answer::Gone(reason)
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Answer::Retry(reason)
    } else {
        // Redirects are not followed (the signature is for this URL) and
        // a 4xx says the receiver will not take this payload later either.
        Answer::Refused(reason)
    }
}

/// A failed exchange in one line, its causes included (hyper's own message
/// is only "client error (Connect)").
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the exchange failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of an answer's body, on one line, for `last_error`.
fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_documentation_says() {
        let cases = [
            (200, Answer::Delivered),
            (204, Answer::Delivered),
            (410, Answer::Gone("HTTP 410 Gone".into())),
            (500, Answer::Retry("HTTP 500 Internal Server Error".into())),
            (503, Answer::Retry("HTTP 503 Service Unavailable".into())),
            (429, Answer::Retry("HTTP 429 Too Many Requests".into())),
            (408, Answer::Retry("HTTP 408 Request Timeout".into())),
            (400, Answer::Refused("HTTP 400 Bad Request".into())),
            (401, Answer::Refused("HTTP 401 Unauthorized".into())),
            (404, Answer::Refused("HTTP 404 Not Found".into())),
            (301, Answer::Refused("HTTP 301 Moved Permanently".into())),
        ];
        for (code, expected) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(status, ""), expected, "{code}");
        }
    }

    #[test]
    fn the_answer_body_is_quoted_on_one_line_and_short() {
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &quote(b"bad\nsignature\r\n")),
            Answer::Refused("HTTP 400 Bad Request: bad signature".into())
        );
        assert_eq!(
            quote("é".repeat(500).as_bytes()).chars().count(),
            QUOTED_CHARS
        );
        assert_eq!(quote(&[0xff, b'x']), "\u{fffd}x");
    }

    #[test]
    fn the_request_carries_the_signature_headers() {
        let signed = SignedHeaders {
            id: "msg_1".into(),
            timestamp: "1700000000".into(),
            signature: "v1,abc=".into(),
        };
        let post = request("http://127.0.0.1:9/hook?x=1", &signed, b"{}".to_vec()).unwrap();
        assert_eq!(post.method(), Method::POST);
        assert_eq!(post.uri().path_and_query().unwrap(), "/hook?x=1");
        let headers = post.headers();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["webhook-timestamp"], "1700000000");
        assert_eq!(headers["webhook-signature"], "v1,abc=");
        assert!(request("not a url", &signed, Vec::new()).is_err());
    }
}
