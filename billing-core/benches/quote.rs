//! Benchmark: one full quote of the default price book (usage on every meter, every add-on) through `compute`,
//! beside a baseline tier walk in `i128` fixed point over the same book and usage, in the same run.
//!
//! Run with `cargo bench -p billing-core --bench quote`. Prints ns per quote for both, and their ratio; exits
//! non-zero if the two disagree on the total (the baseline must price the same thing). Timing is reported, never
//! asserted: targets live in the issue and BENCHMARKS.md, not in tests.

use std::hint::black_box;
use std::time::{Duration, Instant};

use billing_core::{compute, ChargeModel, Currency, PriceBook, Quantity, QuoteRequest, Rounding};
use rust_decimal::Decimal;

/// Usage on every meter of the default book, deep into the tiers.
const REQUEST: &str = r#"{"usage": {
    "events": 180000000, "identified_events": 60000000, "recordings": 420000, "mobile_recordings": 90000,
    "cdp_trigger_events": 25000000, "batch_export_rows": 75000000, "feature_flag_requests": 80000000,
    "survey_responses": 25000, "rows_synced": 1500000000, "exceptions": 12000000, "llm_events": 60000000,
    "logs_gb_ingested": 4200, "logs_gb_retained_30d": 4200, "ai_credits": 90000, "replay_vision_credits": 40000,
    "inbox_prs": 120, "desktop_credits": 70000, "workflow_emails": 150000000, "workflow_dispatches": 150000000
  }, "addons": ["group_analytics"]}"#;

/// Fixed point with 12 decimal places: every unit price of the book is exact in it.
const SCALE: i128 = 1_000_000_000_000;

/// One line of the baseline: its meter's quantity and its tiers as (inclusive bound, price × 10^12).
struct FixedLine {
    quantity: i128,
    tiers: Vec<(i128, i128)>,
}

fn to_fixed(d: Decimal) -> i128 {
    let d = d.normalize();
    d.mantissa() * SCALE / 10_i128.pow(d.scale())
}

fn baseline_lines(book: &PriceBook, request: &QuoteRequest) -> Vec<FixedLine> {
    let mut lines = Vec::new();
    for product in book.products() {
        for (m, _) in product.charges() {
            let ChargeModel::Graduated(schedule) = &m.charge else { panic!("the default book is graduated") };
            let quantity = request.usage.get(&*m.meter).map_or(0, |q| to_fixed(q.value()) / SCALE);
            let tiers = schedule
                .tiers()
                .map(|t| (t.up_to.map_or(i128::MAX, |b| to_fixed(b) / SCALE), to_fixed(t.unit_amount)))
                .collect();
            lines.push(FixedLine { quantity, tiers });
        }
    }
    lines
}

/// The baseline: walk every tier of every line, sum the slices in fixed point, round each line to cents half away
/// from zero, add the lines up. Returns the total in cents.
fn baseline_total(lines: &[FixedLine]) -> i128 {
    let mut total_cents = 0;
    for line in lines {
        let (mut amount, mut start) = (0_i128, 0_i128);
        for &(up_to, price) in &line.tiers {
            if line.quantity <= start {
                break;
            }
            amount += (line.quantity.min(up_to) - start) * price;
            start = up_to;
        }
        let cent = SCALE / 100;
        total_cents += (amount + cent / 2) / cent;
    }
    total_cents
}

/// Runs `f` in batches until `budget` has passed; returns the median ns per call over the batches.
fn measure(budget: Duration, mut f: impl FnMut()) -> u128 {
    let batch: u128 = 2_000;
    for _ in 0..batch {
        f();
    }
    let mut per_call = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        per_call.push(t.elapsed().as_nanos() / batch);
    }
    per_call.sort_unstable();
    per_call[per_call.len() / 2]
}

/// `a / b` with two decimals, in integers (the workspace forbids float arithmetic, benches included).
fn ratio(a: u128, b: u128) -> String {
    let hundredths = a * 100 / b.max(1);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The core's own tier walk, without building a bill: every line's exact price from the precomputed cumulative
/// totals (`ChargeModel::amount`), rounded to cents half away from zero, summed. The same work as the baseline,
/// in `Decimal`.
fn core_total(lines: &[(&ChargeModel, Quantity)], currency: Currency) -> Decimal {
    let mut total = Decimal::ZERO;
    for (charge, q) in lines {
        let exact = charge.amount(*q).expect("prices");
        total += currency.round(exact, Rounding::HalfAwayFromZero);
    }
    total
}

fn main() {
    let book = PriceBook::default_book().expect("the default book is valid");
    let request = QuoteRequest::from_json(REQUEST).expect("the bench request is valid");
    let bill = compute(&book, &request).expect("the bench request prices");
    let lines = baseline_lines(&book, &request);
    let baseline_cents = baseline_total(&lines);
    let cents = book.currency().to_minor_units(bill.total).expect("total in cents");
    if i128::from(cents) != baseline_cents {
        eprintln!("baseline disagrees with compute: {baseline_cents} cents vs {cents} cents");
        std::process::exit(1);
    }
    let core_lines: Vec<(&ChargeModel, Quantity)> = book
        .products()
        .iter()
        .flat_map(|p| p.charges())
        .map(|(m, _)| (&m.charge, request.usage.get(&*m.meter).copied().unwrap_or(Quantity::ZERO)))
        .collect();
    if core_total(&core_lines, book.currency()) != bill.total {
        eprintln!("the core's tier walk disagrees with compute");
        std::process::exit(1);
    }
    let budget = Duration::from_secs(3);
    let core_ns = measure(budget, || {
        black_box(core_total(black_box(&core_lines), book.currency()));
    });
    let quote_ns = measure(budget, || {
        black_box(compute(black_box(&book), black_box(&request)).expect("prices"));
    });
    let baseline_ns = measure(budget, || {
        black_box(baseline_total(black_box(&lines)));
    });
    println!(
        "full quote of the default price book: {} lines, total {} {}",
        bill.lines.len(),
        bill.total,
        bill.currency
    );
    println!("compute (billing-core, Decimal, with tier slices): {quote_ns:>10} ns/quote");
    println!("baseline (i128 fixed-point tier walk, total only): {baseline_ns:>10} ns/quote");
    println!("tier walk (billing-core, Decimal, total only):     {core_ns:>10} ns/quote");
    println!("ratio compute / baseline: {}x", ratio(quote_ns, baseline_ns));
    println!("ratio tier walk / baseline: {}x", ratio(core_ns, baseline_ns));
}
