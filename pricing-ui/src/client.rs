//! The browser side: hydration, the URL kept in step with the state, and the `data-hydrated` mark.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use billing_core::PriceBook;
use leptos::prelude::*;

use crate::app::App;
use crate::state::PageState;

pub(crate) fn hydrate() {
    console_error_panic_hook::set_once();
    let text = document().get_element_by_id(crate::BOOK_ELEMENT_ID).and_then(|e| e.text_content());
    let book = match text.as_deref().map(PriceBook::from_json) {
        Some(Ok(book)) => Arc::new(book),
        Some(Err(e)) => {
            leptos::logging::error!("tally: the page's price book does not parse: {e}");
            return;
        }
        None => {
            leptos::logging::error!("tally: the page carries no price book");
            return;
        }
    };
    // The billing page carries its data beside the book; the pricing page reads its state from the URL.
    #[cfg(feature = "billing")]
    if let Some(text) =
        document().get_element_by_id(crate::billing::DATA_ELEMENT_ID).and_then(|e| e.text_content())
    {
        let data = match serde_json::from_str::<crate::billing::BillingData>(&text) {
            Ok(data) => Arc::new(data),
            Err(e) => {
                leptos::logging::error!("tally: the billing page's data does not parse: {e}");
                return;
            }
        };
        leptos::mount::hydrate_body(move || {
            mark_hydrated();
            view! { <crate::billing::BillingApp book data/> }
        });
        return;
    }
    let query = window().location().search().unwrap_or_default();
    let initial = PageState::from_query(&book, &query);
    leptos::mount::hydrate_body(move || view! { <App book initial/> });
}

thread_local! {
    /// The query the address bar should show, and whether writing it is already scheduled.
    static LATEST_QUERY: RefCell<String> = const { RefCell::new(String::new()) };
    static URL_WRITE_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// How long the address bar waits for the inputs to settle. `history.replaceState` costs ~3 ms a call in Chromium
/// (more than pricing the whole page), and Chromium throttles a page that calls it too often: a slider dragged
/// across a hundred stops writes the URL a few times, not a hundred, and never delays the total.
const URL_SETTLE: Duration = Duration::from_millis(80);

fn write_url() {
    URL_WRITE_PENDING.with(|p| p.set(false));
    let query = LATEST_QUERY.with(|q| q.borrow().clone());
    let window = window();
    let path = window.location().pathname().unwrap_or_else(|_| "/".to_owned());
    let url = if query.is_empty() { path } else { format!("{path}?{query}") };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

/// Effects that only run in the browser: every change of the state replaces the URL's query
/// (`history.replaceState`, no navigation; coalesced over [`URL_SETTLE`]), and `<body data-hydrated="true">` says
/// the page is live.
pub(crate) fn effects(state: RwSignal<PageState>) {
    Effect::new(move |_| {
        let query = state.with(PageState::to_query);
        LATEST_QUERY.with(|q| *q.borrow_mut() = query);
        if !URL_WRITE_PENDING.with(|p| p.replace(true)) {
            set_timeout(write_url, URL_SETTLE);
        }
    });
    mark_hydrated();
}

/// `<body data-hydrated="true">`: the page is live (an effect, so it runs once hydration has finished).
fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
