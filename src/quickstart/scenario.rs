//! The scenario the quick start drives through the example app: four users
//! log in, create and view cases, pay, ask for withdrawals; one login
//! fails; one request carries a forged `X-Forwarded-For`. Each request is
//! one event for the layer, and the notable ones get a line saying what the
//! layer makes of them.

use std::io::Write;
use std::net::SocketAddr;

use http::StatusCode;
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::QuickstartError;
use super::client::Http;
use crate::demo_app;

/// The width of the progress bar, in `#`.
const BAR_WIDTH: usize = 22;

/// One request of the scenario.
struct Step {
    /// The browser (user name, also its session) it comes from.
    who: &'static str,
    method: &'static str,
    /// May name a case by its creator (`{alice}`), filled in by [`Cases`].
    path: String,
    body: Option<Value>,
    /// Logged in as `who` (`Authorization: Bearer user:<who>`).
    authenticated: bool,
    forwarded_for: Option<&'static str>,
}

impl Step {
    fn new(who: &'static str, method: &'static str, path: impl Into<String>) -> Self {
        Step {
            who,
            method,
            path: path.into(),
            body: None,
            authenticated: true,
            forwarded_for: None,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn login(who: &'static str, password: &str) -> Self {
        let mut step = Step::new(who, "POST", "/api/v1/auth/login")
            .body(json!({"username": who, "password": password}));
        step.authenticated = false;
        step
    }

    /// Whether the app answers this step with the id of a new case.
    fn creates_case(&self) -> bool {
        self.method == "POST" && self.path == "/api/v1/cases"
    }

    /// The request to the app at `app_addr`, from the browser whose
    /// session id is `session_prefix` followed by its user name.
    fn request(
        &self,
        app_addr: SocketAddr,
        path: &str,
        session_prefix: &str,
    ) -> Result<http::Request<Full<Bytes>>, QuickstartError> {
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(format!("http://{app_addr}{path}"))
            .header("cookie", format!("session_id={session_prefix}{}", self.who))
            .header("user-agent", format!("quickstart-browser ({})", self.who));
        if self.authenticated {
            request = request.header("authorization", format!("Bearer user:{}", self.who));
        }
        if let Some(forged) = self.forwarded_for {
            request = request.header("x-forwarded-for", forged);
        }
        let body = match &self.body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::default(),
        };
        request.body(body).map_err(|e| QuickstartError::Http {
            what: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// What the layer makes of this step, when it is worth a line of its
    /// own: the reader should see that a forged address and a failed login
    /// are handled, not just counted.
    fn note(&self, status: StatusCode) -> Option<String> {
        if let Some(forged) = self.forwarded_for {
            Some(format!(
                "forged X-Forwarded-For: {forged}, not believed (no trusted proxy)"
            ))
        } else if status == StatusCode::UNAUTHORIZED {
            Some("failed login, recorded anonymously".to_owned())
        } else {
            None
        }
    }
}

/// The requests, in order. Case ids are filled in from the app's answers
/// (`{alice}` is the case alice created).
fn scenario() -> Vec<Step> {
    let p = demo_app::PASSWORD;
    vec![
        Step::login("alice", p),
        Step::login("bob", p),
        Step::login("mallory", "guess"),
        Step::new("alice", "POST", "/api/v1/cases").body(json!({"amount": 50000})),
        Step::new("alice", "GET", "/api/v1/cases/{alice}"),
        Step::login("carol", p),
        Step::new("bob", "POST", "/api/v1/cases").body(json!({"amount": 12000})),
        Step::new("bob", "GET", "/api/v1/cases/{alice}"),
        Step::new("alice", "PUT", "/api/v1/cases/{alice}").body(json!({"amount": 52000})),
        Step::new("carol", "GET", "/api/v1/cases/{bob}"),
        Step::new("alice", "POST", "/api/v1/payments").body(json!({"amount": 2000})),
        Step::new("bob", "POST", "/api/v1/payments").body(json!({"amount": 25000})),
        Step::new("carol", "POST", "/api/v1/payments").body(json!({"amount": 800})),
        Step::login("dave", p),
        Step::new("dave", "POST", "/api/v1/cases").body(json!({"amount": 3000})),
        Step {
            forwarded_for: Some("203.0.113.66"),
            ..Step::new("dave", "GET", "/api/v1/cases/{dave}")
        },
        Step::new("alice", "POST", "/api/v1/withdrawals").body(json!({"amount": 1500})),
        Step::new("dave", "POST", "/api/v1/withdrawals").body(json!({"amount": 400})),
        Step::new("bob", "POST", "/api/v1/payments").body(json!({"amount": 9000})),
        Step::new("alice", "GET", "/api/v1/cases/{bob}"),
        Step::new("carol", "POST", "/api/v1/auth/logout"),
        Step::new("alice", "POST", "/api/v1/auth/logout"),
    ]
}

/// The cases created so far, by creator: the app picks the ids, so later
/// steps can only name a case by who created it.
#[derive(Default)]
struct Cases(Vec<(&'static str, String)>);

impl Cases {
    /// `path` with every `{who}` replaced by the id of the case `who` created.
    fn fill_in(&self, path: &str) -> String {
        let mut path = path.to_owned();
        for (who, id) in &self.0 {
            path = path.replace(&format!("{{{who}}}"), id);
        }
        path
    }

    /// Keeps the id of the case `step` created, if it created one.
    fn remember(&mut self, step: &Step, answer: &Value) {
        if step.creates_case()
            && let Some(id) = answer.get("id").and_then(Value::as_str)
        {
            self.0.push((step.who, id.to_owned()));
        }
    }
}

/// Sends the scenario to the app at `app_addr`, each browser with the
/// session id `session_prefix` followed by its user name, and shows the
/// progress on `out` (redrawn in place when `in_place`, else only the
/// notable requests and the last one). Answers how many requests were sent:
/// each is one event to be stored.
pub(super) async fn drive(
    http: &Http,
    out: &mut (dyn Write + Send),
    app_addr: SocketAddr,
    session_prefix: &str,
    in_place: bool,
) -> Result<i64, QuickstartError> {
    let steps = scenario();
    let total = steps.len();
    let mut cases = Cases::default();
    for (i, step) in steps.iter().enumerate() {
        let path = cases.fill_in(&step.path);
        let request = step.request(app_addr, &path, session_prefix)?;
        let (status, answer) = http.send(request).await?;
        cases.remember(step, &answer);
        let note = step.note(status);
        let line = progress_line(i + 1, total, step, &path, status, note.as_deref());
        if in_place {
            write!(out, "\r\x1b[2K{line}")?;
            if note.is_some() {
                writeln!(out)?;
            }
        } else if note.is_some() || i + 1 == total {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    if in_place {
        writeln!(out)?;
    }
    Ok(total as i64)
}

/// The line of the `done`-th of `total` requests: a bar, the count, who
/// sent what, the status, and the note if any.
fn progress_line(
    done: usize,
    total: usize,
    step: &Step,
    path: &str,
    status: StatusCode,
    note: Option<&str>,
) -> String {
    format!(
        "scenario [{:<BAR_WIDTH$}] {done:>2}/{total}  {:<7} {} {path} {}{}",
        "#".repeat(done * BAR_WIDTH / total),
        step.who,
        step.method,
        status.as_u16(),
        note.map_or_else(String::new, |note| format!("  <- {note}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_one_event_with_one_failed_login_and_one_forged_address() {
        let steps = scenario();
        assert_eq!(steps.len(), 22);
        let failed: Vec<&str> = steps
            .iter()
            .filter(|s| s.body.as_ref().and_then(|b| b.get("password")) == Some(&json!("guess")))
            .map(|s| s.who)
            .collect();
        assert_eq!(failed, ["mallory"]);
        assert_eq!(
            steps.iter().filter(|s| s.forwarded_for.is_some()).count(),
            1
        );
    }

    #[test]
    fn later_steps_name_the_case_their_creator_got() {
        let mut cases = Cases::default();
        let create = Step::new("alice", "POST", "/api/v1/cases");
        cases.remember(&create, &json!({"id": "case-1"}));
        cases.remember(
            &Step::new("bob", "GET", "/api/v1/cases"),
            &json!({"id": "x"}),
        );
        assert_eq!(
            cases.fill_in("/api/v1/cases/{alice}"),
            "/api/v1/cases/case-1"
        );
        assert_eq!(cases.fill_in("/api/v1/cases/{bob}"), "/api/v1/cases/{bob}");
    }

    #[test]
    fn the_progress_line_shows_the_bar_the_request_and_the_note() {
        let step = Step::login("mallory", "guess");
        let status = StatusCode::UNAUTHORIZED;
        let note = step.note(status);
        assert_eq!(
            progress_line(3, 22, &step, &step.path, status, note.as_deref()),
            "scenario [###                   ]  3/22  mallory POST /api/v1/auth/login 401  \
             <- failed login, recorded anonymously"
        );
        let last = Step::new("alice", "POST", "/api/v1/auth/logout");
        assert_eq!(
            progress_line(22, 22, &last, &last.path, StatusCode::OK, None),
            "scenario [######################] 22/22  alice   POST /api/v1/auth/logout 200"
        );
    }
}
