//! The dashboard's routes through the shared HTTP stack, without a
//! database: what a browser gets for the page and its assets.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::http::{self, StackSettings};

fn app() -> Router {
    http::stack(
        router(),
        &StackSettings::admin(Duration::from_secs(30), Vec::new()),
    )
}

async fn get_with(uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

fn assert_secured(headers: &HeaderMap) {
    assert_eq!(
        headers[CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY_VALUE
    );
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[REFERRER_POLICY], "no-referrer");
}

#[tokio::test]
async fn admin_redirects_to_the_page() {
    let (status, headers, _) = get_with("/admin", &[]).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[LOCATION], "/admin/");
}

#[tokio::test]
async fn the_page_is_revalidated_and_names_its_assets() {
    let (status, headers, body) = get_with("/admin/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    assert_secured(&headers);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&format!("assets/{}/app.js", assets::version())));
    let etag = headers[ETAG].to_str().unwrap().to_owned();

    let (again, headers, body) = get_with("/admin/", &[("if-none-match", &etag)]).await;
    assert_eq!(again, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[ETAG], etag.as_str());
    let (changed, _, _) = get_with("/admin/", &[("if-none-match", "\"0000\"")]).await;
    assert_eq!(changed, StatusCode::OK);
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_for_ever() {
    for asset in assets::ASSETS {
        let uri = format!("/admin/assets/{}/{}", assets::version(), asset.name);
        let (status, headers, body) = get_with(&uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[CONTENT_TYPE], asset.content_type, "{uri}");
        assert_eq!(headers[CACHE_CONTROL], ASSET_CACHE);
        assert_secured(&headers);
        assert_eq!(body, asset.body, "{uri}");
    }
    let scripts = format!("/admin/assets/{}/app.js", assets::version());
    let (status, headers, body) = get_with(&scripts, &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
}

#[tokio::test]
async fn an_unknown_file_or_another_version_is_a_json_404() {
    let other = format!("/admin/assets/{}/app.js", "0123456789abcdef");
    let (status, headers, body) = get_with(&other, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_secured(&headers);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "not_found");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("reload /admin/")
    );

    let missing = format!("/admin/assets/{}/secrets.txt", assets::version());
    let (status, _, body) = get_with(&missing, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(error["message"].as_str().unwrap().contains("secrets.txt"));
}
