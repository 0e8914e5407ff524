//! A small HTTP/1 client, enough for the quick start's requests to the app
//! and to the admin API; a failed request becomes a [`QuickstartError::Http`]
//! naming it.

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::admin::PREFIX;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::QuickstartError;

/// A small HTTP/1 client for the app and the admin API.
#[derive(Debug, Clone)]
pub(super) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// A client with its own connection pool, plain HTTP only.
    pub(super) fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends one request; answers the status and the JSON body (null if
    /// the body is not JSON).
    pub(super) async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Value), QuickstartError> {
        let what = format!("{} {}", request.method(), request.uri());
        let failed = |reason: String| QuickstartError::Http {
            what: what.clone(),
            reason,
        };
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| failed("no answer within 10 s".to_owned()))?
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `GET` an admin endpoint with the token; a non-2xx answer is an error.
    pub(super) async fn admin(
        &self,
        admin: SocketAddr,
        token: &str,
        path_and_query: &str,
    ) -> Result<Value, QuickstartError> {
        let uri = format!("http://{admin}{PREFIX}/{path_and_query}");
        let request = http::Request::get(&uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .map_err(|e| QuickstartError::Http {
                what: uri.clone(),
                reason: e.to_string(),
            })?;
        let (status, body) = self.send(request).await?;
        if !status.is_success() {
            return Err(QuickstartError::Http {
                what: format!("GET {uri}"),
                reason: format!("{status}: {body}"),
            });
        }
        Ok(body)
    }
}
