//! tally's public pricing page: one Leptos app, rendered on the server (feature `ssr`, mounted by `tally serve` at
//! `/`) and hydrated in the browser (feature `hydrate`, compiled to wasm by `scripts/build-ui`). Both sides run
//! billing-core, so the estimate on the page is exactly what `POST /v1/quotes` — and the invoice — says.
//!
//! * [`billing`]: the customer's billing page (`/billing`), the same client hydrating it.
//! * [`state`]: the page's state as the quote request's own words (the URL query) and its evaluation.
//! * [`app`]: the components.
//! * [`scale`], [`explain`], [`mod@format`]: slider scales, cost curves and caps, how numbers read.
//! * [`shell`] (ssr): the HTML document around the app, with the price book for the client to hydrate from.

pub mod app;
// Everywhere but in the pricing page's own client bundle.
#[cfg(any(not(feature = "hydrate"), feature = "billing"))]
pub mod billing;
pub mod explain;
pub mod format;
pub mod scale;
pub mod state;

#[cfg(feature = "hydrate")]
mod client;
#[cfg(feature = "ssr")]
pub mod shell;

/// The id of the `<script type="application/json">` element carrying the price book the page was rendered from.
pub const BOOK_ELEMENT_ID: &str = "tally-price-book";

/// The page's style sheet (plain CSS, inlined in the page's head).
pub const STYLE: &str = include_str!("../style.css");

/// The name of the pricing page's wasm bundle's files (`pkg/pricing_ui.js`, `pkg/pricing_ui_bg.wasm`).
pub const OUTPUT_NAME: &str = "pricing_ui";

/// The name of the billing page's bundle (`pkg/billing_ui.js`, `pkg/billing_ui_bg.wasm`): the same client with the
/// billing page (feature `billing`).
pub const BILLING_OUTPUT_NAME: &str = "billing_ui";

/// Starts the client: reads the price book and the URL the server rendered the page from, and hydrates it.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    client::hydrate();
}
