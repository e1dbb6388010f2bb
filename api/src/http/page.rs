//! The public pricing page at `/`: pricing-ui's Leptos app, rendered here with the price-book version in force
//! (through leptos_axum) and hydrated in the browser by its wasm bundle, served from `/pkg/` precompressed.
//!
//! Without the bundle (not built yet, or `--assets` pointing elsewhere) the page is served without scripts: it is
//! then a plain GET form that this handler answers with the same numbers, and start-up logs a warning.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use pricing_ui::shell::{script_json, shell, PageInput};

use super::state::AppState;

/// `GET /`: the page for the query's state, priced with the version in force now.
pub(crate) async fn page(State(state): State<AppState>, request: Request) -> Response {
    let book = state.service.book_at(state.service.now());
    let json = match serde_json::to_string(&*book) {
        Ok(json) => json,
        Err(e) => return super::error::ApiError::internal(&e).into_response(),
    };
    let input = PageInput {
        book,
        book_json: Arc::from(script_json(&json)),
        query: request.uri().query().unwrap_or_default().to_owned(),
        options: state.assets.options().cloned(),
    };
    let render = leptos_axum::render_app_to_stream_with_context(|| {}, move || shell(input.clone()));
    let mut response = render(request).await.into_response();
    // The page depends on the query and the version in force: never cached as is.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
