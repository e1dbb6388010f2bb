//! The HTML document the server sends: head (style, the price book as JSON, the hydration scripts when the wasm
//! bundle is there) and the app in the body.

use std::sync::Arc;

use billing_core::PriceBook;
use leptos::prelude::*;

use crate::app::App;
use crate::state::PageState;

/// Everything one page render needs.
#[derive(Debug, Clone)]
pub struct PageInput {
    /// The price book in force.
    pub book: Arc<PriceBook>,
    /// Its canonical JSON, escaped for a `<script>` element (see [`script_json`]).
    pub book_json: Arc<str>,
    /// The request's query (without `?`).
    pub query: String,
    /// Leptos' options (where the bundle is), when the wasm bundle is present; `None` serves the page without
    /// scripts (it still works as a form).
    pub options: Option<LeptosOptions>,
}

/// The page's icon, inline: a tally mark.
const FAVICON: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='7' fill='%23d9480f'/%3E%3Cpath d='M9 8v16M14 8v16M19 8v16M24 8v16M6 22L27 10' stroke='white' stroke-width='2.5' stroke-linecap='round'/%3E%3C/svg%3E";

/// JSON made safe inside `<script>`: every `<` becomes `\u003c` (valid JSON, and no `</script>` can end it).
pub fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// What both pages' `<head>` holds: character set, viewport, colour schemes, the icon, the style sheet, the price book
/// for the client, and the hydration scripts when there is a bundle.
fn common_head(book_json: &str, options: Option<LeptosOptions>) -> impl IntoView {
    let scripts = options.map(|options| view! { <HydrationScripts options/> });
    view! {
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <meta name="color-scheme" content="light dark"/>
        // An inline icon: no extra request, no 404.
        <link rel="icon" href=FAVICON/>
        <style inner_html=crate::STYLE></style>
        <script type="application/json" id=crate::BOOK_ELEMENT_ID inner_html=book_json.to_owned()></script>
        {scripts}
    }
}

/// The whole document.
pub fn shell(input: PageInput) -> impl IntoView {
    let initial = PageState::from_query(&input.book, &input.query);
    let head = common_head(&input.book_json, input.options);
    let book = input.book;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                {head}
                <title>"Pricing · tally"</title>
                <meta name="description" content="Usage-based pricing with a free allowance on every product: estimate your monthly bill to the cent."/>
            </head>
            <body>
                <App book initial/>
            </body>
        </html>
    }
}

/// Everything one render of the billing page needs.
#[derive(Debug, Clone)]
pub struct BillingInput {
    /// The price book of the period shown.
    pub book: Arc<PriceBook>,
    /// Its canonical JSON, escaped for a `<script>` element.
    pub book_json: Arc<str>,
    /// The page's data.
    pub data: Arc<crate::billing::BillingData>,
    /// Leptos' options, when the wasm bundle is present.
    pub options: Option<LeptosOptions>,
}

/// The billing page's document: the same head, style and client as the pricing page, with the page's data beside
/// the price book.
pub fn billing_shell(input: BillingInput) -> impl IntoView {
    let head = common_head(&input.book_json, input.options);
    let data_json = script_json(&serde_json::to_string(&*input.data).unwrap_or_default());
    let (book, data) = (input.book, input.data);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                {head}
                <meta name="robots" content="noindex"/>
                <title>"Billing · tally"</title>
                <script type="application/json" id=crate::billing::DATA_ELEMENT_ID inner_html=data_json></script>
            </head>
            <body class="billing">
                <crate::billing::BillingApp book data/>
            </body>
        </html>
    }
}
