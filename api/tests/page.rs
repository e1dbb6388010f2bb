//! The pricing page as `tally serve` serves it, in process: server-rendered with the version in force, the same
//! numbers as `POST /v1/quotes` for any query (the no-JavaScript form), a bad parameter beside its input, the
//! wasm bundle served precompressed when there is one, and a working page without it.

#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod common;

use std::sync::{Arc, RwLock};

use api::http::router;
use api::server::{state, Settings};
use api::time::FixedClock;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use billing_core::{compute, PriceBook, QuoteRequest};
use common::{at, sqlite, TempDir, ADMIN};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;

async fn app(assets: Option<&std::path::Path>) -> (Router, TempDir) {
    let (store, dir) = sqlite().await;
    let clock = Arc::new(FixedClock(RwLock::new(at("2026-11-20T12:00:00Z"))));
    let settings =
        Settings { admin_token: Some(ADMIN.into()), assets: assets.map(Into::into), ..Settings::default() };
    let (state, _) = state(store, clock, &settings).await.unwrap();
    (router(state, settings.max_body), dir)
}

async fn get(
    router: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
}

/// The `data-amount` of `#total` in a page.
fn total_of(html: &str) -> String {
    let at = html.find("id=\"total\"").expect("the page has #total");
    let rest = &html[at..];
    let start = rest.find("data-amount=\"").unwrap() + "data-amount=\"".len();
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

fn quote_total(request: &str) -> String {
    let book = PriceBook::default_book().unwrap();
    compute(&book, &QuoteRequest::from_json_for(&book, request).unwrap()).unwrap().total.to_string()
}

#[tokio::test]
async fn without_the_bundle_the_page_is_a_working_form() {
    let (router, _dir) = app(Some(std::path::Path::new("/nonexistent/site"))).await;
    let (status, headers, body) = get(&router, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(body).unwrap();
    assert_eq!(total_of(&html), "0.00");
    assert!(!html.contains("pricing_ui.js"), "no scripts without the bundle");
    assert!(html.contains("<form method=\"get\" action=\"/\""), "a GET form");
    assert!(html.contains("id=\"tally-price-book\""), "the price book for the client");
    // Every product of the book in force is on the page, generated from it.
    for product in PriceBook::default_book().unwrap().products() {
        assert!(html.contains(&format!("id=\"product-{}\"", product.metered.key)));
    }
    let (status, _, _) = get(&router, "/pkg/pricing_ui.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The published example, as a form submission.
    let (_, _, body) = get(&router, "/?events=2000000&identified_events=2000000", &[]).await;
    assert_eq!(total_of(&String::from_utf8(body).unwrap()), "248.00");
}

#[tokio::test]
async fn a_bad_parameter_is_shown_beside_its_input_never_an_error_page() {
    let (router, _dir) = app(None).await;
    let (_, _, plain) = get(&router, "/", &[]).await;
    let scripts = String::from_utf8(plain).unwrap().matches("</script>").count();
    for query in [
        "events=abc",
        "events=-1&recordings=5000000",
        "limit.session_replay=1e9",
        "commitment=5",
        "addon=%3Cscript%3E",
        "events=99999999999999999999999999999999",
        "%FF%FE=1&=&&=x",
        "events=1%2",
        "commitment=%3C%2Fscript%3E",
    ] {
        let (status, _, body) = get(&router, &format!("/?{query}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        let html = String::from_utf8(body).unwrap();
        assert!(!total_of(&html).is_empty(), "{query}: still priced");
        assert!(
            html.contains("role=\"alert\" class=\"error\">") || html.contains("class=\"error\""),
            "{query}"
        );
        // Nothing typed becomes markup: as many scripts as on the plain page, whatever was typed.
        assert!(!html.contains("<script>"), "{query}");
        assert_eq!(html.matches("</script>").count(), scripts, "{query}: nothing typed is markup");
    }
    let (_, _, body) = get(&router, "/?events=abc&recordings=20000", &[]).await;
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("is not a decimal number"), "the message is beside the events input");
    assert_eq!(total_of(&html), quote_total(r#"{"usage": {"recordings": "20000"}}"#));
}

#[tokio::test]
async fn with_the_bundle_the_page_hydrates_from_pkg_served_compressed() {
    let site = TempDir::new();
    std::fs::create_dir_all(site.0.join("pkg")).unwrap();
    for (name, text) in [("pricing_ui.js", "export default function() {}"), ("pricing_ui_bg.wasm", "\0asm")] {
        std::fs::write(site.0.join("pkg").join(name), text).unwrap();
        std::fs::write(site.0.join("pkg").join(format!("{name}.gz")), b"gzipped bytes").unwrap();
    }
    let (router, _dir) = app(Some(&site.0)).await;
    let (_, headers, body) = get(&router, "/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip", "the page is compressed");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let mut html = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut html).unwrap();
    assert!(html.contains("/pkg/pricing_ui.js"), "hydration scripts");
    assert!(html.contains("/pkg/pricing_ui_bg.wasm"));
    let (status, headers, body) =
        get(&router, "/pkg/pricing_ui_bg.wasm", &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(headers[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(body, b"gzipped bytes");
    let (status, headers, _) = get(&router, "/pkg/pricing_ui.js", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_ENCODING).is_none(), "identity for a client without gzip");
    let (status, _, body) = get(&router, "/pkg/../Cargo.toml", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = get(&router, "/pkg/nope.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_new_price_book_version_changes_the_page() {
    let (router, _dir) = app(None).await;
    let mut book: serde_json::Value =
        serde_json::from_str(billing_core::catalog::DEFAULT_PRICE_BOOK_JSON).unwrap();
    book["version"] = "2026-12".into();
    book["products"][0]["name"] = "Product analytics, renamed".into();
    let request = Request::post("/v1/price-books")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"price_book": book, "in_force_at": "2026-11-01T00:00:00Z"}).to_string(),
        ))
        .unwrap();
    assert_eq!(router.clone().oneshot(request).await.unwrap().status(), StatusCode::CREATED);
    let (_, _, body) = get(&router, "/", &[]).await;
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("Product analytics, renamed"));
    assert!(html.contains("2026-12"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The no-JavaScript page (the server's render of a form submission) shows what `POST /v1/quotes` bills.
    #[test]
    fn the_server_rendered_total_is_the_quote(
        usage in prop::collection::btree_map(
            prop::sample::select(vec!["events", "identified_events", "recordings", "rows_synced", "inbox_prs", "logs_gb_ingested", "exceptions"]),
            0_u64..5_000_000_000, 0..5),
        boost in any::<bool>(),
        cap in prop::option::of(0_u32..2000),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (router, _dir) = runtime.block_on(app(None));
        let mut query: Vec<String> = usage.iter().map(|(m, q)| format!("{m}={q}")).collect();
        let mut request = serde_json::json!({"usage": usage.iter().map(|(m, q)| (m.to_string(), serde_json::Value::String(q.to_string()))).collect::<serde_json::Map<_, _>>()});
        if boost {
            query.push("addon=boost".into());
            request["addons"] = serde_json::json!(["boost"]);
        }
        if let Some(cap) = cap {
            query.push(format!("limit.session_replay={cap}"));
            request["limits"] = serde_json::json!({"session_replay": cap.to_string()});
        }
        let (_, _, body) = runtime.block_on(get(&router, &format!("/?{}", query.join("&")), &[]));
        prop_assert_eq!(total_of(&String::from_utf8(body).unwrap()), quote_total(&request.to_string()));
    }
}
