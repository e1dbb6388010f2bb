//! The browser side: hydration, the URL kept in step with the state, and the `data-hydrated` mark.

use std::sync::Arc;

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
    let query = window().location().search().unwrap_or_default();
    let initial = PageState::from_query(&book, &query);
    leptos::mount::hydrate_body(move || view! { <App book initial/> });
}

/// Effects that only run in the browser: every change of the state replaces the URL's query
/// (`history.replaceState`, no navigation), and `<body data-hydrated="true">` says the page is live.
pub(crate) fn effects(state: RwSignal<PageState>) {
    Effect::new(move |_| {
        let query = state.with(PageState::to_query);
        let window = window();
        let path = window.location().pathname().unwrap_or_else(|_| "/".to_owned());
        let url = if query.is_empty() { path } else { format!("{path}?{query}") };
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    });
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
