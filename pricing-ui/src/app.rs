//! The page: one component tree rendered on the server and hydrated in the browser. Every number on it comes from
//! [`crate::state::evaluate`] (billing-core's `compute`), from the tier schedule, or from billing-core's limit
//! inversion and commitment advice; nothing here computes an amount itself.

// Leptos components take their props by value (the macro builds a props struct from them).
#![allow(clippy::needless_pass_by_value)]

use std::sync::Arc;

use billing_core::{commitment_advice, AdviceOption, Bill, Currency, LineKind, PriceBook, Product, Rounding};
use leptos::prelude::*;
use rust_decimal::Decimal;

use crate::explain::{cap_buys, free_allowance, Curve};
use crate::format::{compact, grouped, money, percent, unit_price};
use crate::scale::Scale;
use crate::state::{clean_number, evaluate, has_input, Evaluation, Field, PageState};

/// What every part of the page reads: the book, the state as typed, and its evaluation.
#[derive(Clone)]
struct Page {
    book: Arc<PriceBook>,
    state: RwSignal<PageState>,
    eval: Memo<Evaluation>,
}

impl Page {
    fn currency(&self) -> Currency {
        self.book.currency()
    }
}

/// The pricing page, from a price book and the state its URL asked for.
#[component]
pub fn App(book: Arc<PriceBook>, initial: PageState) -> impl IntoView {
    let state = RwSignal::new(initial);
    let eval = {
        let book = book.clone();
        Memo::new(move |_| state.with(|s| evaluate(&book, s)))
    };
    #[cfg(feature = "hydrate")]
    crate::client::effects(state);
    let page = Page { book: book.clone(), state, eval };
    let version = book.version().unwrap_or("unversioned").to_owned();
    let products: Vec<_> = book
        .products()
        .iter()
        .map(|p| view! { <ProductCard page=page.clone() product=p.clone()/> })
        .collect();
    // Messages of what has no input of its own (an unknown add-on in a link, say), and of the request as a whole.
    let general_error = {
        let book = book.clone();
        Memo::new(move |_| {
            eval.with(|e| {
                let lines: Vec<String> = e
                    .errors
                    .iter()
                    .filter(|(field, _)| !has_input(&book, field))
                    .map(|(field, message)| match field {
                        Field::Addon(key) => format!("addon={key}: {message}"),
                        _ => message.clone(),
                    })
                    .collect();
                (!lines.is_empty()).then(|| lines.join("; "))
            })
        })
    };
    view! {
        <a class="skip" href="#summary">"Skip to the estimate"</a>
        <header class="hero">
            <p class="eyebrow">"tally · usage-based pricing"</p>
            <h1>"Pay for what you use. Know it to the cent."</h1>
            <p class="lede">
                "Every product has a free allowance each month. Set your usage: the estimate below is computed by "
                "the same billing engine that writes your invoice, so this number is the number you will be billed."
            </p>
            <p class="meta">"Price book " <strong>{version}</strong> " · amounts in " {book.currency().code()}</p>
        </header>
        <form class="layout" method="get" action="/" on:submit=|ev| ev.prevent_default()>
            <div class="products">
                {products}
                <PlatformAddons page=page.clone()/>
            </div>
            <Summary page=page.clone()/>
        </form>
        <p class="error general" role="alert">{general_error}</p>
        <footer class="foot">
            "Amounts exclude tax. Usage past a spend cap is dropped, never billed. "
            <a href="/openapi.json">"API"</a>
        </footer>
    }
}

/// The lines of a product group (the product, its add-ons, its cap).
fn group_lines<'a>(
    bill: &'a Bill<'static>,
    product: &'a str,
) -> impl Iterator<Item = &'a billing_core::Line<'static>> {
    bill.lines.iter().filter(move |l| l.product.as_deref() == Some(product))
}

/// One usage input: a slider on the non-linear scale and a number box kept in step.
#[component]
fn MeterInput(page: Page, meter: String, label: String, unit: String, scale: Arc<Scale>) -> impl IntoView {
    let state = page.state;
    let id = format!("usage-{meter}");
    let slider_id = format!("slider-{meter}");
    // Memoized per meter: an input on another meter re-runs nothing here (see BENCHMARKS.md, input latency).
    let raw = {
        let meter = meter.clone();
        Memo::new(move |_| state.with(|s| s.usage.get(&meter).cloned().unwrap_or_default()))
    };
    let quantity = Memo::new(move |_| raw.with(|r| clean_number(r).parse::<Decimal>().unwrap_or_default()));
    let position = {
        let scale = scale.clone();
        Memo::new(move |_| scale.position(quantity.get()).to_string())
    };
    let value_text = {
        let unit = unit.clone();
        move || format!("{} {unit}s", grouped(quantity.get()))
    };
    // The attributes the server renders (and the browser keeps as defaults); the live values are properties.
    let (initial_raw, initial_position) = (raw.get_untracked(), position.get_untracked());
    let on_number = {
        let meter = meter.clone();
        move |ev| {
            let value = event_target_value(&ev);
            state.update(|s| {
                s.usage.insert(meter.clone(), value);
            });
        }
    };
    let on_slider = {
        let (meter, scale) = (meter.clone(), scale.clone());
        move |ev| {
            let position = event_target_value(&ev).parse::<usize>().unwrap_or(0);
            let q = scale.quantity(position);
            state.update(|s| {
                s.usage.insert(meter.clone(), q.to_string());
            });
        }
    };
    let error = field_error(page.eval, Field::Usage(meter.clone()));
    let error_id = format!("error-{meter}");
    let marks = scale
        .marks()
        .into_iter()
        .map(|(at, label)| view! { <span class="mark" style=format!("left: {}%", at / 10)>{label}</span> })
        .collect_view();
    view! {
        <div class="meter">
            <div class="meter-head">
                <label for=id.clone()>{label.clone()}</label>
                <input
                    id=id.clone()
                    class="number"
                    type="text"
                    inputmode="decimal"
                    autocomplete="off"
                    name=meter.clone()
                    placeholder="0"
                    value=initial_raw
                    prop:value=raw
                    aria-describedby=error_id.clone()
                    on:input=on_number
                />
                <span class="unit">{format!("{unit}s / month")}</span>
            </div>
            <input
                id=slider_id
                class="slider"
                type="range"
                min="0"
                max=scale.max_position().to_string()
                step="1"
                value=initial_position
                prop:value=position
                aria-label=format!("{label} (slider)")
                aria-valuetext=value_text
                on:input=on_slider
            />
            <div class="marks" aria-hidden="true">{marks}</div>
            <p class="error" id=error_id role="alert">{error}</p>
        </div>
    }
}

/// A product: its inputs, amount, cost curve, how the amount is made, and its spend cap.
#[component]
fn ProductCard(page: Page, product: Product) -> impl IntoView {
    let key = product.metered.key.to_string();
    let currency = page.currency();
    let scale = Arc::new(Scale::for_metered(&product.metered));
    let curve = Arc::new(Curve::new(&product, &scale));
    let eval = page.eval;
    let state = page.state;
    // This product's lines, memoized: an input elsewhere on the page leaves them equal, and then nothing of
    // this card re-renders (the tier table is rebuilt only when its lines change).
    let lines = {
        let key = key.clone();
        Memo::new(move |_| {
            eval.with(|e| e.bill.as_ref().map(|b| group_lines(b, &key).cloned().collect::<Vec<_>>()))
        })
    };
    let amount = move || {
        lines.with(|l| {
            l.as_ref().map_or_else(String::new, |l| money(currency, l.iter().map(|l| l.amount).sum()))
        })
    };
    let capped = {
        let key = key.clone();
        Memo::new(move |_| {
            eval.with(|e| {
                e.bill.as_ref().is_some_and(|b| b.spend_limits.iter().any(|l| l.product == key && l.reached))
            })
        })
    };
    let free = free_allowance(&product.metered).map_or_else(
        || "No free allowance".to_owned(),
        |f| format!("First {} {}s free every month", grouped(f), product.metered.unit),
    );
    // Inputs: the product's meter, then each add-on's meter not shown yet; optional add-ons get a toggle.
    let mut shown = vec![product.metered.meter.to_string()];
    let mut inputs = vec![view! {
        <MeterInput page=page.clone() meter=product.metered.meter.to_string()
            label=format!("{}: {}s", product.metered.name, product.metered.unit)
            unit=product.metered.unit.to_string() scale=scale.clone()/>
    }
    .into_any()];
    for addon in &product.addons {
        let meter = addon.metered.meter.to_string();
        if !shown.contains(&meter) {
            shown.push(meter.clone());
            let addon_scale = Arc::new(Scale::for_metered(&addon.metered));
            inputs.push(
                view! {
                    <MeterInput page=page.clone() meter=meter
                        label=format!("{}: {}s", addon.metered.name, addon.metered.unit)
                        unit=addon.metered.unit.to_string() scale=addon_scale/>
                }
                .into_any(),
            );
        }
    }
    let toggles = product
        .addons
        .iter()
        .filter(|a| a.optional)
        .map(|a| view! { <AddonToggle page=page.clone() key=a.metered.key.to_string() name=a.metered.name.to_string()
                             note=format!("billed per {} on top", a.metered.unit)/> })
        .collect_view();
    let rows = {
        move || {
            lines.with(|l| {
                l.as_ref().map(|l| {
                    l.iter()
                        .flat_map(|line| {
                            let name = line.name.to_string();
                            let unit = line.unit.as_deref().unwrap_or("unit").to_owned();
                            let slices: Vec<_> = line.tiers.as_ref().map(|t| t.iter().cloned().collect()).unwrap_or_default();
                            let kind = line.kind;
                            let line_amount = line.amount;
                            let mut rows: Vec<AnyView> = slices
                                .into_iter()
                                .map(|s| {
                                    let range = match s.up_to {
                                        Some(up) => format!("{} – {}", grouped(s.from), grouped(up)),
                                        None => format!("over {}", grouped(s.from)),
                                    };
                                    let flat = if s.flat_amount.is_zero() {
                                        String::new()
                                    } else {
                                        format!(" + {} flat", unit_price(currency, s.flat_amount))
                                    };
                                    view! {
                                        <tr>
                                            <td>{name.clone()}</td>
                                            <td>{format!("tier {} ({range})", s.tier)}</td>
                                            <td class="num">{format!("{} {unit}s × {}{flat}", grouped(s.units), unit_price(currency, s.unit_amount))}</td>
                                            <td class="num">{money(currency, s.amount)}</td>
                                        </tr>
                                    }
                                    .into_any()
                                })
                                .collect();
                            if kind == LineKind::SpendLimit {
                                rows.push(view! {
                                    <tr class="cap-row">
                                        <td>{name.clone()}</td>
                                        <td>"usage past the cap"</td>
                                        <td class="num">"dropped, not billed"</td>
                                        <td class="num">{money(currency, line_amount)}</td>
                                    </tr>
                                }.into_any());
                            }
                            rows
                        })
                        .collect::<Vec<_>>()
                })
            })
        }
    };
    let marker = {
        let (curve, scale, meter) = (curve.clone(), scale.clone(), product.metered.meter.to_string());
        Memo::new(move |_| {
            let q = state.with(|s| {
                s.usage.get(&meter).and_then(|r| clean_number(r).parse::<Decimal>().ok()).unwrap_or_default()
            });
            curve.point(&scale, q)
        })
    };
    let cap_line = {
        let (curve, key) = (curve.clone(), key.clone());
        move || {
            let limit =
                state.with(|s| s.limits.get(&key).and_then(|r| clean_number(r).parse::<Decimal>().ok()))?;
            let y = curve.y(limit);
            Some(view! {
                <line class="cap-line" x1="0" x2="1000" y1=y y2=y/>
                <text class="cap-label" x="996" y=y - 6 text-anchor="end">"cap"</text>
            })
        }
    };
    let boundaries = curve
        .boundaries
        .iter()
        .map(|(x, b)| {
            view! {
                <line class="boundary" x1=*x x2=*x y1="0" y2=crate::explain::HEIGHT>
                    <title>{format!("tier boundary at {}", grouped(*b))}</title>
                </line>
            }
        })
        .collect_view();
    let cap_id = format!("limit-{key}");
    let cap_raw = {
        let key = key.clone();
        Memo::new(move |_| state.with(|s| s.limits.get(&key).cloned().unwrap_or_default()))
    };
    let initial_cap = cap_raw.get_untracked();
    let on_cap = {
        let key = key.clone();
        move |ev| {
            let value = event_target_value(&ev);
            state.update(|s| {
                s.limits.insert(key.clone(), value);
            });
        }
    };
    let cap_error = field_error(eval, Field::Limit(key.clone()));
    let cap_text = {
        let (book, product) = (page.book.clone(), product.clone());
        Memo::new(move |_| {
            let limit = cap_raw.with(|r| clean_number(r));
            let limit: Decimal = limit.parse().ok()?;
            let chosen = state.with(|s| s.addons.clone());
            let net = net_factor(eval);
            let text = match cap_buys(&book, &product, &chosen, limit, net) {
                Ok(Some(units)) => format!(
                    "A {} cap stops {} at {} {}s a month.",
                    money(currency, limit),
                    product.metered.name,
                    grouped(units),
                    product.metered.unit
                ),
                Ok(None) => {
                    format!("A {} cap is never reached by {}.", money(currency, limit), product.metered.name)
                }
                Err(_) => return None,
            };
            Some(text)
        })
    };
    let chart_label = format!("Cost of {} against usage, tier boundaries marked", product.metered.name);
    view! {
        <article class="product" id=format!("product-{key}") data-capped=move || capped.get().then_some("true")>
            <header class="product-head">
                <div>
                    <h2>{product.metered.name.to_string()}</h2>
                    <p class="free">{free}</p>
                </div>
                <p class="amount">
                    <span class="amount-value" id=format!("amount-{key}")>{amount}</span>
                    <span class="per">"/ month"</span>
                    <span class="badge" hidden=move || !capped.get()>"capped"</span>
                </p>
            </header>
            {product.metered.description.clone().map(|d| view! { <p class="desc">{d}</p> })}
            {inputs}
            {toggles}
            <svg class="curve" viewBox="0 0 1000 200" preserveAspectRatio="none" role="img" aria-label=chart_label>
                {boundaries}
                <path class="curve-line" d=curve.path.clone()/>
                {cap_line}
                <circle class="marker" r="7" cx=move || marker.get().0 cy=move || marker.get().1/>
            </svg>
            <p class="curve-axis" aria-hidden="true"><span>"usage →"</span><span>{format!("{} at {}", money(currency, currency.round(curve.top_cost, Rounding::HalfAwayFromZero)), compact(scale.quantity(scale.max_position())))}</span></p>
            <details class="how">
                <summary>"How this is calculated"</summary>
                <table>
                    <thead>
                        <tr><th scope="col">"Line"</th><th scope="col">"Tier"</th><th scope="col">"Units × price"</th><th scope="col">"Amount"</th></tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </details>
            <div class="cap">
                <label for=cap_id.clone()>{format!("Spend cap for {} (whole {} per month, after discount)", product.metered.name, currency.code())}</label>
                <input id=cap_id class="number" type="text" inputmode="numeric" autocomplete="off"
                    name=format!("limit.{key}") placeholder="no cap"
                    value=initial_cap prop:value=cap_raw on:input=on_cap/>
                <p class="cap-text">{cap_text}</p>
                <p class="error" role="alert">{cap_error}</p>
            </div>
        </article>
    }
}

/// The message of a field, memoized: it re-renders only when it changes.
fn field_error(eval: Memo<Evaluation>, field: Field) -> Memo<Option<String>> {
    Memo::new(move |_| eval.with(|e| e.error(&field).map(str::to_owned)))
}

/// The commitment's net factor (1 − discount) in the current bill; 1 without a commitment.
fn net_factor(eval: Memo<Evaluation>) -> Decimal {
    eval.with(|e| {
        e.bill
            .as_ref()
            .and_then(|b| b.commitment.as_ref())
            .map_or(Decimal::ONE, |c| Decimal::ONE - c.discount_rate)
    })
}

/// A toggle for an optional or platform add-on (`addon=<key>`).
#[component]
fn AddonToggle(page: Page, key: String, name: String, note: String) -> impl IntoView {
    let state = page.state;
    let checked = {
        let key = key.clone();
        Memo::new(move |_| state.with(|s| s.addons.contains(&key)))
    };
    let initially = checked.get_untracked();
    let on_change = {
        let key = key.clone();
        move |ev| {
            let on = event_target_checked(&ev);
            state.update(|s| {
                if on {
                    s.addons.insert(key.clone());
                } else {
                    s.addons.remove(&key);
                }
            });
        }
    };
    let error = field_error(page.eval, Field::Addon(key.clone()));
    let id = format!("addon-{key}");
    view! {
        <div class="toggle">
            <input id=id.clone() type="checkbox" name="addon" value=key checked=initially prop:checked=checked on:change=on_change/>
            <label for=id>{name}<span class="note">{note}</span></label>
            <p class="error" role="alert">{error}</p>
        </div>
    }
}

/// The platform add-ons: flat monthly prices, prorated when switched on mid-period.
#[component]
fn PlatformAddons(page: Page) -> impl IntoView {
    let addons = page.book.platform_addons().to_vec();
    if addons.is_empty() {
        return None;
    }
    let currency = page.currency();
    let toggles = addons
        .into_iter()
        .map(|a| {
            view! {
                <AddonToggle page=page.clone() key=a.key.to_string() name=a.name.to_string()
                    note=format!("{} / month", money(currency, a.monthly_price))/>
            }
        })
        .collect_view();
    Some(view! {
        <section class="product platform" aria-labelledby="platform-title">
            <h2 id="platform-title">"Platform add-ons"</h2>
            <p class="free">"Flat monthly prices; prorated by the second when added during a month."</p>
            {toggles}
        </section>
    })
}

/// The summary: the total, the commitment picker and its advice, the share link.
#[component]
fn Summary(page: Page) -> impl IntoView {
    let eval = page.eval;
    let state = page.state;
    let currency = page.currency();
    let total_text =
        move || eval.with(|e| e.bill.as_ref().map_or_else(|| "—".to_owned(), |b| money(currency, b.total)));
    let total_amount =
        move || eval.with(|e| e.bill.as_ref().map(|b| b.total.to_string()).unwrap_or_default());
    let subtotal = move || eval.with(|e| e.bill.as_ref().map(|b| b.subtotal));
    let discount = move || eval.with(|e| e.bill.as_ref().map(|b| b.discount).filter(|d| !d.is_zero()));
    let query = move || state.with(PageState::to_query);
    let share = move || {
        let q = query();
        if q.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{q}")
        }
    };
    view! {
        <aside class="summary" id="summary" aria-labelledby="summary-title">
            <div class="total-box">
                <h2 id="summary-title">"Your monthly estimate"</h2>
                <output id="total" class="total" data-amount=total_amount aria-live="polite">{total_text}</output>
                <dl class="breakdown">
                    <div><dt>"Usage at list price"</dt><dd id="subtotal">{move || subtotal().map(|s| money(currency, s))}</dd></div>
                    <div hidden=move || discount().is_none()>
                        <dt>"Commitment discount"</dt>
                        <dd id="discount">{move || discount().map(|d| money(currency, d))}</dd>
                    </div>
                </dl>
                <button type="submit" class="update no-js-only">"Update the estimate"</button>
            </div>
            <CommitmentPicker page=page.clone()/>
            <div class="share">
                <h3>"Share this estimate"</h3>
                <a id="share-link" href=share>"Link to this estimate"</a>
                <p class="note">"The link carries your usage, add-ons, caps and commitment."</p>
            </div>
        </aside>
    }
}

/// The commitment picker and the advice.
#[component]
fn CommitmentPicker(page: Page) -> impl IntoView {
    let book = page.book.clone();
    let offer = book.commitment().cloned()?;
    let currency = page.currency();
    let (eval, state) = (page.eval, page.state);
    let raw = Memo::new(move |_| state.with(|s| s.commitment.clone()));
    let initial_raw = raw.get_untracked();
    let on_input = move |ev| {
        let value = event_target_value(&ev);
        state.update(|s| s.commitment = value);
    };
    let error = field_error(eval, Field::Commitment);
    let subtotal = move || eval.with(|e| e.bill.as_ref().map_or(Decimal::ZERO, |b| b.subtotal));
    let twelve_times = {
        let minimum = offer.minimum_credit;
        move || (subtotal() * Decimal::from(12)).max(minimum).to_string()
    };
    let set_credit = move |credit: String| {
        move |ev: leptos::ev::MouseEvent| {
            ev.prevent_default();
            let credit = credit.clone();
            state.update(|s| s.commitment = credit);
        }
    };
    let summary = move || {
        eval.with(|e| {
            let c = e.bill.as_ref()?.commitment.as_ref()?;
            let lasts = c.credit_lasts_months.map_or_else(
                || "at this estimate the credit is never used up".to_owned(),
                |m| format!("at this estimate it lasts {} months", m.normalize()),
            );
            Some(view! {
                <div class="terms" id="commitment-terms">
                    <p><strong>{percent(c.discount_rate)}" off"</strong>{format!(" · you pay {} up front for {} of credit, released monthly", money(currency, c.price), money(currency, c.yearly_credit))}</p>
                    <p>{format!("This estimate effectively costs {} a month ({} at list); {lasts}.", money(currency, c.effective_total), money(currency, c.list_total))}</p>
                </div>
            })
        })
    };
    let advice = {
        let offer = offer.clone();
        move || {
            let estimate = subtotal();
            let advice = commitment_advice(&offer, currency, estimate).ok()?;
            let none = advice.no_commitment.twelve_month_cost;
            let body = match &advice.best {
                AdviceOption { yearly_credit: Some(credit), .. } => {
                    let b = &advice.best;
                    let value = credit.to_string();
                    view! {
                        <p>{format!("For {} a month, the cheapest year is a {} credit ({} off) for {}: twelve months cost {} instead of {} — you save {}.",
                            money(currency, estimate), money(currency, *credit), percent(b.discount_rate), money(currency, b.price),
                            money(currency, b.twelve_month_cost), money(currency, none), money(currency, b.saving))}</p>
                        <button type="submit" class="secondary" name="commitment" value=value.clone() id="use-advice" on:click=set_credit(value)>
                            {format!("Use the {} credit", money(currency, *credit))}
                        </button>
                    }
                    .into_any()
                }
                AdviceOption { yearly_credit: None, .. } => view! {
                    <p>{format!("For {} a month, paying as you go is cheapest: twelve months cost {}; the smallest credit costs more than it saves.",
                        money(currency, estimate), money(currency, none))}</p>
                }
                .into_any(),
            };
            Some(body)
        }
    };
    let brackets = offer
        .brackets
        .clone()
        .into_iter()
        .map(|b| {
            let from = b.credit_from;
            let active = move || {
                eval.with(|e| {
                    e.bill.as_ref().and_then(|b| b.commitment.as_ref()).is_some_and(|c| c.discount_rate == b.discount && c.yearly_credit >= from)
                })
            };
            view! {
                <li class:active=active>{format!("from {}: {} off", money(currency, from), percent(b.discount))}</li>
            }
        })
        .collect_view();
    let twelve_label =
        move || format!("12 × my estimate ({})", money(currency, twelve_times().parse().unwrap_or_default()));
    Some(view! {
        <fieldset class="commitment">
            <legend>"Commit for a year, save up to " {offer.brackets.last().map(|b| percent(b.discount))}</legend>
            <p class="note">{format!("Prepay a yearly credit of at least {}; its size sets your discount. Usage is paid from the credit, anything past it at list price.", money(currency, offer.minimum_credit))}</p>
            <ul class="brackets">{brackets}</ul>
            <label for="commitment">"Yearly credit"</label>
            <input id="commitment" class="number" type="text" inputmode="decimal" autocomplete="off" name="commitment"
                placeholder="no commitment" value=initial_raw prop:value=raw on:input=on_input aria-describedby="commitment-error"/>
            <p class="error" id="commitment-error" role="alert">{error}</p>
            <div class="presets">
                <button type="submit" class="secondary" id="commit-12x" name="commitment" value=twelve_times
                    on:click=move |ev: leptos::ev::MouseEvent| { ev.prevent_default(); let v = twelve_times(); state.update(|s| s.commitment = v); }>
                    {twelve_label}
                </button>
                <button type="submit" class="secondary" id="commit-none" name="commitment" value="" on:click=set_credit(String::new())>"No commitment"</button>
            </div>
            {summary}
            <div class="advice" id="advice">
                <h3>"Our advice"</h3>
                {advice}
            </div>
        </fieldset>
    })
}
