//! The customer's billing page (`/billing`): their period so far and at its end, per product usage, amounts, tiers,
//! a daily chart and the spend cap, editable. The server reads everything the page shows into [`BillingData`]
//! (the usage view's own numbers); the page adds one computation, in the browser as the customer types: what a cap
//! would buy and do at the current pace ([`preview_cap`]), with billing-core's `cap_outlook` — the function the
//! usage view answers `projected_cap_at` with once the cap is saved.
//!
//! Files: `data` (what the server read), `preview` (a typed cap's effect; dates and quantities in words), this one
//! (the components).

// Leptos components take their props by value (the macro builds a props struct from them).
#![allow(clippy::needless_pass_by_value)]

mod data;
mod preview;

use std::sync::Arc;

use billing_core::{Currency, PriceBook};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use rust_decimal::Decimal;

pub use data::*;
pub use preview::*;

use preview::chosen_addons;

use crate::explain::cap_buys;
use crate::format::{grouped, money, percent};
/// The billing page.
#[component]
pub fn BillingApp(book: Arc<PriceBook>, data: Arc<BillingData>) -> impl IntoView {
    let currency = book.currency();
    let days_left = (data.period_end - data.now).num_days().max(0);
    let period = period_words(data.period_start, data.period_end);
    let period_note = if data.current {
        format!(
            "{period} · {} left",
            if days_left == 1 { "1 day".to_owned() } else { format!("{days_left} days") }
        )
    } else {
        format!("{period} · ended")
    };
    let picker = data
        .periods
        .iter()
        .map(|p| view! { <option value=p.value.clone() selected=p.selected>{p.label.clone()}</option> })
        .collect_view();
    let credit = data.credit_balance.map(|c| {
        view! { <div class="stat"><span class="label">"Prepaid credit"</span><span class="value">{money(currency, c)}</span></div> }
    });
    let commitment = data.commitment.as_ref().map(|c| {
        view! {
            <p class="meta">
                {format!(
                    "Commitment: {} a year at {} off · {} monthly releases left · credit expires {}",
                    money(currency, c.yearly_credit),
                    percent(c.discount_rate),
                    c.releases_left,
                    date(c.expires_at)
                )}
            </p>
        }
    });
    let products = data
        .products
        .iter()
        .map(|p| view! { <ProductPanel book=book.clone() data=data.clone() product=p.clone()/> })
        .collect_view();
    let notice = data.notice.clone().map(|n| view! { <p class="notice" role="status">{n}</p> });
    view! {
        <a class="skip" href="#products">"Skip to your products"</a>
        <header class="hero">
            <p class="eyebrow">"tally · billing"</p>
            <h1>{format!("Billing for {}", data.customer)}</h1>
            <form class="picker" method="get" action="/billing">
                <label for="period">"Period"</label>
                <select id="period" name="period">{picker}</select>
                <button type="submit">"Show"</button>
            </form>
            <p class="meta" id="period-words">{period_note}</p>
        </header>
        {notice}
        <section class="totals" aria-label="Totals">
            <div class="stat"><span class="label">"Bill so far"</span>
                <span class="value" id="so-far" data-amount=data.so_far.total.to_string()>{money(currency, data.so_far.total)}</span></div>
            <div class="stat"><span class="label">"Projected at period end"</span>
                <span class="value" id="projected" data-amount=data.projected.total.to_string()>{money(currency, data.projected.total)}</span></div>
            {credit}
            <div class="stat"><span class="label">"Due after credit"</span>
                <span class="value" id="amount-due" data-amount=data.so_far.amount_due.to_string()>{money(currency, data.so_far.amount_due)}</span></div>
        </section>
        {commitment}
        <section id="products" class="products">{products}</section>
        <Alerts data=data.clone()/>
        <Invoices currency data=data.clone()/>
        <History currency data=data.clone()/>
        <footer class="foot">"Amounts exclude tax. Usage past a spend cap is dropped, never billed."</footer>
    }
}

/// One product: usage against its allowance, amounts, the calculation, the daily chart and the cap form.
#[component]
fn ProductPanel(book: Arc<PriceBook>, data: Arc<BillingData>, product: ProductData) -> impl IntoView {
    let currency = book.currency();
    let key = product.key.clone();
    let bar = product.free.filter(|f| !f.is_zero()).map(|free| {
        let share = (product.usage * Decimal::ONE_HUNDRED / free).min(Decimal::ONE_HUNDRED).trunc();
        view! {
            <div class="allowance">
                <div class="bar" role="img" aria-label=format!("{} of {} free", units(product.usage, &product.unit), grouped(free))>
                    <span style=format!("width: {share}%")></span>
                </div>
                <p class="meta">{format!("{} of {} free this period", units(product.usage, &product.unit), grouped(free))}</p>
            </div>
        }
    });
    let tiers = product
        .tiers
        .iter()
        .map(|t| view! { <tr><td>{t.line.clone()}</td><td>{t.tier.clone()}</td><td class="num">{t.units.clone()}</td><td class="num">{money(currency, t.amount)}</td></tr> })
        .collect_view();
    let reached = product.reached_at.map(|at| {
        let dropped: Vec<String> = product.dropped.iter().map(|(_, unit, q)| units(*q, unit)).collect();
        view! {
            <p class="reached" role="status">
                {format!("Cap reached on {} at {} UTC; dropped since: {}.", date(at), at.format("%H:%M"),
                    if dropped.is_empty() { "nothing yet".to_owned() } else { dropped.join(", ") })}
            </p>
        }
    });
    let cap_buys_units = product.cap.and_then(|c| {
        let chosen = chosen_addons(&book, &data);
        let factor = Decimal::ONE - data.commitment.as_ref().map_or(Decimal::ZERO, |c| c.discount_rate);
        book.product(&key).and_then(|p| cap_buys(&book, p, &chosen, c, factor).ok().flatten())
    });
    let charts = product
        .daily
        .iter()
        .map(|m| view! { <DailyChart days=m.clone() cap_units=cap_buys_units.filter(|_| m.meter == product.meter) now=data.now/> })
        .collect_view();
    view! {
        <article class="card" id=format!("product-{key}")>
            <header class="card-head">
                <h2>{product.name.clone()}</h2>
                <p class="amount"><span class="so-far" data-amount=product.amount.to_string()>{money(currency, product.amount)}</span>
                    " so far · " <span class="projected">{money(currency, product.projected_amount)}</span> " projected"</p>
            </header>
            {bar}
            {reached}
            {charts}
            <details class="explain">
                <summary>"How this is calculated"</summary>
                <table><thead><tr><th>"Line"</th><th>"Tier"</th><th class="num">"Units"</th><th class="num">"Amount"</th></tr></thead>
                <tbody>{tiers}</tbody></table>
            </details>
            <CapForm book=book.clone() data=data.clone() product=product.clone()/>
        </article>
    }
}

/// The spend cap of a product: a plain form (POST /billing/limits) whose consequences update as the user types.
#[component]
fn CapForm(book: Arc<PriceBook>, data: Arc<BillingData>, product: ProductData) -> impl IntoView {
    let currency = book.currency();
    let initial = product.cap.map(|c| c.normalize().to_string()).unwrap_or_default();
    let typed = RwSignal::new(initial.clone());
    let preview = {
        let (book, data, key) = (book.clone(), data.clone(), product.key.clone());
        Memo::new(move |_| typed.with(|t| preview_cap(&book, &data, &key, t)))
    };
    let words = {
        let product = product.clone();
        move || typed.with(|t| preview.with(|p| preview_words(currency, &product, t, p)))
    };
    // The prediction, machine-readable (the browser tests compare it with the API's answer once saved).
    let effect = move || preview.with(|p| p.effect.kind());
    let reaches_at = move || {
        preview.with(|p| match &p.effect {
            CapEffect::Reaches(at, _) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            _ => String::new(),
        })
    };
    let dropped = move || {
        preview.with(|p| match &p.effect {
            CapEffect::Reaches(_, d) => {
                d.iter().map(|(m, q)| format!("{m}={}", q.normalize())).collect::<Vec<_>>().join(";")
            }
            _ => String::new(),
        })
    };
    let id = format!("cap-{}", product.key);
    let words_id = format!("cap-effect-{}", product.key);
    let current = match (product.cap, product.pinned) {
        (Some(c), Some(p)) => {
            format!("Cap {} (this period kept at {})", money(currency, c), money(currency, p))
        }
        (Some(c), None) => format!("Cap {}", money(currency, c)),
        (None, _) => "No cap: all usage is billed".to_owned(),
    };
    let remove = product.cap.map(|_| {
        view! {
            <form method="post" action="/billing/limits" class="remove">
                <input type="hidden" name="csrf" value=data.csrf.clone()/>
                <input type="hidden" name="product" value=product.key.clone()/>
                <input type="hidden" name="limit" value=""/>
                <button type="submit" class="secondary">"Remove cap"</button>
            </form>
        }
    });
    view! {
        <div class="cap">
            <p class="cap-now">{current}</p>
            <form method="post" action="/billing/limits" class="cap-form">
                <input type="hidden" name="csrf" value=data.csrf.clone()/>
                <input type="hidden" name="product" value=product.key.clone()/>
                <label for=id.clone()>{format!("Monthly spend cap for {} ({})", product.name, currency.code())}</label>
                <input id=id type="text" inputmode="decimal" name="limit" autocomplete="off" value=initial
                    placeholder="no cap" aria-describedby=words_id.clone()
                    prop:value=move || typed.get()
                    on:input=move |ev| typed.set(event_target_value(&ev))/>
                <button type="submit">"Save cap"</button>
            </form>
            {remove}
            <p class="cap-effect" id=words_id aria-live="polite" data-effect=effect data-reaches-at=reaches_at
                data-dropped=dropped>{words}</p>
        </div>
    }
}

/// A meter's cumulative usage per day (bars), with the usage the cap pays for marked; a table is its text.
#[component]
fn DailyChart(days: MeterDays, cap_units: Option<Decimal>, now: DateTime<Utc>) -> impl IntoView {
    let mut running = Decimal::ZERO;
    // Up to today: the days to come have no usage yet, and no bar.
    let shown: Vec<&(DateTime<Utc>, Decimal)> = days.days.iter().filter(|(d, _)| *d <= now).collect();
    let cumulative: Vec<Decimal> = shown
        .iter()
        .map(|(_, q)| {
            running += *q;
            running
        })
        .collect();
    let top = cumulative.iter().copied().chain(cap_units).max().unwrap_or(Decimal::ONE).max(Decimal::ONE);
    let n = i64::try_from(days.days.len().max(1)).unwrap_or(31);
    let width = 1000 / n;
    let y = |v: Decimal| -> i64 { 200 - i64::try_from((v * Decimal::from(190) / top).trunc()).unwrap_or(0) };
    let bars = cumulative
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i64::try_from(i).unwrap_or(0) * width;
            let top_y = y(*v);
            view! { <rect class="day" x=x y=top_y width=(width - 4).max(1) height=200 - top_y/> }
        })
        .collect_view();
    let cap = cap_units.map(|c| {
        let cy = y(c);
        view! { <line class="cap-line" x1="0" x2="1000" y1=cy y2=cy/><text class="cap-label" x="996" y=cy - 6 text-anchor="end">"cap"</text> }
    });
    let total = cumulative.last().copied().unwrap_or_default();
    let caption = format!(
        "{}: {} this period so far{}",
        days.meter,
        units(total, &days.unit),
        cap_units.map(|c| format!("; the cap pays for {}", units(c.floor(), &days.unit))).unwrap_or_default()
    );
    let rows = shown
        .iter()
        .zip(&cumulative)
        .map(|((d, q), c)| view! { <tr><td>{date(*d)}</td><td class="num">{grouped(*q)}</td><td class="num">{grouped(*c)}</td></tr> })
        .collect_view();
    view! {
        <figure class="chart">
            <svg viewBox="0 0 1000 200" role="img" aria-label=caption.clone() preserveAspectRatio="none">{bars}{cap}</svg>
            <figcaption>{caption}</figcaption>
            <details><summary>"Daily figures"</summary>
                <table><thead><tr><th>"Day"</th><th class="num">"Usage"</th><th class="num">"Running total"</th></tr></thead>
                <tbody>{rows}</tbody></table></details>
        </figure>
    }
}

#[component]
fn Alerts(data: Arc<BillingData>) -> impl IntoView {
    let items = data
        .alerts
        .iter()
        .map(|a| view! { <li>{format!("{}: {} of the cap on {}", a.product, percent(a.threshold), date(a.at))}</li> })
        .collect_view();
    view! {
        <section class="list" id="alerts"><h2>"Alerts this period"</h2>
            {if data.alerts.is_empty() { Some(view! { <p class="meta">"None."</p> }) } else { None }}
            <ul>{items}</ul>
        </section>
    }
}

#[component]
fn Invoices(currency: Currency, data: Arc<BillingData>) -> impl IntoView {
    let rows = data
        .invoices
        .iter()
        .map(|i| {
            let number = i.number.clone().unwrap_or_else(|| "draft".to_owned());
            view! {
                <tr>
                    <td>{number}</td><td>{i.period.clone()}</td>
                    <td class="num">{money(currency, i.total)}</td><td class="num">{money(currency, i.amount_due)}</td>
                    <td>{i.status.clone()}</td>
                    <td><a href=format!("/billing/invoices/{}?format=html", i.id)>"View"</a>
                        " · " <a href=format!("/billing/invoices/{}?format=csv", i.id)>"CSV"</a></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="list" id="invoices"><h2>"Invoices"</h2>
            <table><thead><tr><th>"Number"</th><th>"Period"</th><th class="num">"Total"</th><th class="num">"Amount due"</th><th>"Status"</th><th>"Views"</th></tr></thead>
            <tbody>{rows}</tbody></table>
        </section>
    }
}

#[component]
fn History(currency: Currency, data: Arc<BillingData>) -> impl IntoView {
    let cap = move |c: Option<Decimal>| c.map_or_else(|| "no cap".to_owned(), |c| money(currency, c));
    let rows = data
        .history
        .iter()
        .map(|h| {
            let by = match h.by.as_str() {
                "admin" => "your provider",
                "api_key" => "API key",
                _ => "this page",
            };
            view! { <tr><td>{h.at.format("%-d %B %Y %H:%M UTC").to_string()}</td><td>{h.product.clone()}</td><td>{cap(h.old)}</td><td>{cap(h.new)}</td><td>{by}</td></tr> }
        })
        .collect_view();
    view! {
        <section class="list" id="history"><h2>"Cap changes"</h2>
            <table><thead><tr><th>"When"</th><th>"Product"</th><th>"From"</th><th>"To"</th><th>"By"</th></tr></thead>
            <tbody>{rows}</tbody></table>
        </section>
    }
}
