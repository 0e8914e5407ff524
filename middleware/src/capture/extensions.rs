//! The types an app puts into request and response extensions to tell the
//! layer what it alone knows: who the user is, where the client is, and
//! what the handler learnt.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ActivityType;

/// The authenticated user of a request, set as a request extension by the
/// app's auth middleware; recorded as `user_id`.
///
/// Cheap to clone (one shared allocation), so the layer takes it on the
/// request path without copying the id.
///
/// ```
/// use activity_tracker::ActivityUser;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(ActivityUser::new("user-42"));
/// assert_eq!(request.extensions().get::<ActivityUser>().unwrap().as_str(), "user-42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ActivityUser(pub(crate) Arc<str>);

impl ActivityUser {
    /// The user with this id (the app's own; a UUID or not).
    pub fn new(user_id: impl Into<Arc<str>>) -> Self {
        ActivityUser(user_id.into())
    }

    /// The user id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ActivityUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActivityUser").field(&&*self.0).finish()
    }
}

impl From<&str> for ActivityUser {
    fn from(user_id: &str) -> Self {
        ActivityUser::new(user_id)
    }
}

impl From<String> for ActivityUser {
    fn from(user_id: String) -> Self {
        ActivityUser::new(user_id)
    }
}

/// The client's socket address, for servers without axum's
/// `ConnectInfo<SocketAddr>` (plain hyper): insert it as a request
/// extension before the layer, or give it to
/// [`ActivityLayer::peer_addr`](crate::ActivityLayer::peer_addr) per
/// connection.
///
/// ```
/// use activity_tracker::PeerAddr;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr("192.0.2.7:50123".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// What a handler tells the layer about the request it just served, set as
/// a response extension: the user id it learnt (login), the resource it
/// made, extra details, a different action, or that this request should not
/// be recorded.
///
/// The layer takes it out of the response, so it never reaches the client.
/// With axum, return it as a response part:
///
/// ```
/// use activity_tracker::{ActivityEnrichment, ActivityType};
/// use axum::Json;
/// use serde_json::json;
///
/// async fn login() -> (ActivityEnrichment, Json<serde_json::Value>) {
///     let user_id = "user-42"; // found by checking the password
///     (
///         ActivityEnrichment::new().user_id(user_id).detail("method", "password"),
///         Json(json!({ "token": "..." })),
///     )
/// }
///
/// async fn pay() -> ActivityEnrichment {
///     // The route maps to `payment_create`; this one failed.
///     ActivityEnrichment::new()
///         .action(ActivityType::PaymentFailed)
///         .resource_id("pay-7")
/// }
/// ```
///
/// With any other service, insert it into the response's extensions.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "an enrichment does nothing until it is put into the response"]
pub struct ActivityEnrichment {
    pub(crate) skip: bool,
    pub(crate) user_id: Option<String>,
    pub(crate) action: Option<ActivityType>,
    pub(crate) resource_type: Option<String>,
    pub(crate) resource_id: Option<String>,
    pub(crate) details: Option<Map<String, Value>>,
}

impl ActivityEnrichment {
    /// An enrichment that changes nothing yet.
    pub fn new() -> Self {
        ActivityEnrichment::default()
    }

    /// Do not record this request at all.
    pub fn skip() -> Self {
        ActivityEnrichment {
            skip: true,
            ..ActivityEnrichment::default()
        }
    }

    /// The user id, when the handler learnt it (login); wins over the
    /// request's [`ActivityUser`].
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Records this action instead of the route's (`payment_failed` on a
    /// route mapped to `payment_create`).
    pub fn action(mut self, action: ActivityType) -> Self {
        self.action = Some(action);
        self
    }

    /// The id of the resource acted on, for routes whose path does not carry
    /// it (a created case). The type stays the route's unless set with
    /// [`ActivityEnrichment::resource`].
    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.resource_id = Some(id.into());
        self
    }

    /// The type and id of the resource acted on.
    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.resource_type = Some(kind.into());
        self.resource_id = Some(id.into());
        self
    }

    /// Adds a key to `details`. The layer's own keys (`method`, `route`,
    /// `status`, `latency_ms`) cannot be overwritten.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Adds every key of a JSON object to `details` (anything that is not an
    /// object is ignored).
    pub fn details(mut self, details: Value) -> Self {
        if let Value::Object(map) = details {
            self.details.get_or_insert_with(Map::new).extend(map);
        }
        self
    }

    /// Whether this says not to record the request.
    pub fn is_skip(&self) -> bool {
        self.skip
    }
}

impl axum::response::IntoResponseParts for ActivityEnrichment {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

impl axum::response::IntoResponse for ActivityEnrichment {
    fn into_response(self) -> axum::response::Response {
        (self, ()).into_response()
    }
}
