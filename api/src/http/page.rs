//! The public pricing page at `/`: pricing-ui's Leptos app, rendered here with the price-book version in force
//! (through leptos_axum) and hydrated in the browser by its wasm bundle, served from `/pkg/` precompressed.
//!
//! Without the bundle (not built yet, or `--assets` pointing elsewhere) the page is served without scripts: it is
//! then a plain GET form that this handler answers with the same numbers, and start-up logs a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use leptos::config::LeptosOptions;
use pricing_ui::shell::{script_json, shell, PageInput};

use super::AppState;

/// Where the wasm bundle is, when it is there.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    /// The site folder (holding `pkg/`), when it holds a complete bundle.
    pub site: Option<PathBuf>,
    /// Leptos' options for the hydration scripts (where the bundle is), built once with `site`.
    options: Option<LeptosOptions>,
}

/// The files a complete bundle has in `pkg/`.
const BUNDLE: [&str; 2] = ["pricing_ui.js", "pricing_ui_bg.wasm"];

fn complete(site: &Path) -> bool {
    BUNDLE.iter().all(|f| site.join("pkg").join(f).is_file())
}

impl Assets {
    /// Finds the bundle: in `given` (`--assets`), else next to the binary (`target/site` for
    /// `target/release/tally`), else `./target/site`. Logs a warning when there is none.
    pub fn locate(given: Option<&Path>) -> Assets {
        let candidates: Vec<PathBuf> = match given {
            Some(dir) => vec![dir.to_path_buf()],
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().and_then(Path::parent).map(|target| target.join("site")))
                .into_iter()
                .chain(std::iter::once(PathBuf::from("target/site")))
                .collect(),
        };
        let site = candidates.iter().find(|dir| complete(dir)).cloned();
        match &site {
            Some(dir) => tracing::info!(assets = %dir.display(), "pricing page: serving the wasm bundle"),
            None => tracing::warn!(
                looked_in = %candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                "pricing page: no wasm bundle found (build it with scripts/build-ui, or pass --assets DIR); \
                 serving the page without JavaScript, as a form"
            ),
        }
        let options = site.as_ref().map(|site| {
            LeptosOptions::builder()
                .output_name(pricing_ui::OUTPUT_NAME)
                .site_root(site.display().to_string())
                .site_pkg_dir("pkg")
                .build()
        });
        Assets { site, options }
    }

    /// Leptos' options for the hydration scripts, when the bundle is there.
    pub fn options(&self) -> Option<&LeptosOptions> {
        self.options.as_ref()
    }
}

/// `GET /`: the page for the query's state, priced with the version in force now.
pub(crate) async fn page(State(state): State<AppState>, request: Request) -> Response {
    let book = state.service.book_at(state.service.now());
    let json = match serde_json::to_string(&*book) {
        Ok(json) => json,
        Err(e) => return super::ApiError::internal(&e).into_response(),
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
