//! The route table: method + path pattern → activity, looked up on the
//! request path by axum's matched pattern (a hash lookup) or, outside an
//! axum `Router`, by the crate's own `matchit` router.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::Method;

use super::CaptureConfigError;
use crate::ActivityType;

/// One mapped route. Shared (`Arc`) by every request that matches it, so
/// the request path copies no string.
#[derive(Debug)]
pub(crate) struct Route {
    /// The request method this route applies to.
    pub(crate) method: Method,
    /// The pattern as written (`/api/v1/cases/{id}`), the `route` detail.
    pub(crate) pattern: Arc<str>,
    /// What the request records.
    pub(crate) action: ActivityType,
    /// Where the resource id comes from, if anywhere.
    pub(crate) resource: Option<ResourceSpec>,
    /// The wire JSON that is the same for every request of the route,
    /// written once when the route is made.
    pub(crate) json: RouteJson,
}

/// A route's constant wire JSON (see [`RouteJson::new`]).
#[derive(Debug)]
pub(crate) struct RouteJson {
    /// `action` as a JSON string.
    pub(crate) action: Box<[u8]>,
    /// `,"method":"GET","route":"/pattern","status":`, what follows
    /// `latency_ms` in the layer's `details` when the handler adds none.
    pub(crate) details_tail: Box<[u8]>,
}

impl RouteJson {
    pub(crate) fn new(method: &Method, pattern: &str, action: &ActivityType) -> Self {
        RouteJson {
            action: json_string(action.as_str()),
            details_tail: format!(
                ",\"method\":{},\"route\":{},\"status\":",
                String::from_utf8_lossy(&json_string(method.as_str())),
                String::from_utf8_lossy(&json_string(pattern))
            )
            .into_bytes()
            .into_boxed_slice(),
        }
    }
}

fn json_string(text: &str) -> Box<[u8]> {
    serde_json::to_vec(text)
        .expect("a string always serializes")
        .into_boxed_slice()
}

/// A resource named by a path parameter.
#[derive(Debug)]
pub(crate) struct ResourceSpec {
    /// `resource_type` (`"case"`).
    pub(crate) kind: Arc<str>,
    /// The path parameter holding `resource_id` (`"id"`).
    pub(crate) param: Arc<str>,
    /// A router holding only this route's pattern, so the parameter is read
    /// from the pattern the request was matched as, even when another
    /// pattern of the table would match the same path.
    pub(crate) matcher: matchit::Router<()>,
}

impl Route {
    /// The resource id taken from the request path, if this route names one.
    pub(crate) fn resource_id(&self, path: &str) -> Option<String> {
        let spec = self.resource.as_ref()?;
        let matched = spec.matcher.at(path).ok()?;
        let raw = matched.params.get(&*spec.param)?;
        Some(percent_decode(raw))
    }
}

/// All routes of one pattern (one per method).
#[derive(Debug, Default, Clone)]
struct PatternRoutes {
    routes: Vec<Arc<Route>>,
}

impl PatternRoutes {
    fn for_method(&self, method: &Method) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.method == *method)
    }
}

/// The table. Cloned only when a config is (it is behind an `Arc` at run
/// time).
#[derive(Debug, Default, Clone)]
pub(crate) struct RouteTable {
    /// The routes, one entry per distinct pattern.
    patterns: Vec<PatternRoutes>,
    /// Pattern → index in `patterns`, for the `MatchedPath` lookup inside axum.
    by_pattern: HashMap<Arc<str>, usize, BuildHasherDefault<PatternHasher>>,
    /// Path → index in `patterns`, for plain hyper (or a layer around a
    /// whole `Router`).
    matcher: matchit::Router<usize>,
    /// The last route added (index in `patterns`, method), for `resource(...)`.
    last: Option<(usize, Method)>,
}

impl RouteTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn insert(
        &mut self,
        method: Method,
        pattern: &str,
        action: ActivityType,
    ) -> Result<(), CaptureConfigError> {
        self.last = None;
        let index = match self.by_pattern.get(pattern) {
            Some(&index) => {
                if self.patterns[index].for_method(&method).is_some() {
                    return Err(CaptureConfigError::Duplicate {
                        method,
                        pattern: pattern.to_owned(),
                    });
                }
                index
            }
            None => {
                let index = self.patterns.len();
                self.matcher.insert(pattern, index).map_err(|error| {
                    CaptureConfigError::Pattern {
                        pattern: pattern.to_owned(),
                        reason: error.to_string(),
                    }
                })?;
                self.patterns.push(PatternRoutes::default());
                self.by_pattern.insert(Arc::from(pattern), index);
                index
            }
        };
        self.patterns[index].routes.push(Arc::new(Route {
            json: RouteJson::new(&method, pattern, &action),
            method: method.clone(),
            pattern: Arc::from(pattern),
            action,
            resource: None,
        }));
        self.last = Some((index, method));
        Ok(())
    }

    /// Names the resource of the last route added.
    pub(crate) fn resource(&mut self, kind: &str, param: &str) -> Result<(), CaptureConfigError> {
        let Some((index, method)) = self.last.clone() else {
            return Err(CaptureConfigError::ResourceWithoutRoute {
                kind: kind.to_owned(),
                param: param.to_owned(),
            });
        };
        let slot = self.patterns[index]
            .routes
            .iter_mut()
            .find(|route| route.method == method)
            .expect("the last route added is in the table");
        if !pattern_params(&slot.pattern).any(|name| name == param) {
            return Err(CaptureConfigError::NoSuchParam {
                pattern: slot.pattern.to_string(),
                param: param.to_owned(),
            });
        }
        let mut matcher = matchit::Router::new();
        matcher
            .insert(&*slot.pattern, ())
            .expect("the pattern was accepted by the table's router");
        *slot = Arc::new(Route {
            json: RouteJson::new(&slot.method, &slot.pattern, &slot.action),
            method: slot.method.clone(),
            pattern: slot.pattern.clone(),
            action: slot.action.clone(),
            resource: Some(ResourceSpec {
                kind: Arc::from(kind),
                param: Arc::from(param),
                matcher,
            }),
        });
        Ok(())
    }

    /// The route for a request: by axum's matched pattern when there is
    /// one, else by matching the path.
    pub(crate) fn lookup(
        &self,
        method: &Method,
        matched_pattern: Option<&str>,
        path: &str,
    ) -> Option<&Arc<Route>> {
        let index = match matched_pattern {
            Some(pattern) => *self.by_pattern.get(pattern)?,
            None => *self.matcher.at(path).ok()?.value,
        };
        self.patterns[index].for_method(method)
    }
}

/// FNV-1a, for the pattern map: looked up once per request, where the
/// standard library's SipHash costs about a hundred instructions more. Its
/// keys are the app's own patterns, and what is looked up is one of the
/// patterns axum's router matched, never a string a client chose, so the
/// map needs no defence against chosen collisions.
#[derive(Debug)]
struct PatternHasher(u64);

impl Default for PatternHasher {
    fn default() -> Self {
        PatternHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for PatternHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Names of the parameters of a pattern (`{id}`, `{*rest}`).
fn pattern_params(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('{').skip(1).filter_map(|part| {
        let name = part.split('}').next()?;
        if part.starts_with('{') {
            // `{{` is an escaped brace, not a parameter.
            return None;
        }
        Some(name.strip_prefix('*').unwrap_or(name))
    })
}

/// Decodes `%XX` escapes of a path segment; invalid escapes or UTF-8 are
/// kept or replaced, never an error.
fn percent_decode(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut table = RouteTable::default();
        table
            .insert(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
            .unwrap();
        table
            .insert(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
            .unwrap();
        table.resource("case", "id").unwrap();
        table
            .insert(Method::PUT, "/api/v1/cases/{id}", ActivityType::CaseUpdate)
            .unwrap();
        table
            .insert(Method::GET, "/files/{*path}", ActivityType::DocumentReview)
            .unwrap();
        table.resource("document", "path").unwrap();
        table
    }

    #[test]
    fn paths_map_by_method_and_pattern() {
        let table = table();
        let route = table
            .lookup(&Method::GET, None, "/api/v1/cases/c-1")
            .unwrap();
        assert_eq!(route.action, ActivityType::CaseView);
        assert_eq!(&*route.pattern, "/api/v1/cases/{id}");
        assert_eq!(
            route.resource_id("/api/v1/cases/c-1").as_deref(),
            Some("c-1")
        );

        let update = table
            .lookup(&Method::PUT, None, "/api/v1/cases/c-1")
            .unwrap();
        assert_eq!(update.action, ActivityType::CaseUpdate);
        // Only the GET route names a resource.
        assert_eq!(update.resource_id("/api/v1/cases/c-1"), None);

        let create = table.lookup(&Method::POST, None, "/api/v1/cases").unwrap();
        assert_eq!(create.action, ActivityType::CaseCreate);
    }

    #[test]
    fn unmapped_requests_find_nothing() {
        let table = table();
        for (method, path) in [
            (Method::DELETE, "/api/v1/cases/c-1"),
            (Method::GET, "/api/v1/cases"),
            (Method::GET, "/api/v1/cases/c-1/notes"),
            (Method::GET, "/"),
            (Method::HEAD, "/api/v1/cases/c-1"),
        ] {
            assert!(
                table.lookup(&method, None, path).is_none(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn matched_pattern_wins_over_the_path() {
        let table = table();
        // axum matched a static route of its own that our pattern would also
        // match: not ours, so not recorded.
        assert!(
            table
                .lookup(
                    &Method::GET,
                    Some("/api/v1/cases/export"),
                    "/api/v1/cases/export"
                )
                .is_none()
        );
        // axum matched our pattern (under a nest, the path may differ).
        let route = table
            .lookup(&Method::GET, Some("/api/v1/cases/{id}"), "/c-2")
            .unwrap();
        assert_eq!(route.action, ActivityType::CaseView);
    }

    #[test]
    fn resource_ids_are_percent_decoded_and_wildcards_work() {
        let table = table();
        let route = table
            .lookup(&Method::GET, None, "/files/a/b%20c.pdf")
            .unwrap();
        assert_eq!(
            route.resource_id("/files/a/b%20c.pdf").as_deref(),
            Some("a/b c.pdf")
        );
        let case = table.lookup(&Method::GET, None, "/api/v1/cases/x").unwrap();
        assert_eq!(
            case.resource_id("/api/v1/cases/%E4%B8%AD%zz").as_deref(),
            Some("中%zz")
        );
    }

    #[test]
    fn mistakes_are_reported() {
        let mut table = table();
        assert!(matches!(
            table.insert(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView),
            Err(CaptureConfigError::Duplicate { .. })
        ));
        assert!(matches!(
            table.insert(Method::GET, "/api/v1/cases/{other}", ActivityType::CaseView),
            Err(CaptureConfigError::Pattern { .. })
        ));
        // After a failed insert there is no "last route" to name a resource of.
        assert!(matches!(
            table.resource("case", "id"),
            Err(CaptureConfigError::ResourceWithoutRoute { .. })
        ));
        table
            .insert(
                Method::DELETE,
                "/api/v1/cases/{id}",
                ActivityType::CaseDelete,
            )
            .unwrap();
        assert!(matches!(
            table.resource("case", "case_id"),
            Err(CaptureConfigError::NoSuchParam { .. })
        ));
        assert!(matches!(
            RouteTable::default().resource("case", "id"),
            Err(CaptureConfigError::ResourceWithoutRoute { .. })
        ));
    }
}
