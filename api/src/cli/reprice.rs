//! `tally reprice`: a draft price book tried on every customer of a database, before it is published. The JSON is
//! byte for byte the answer of `POST /v1/price-books/preview` (one type, one serializer); the table is for a
//! terminal, the CSV one row per customer.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use billing_core::PriceBook;
use rust_decimal::Decimal;

use super::{bar, read_file, runtime, Failure};
use crate::app::{CustomerPreview, Preview, PreviewPeriod, Service};
use crate::http::render::field;
use crate::table::group;

/// `tally reprice`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct RepriceArgs {
    /// The draft price book (JSON): validated first, every problem listed.
    #[arg(long, value_name = "FILE")]
    price_book: PathBuf,
    /// The month whose invoices are repriced (those whose period starts in it); default: the latest with invoices.
    #[arg(long, value_name = "YYYY-MM", conflicts_with = "open")]
    period: Option<String>,
    /// Reprice the open periods instead, at their month-end projection, against the book in force.
    #[arg(long)]
    open: bool,
    /// Database URL: sqlite://FILE or postgres://USER@HOST:PORT/DB. It is only read.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tally.db")]
    database: String,
    /// Output: a summary table, the API's JSON, or one CSV row per customer.
    #[arg(long, value_enum, default_value_t = PreviewFormat::Table)]
    format: PreviewFormat,
    /// How many customers to list among the largest increases and decreases.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=1000))]
    top: u16,
}

/// Output format of `tally reprice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum PreviewFormat {
    /// A summary for people: revenue, distribution, per product, the largest movers, the unpriceable.
    Table,
    /// The report as `POST /v1/price-books/preview` answers it.
    Json,
    /// One row per customer.
    Csv,
}

/// Runs `tally reprice`.
pub(super) fn reprice(args: &RepriceArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    let draft = PriceBook::from_json(&read_file(&args.price_book, "price book")?)
        .map_err(|e| Failure::Input(format!("the draft price book: {e}")))?;
    let period = match (&args.period, args.open) {
        (_, true) => PreviewPeriod::Open,
        (Some(month), false) => {
            PreviewPeriod::parse("--period", month).map_err(|e| Failure::Input(e.to_string()))?
        }
        (None, false) => PreviewPeriod::Month(None),
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let preview = runtime()?.block_on(async {
        let store = crate::store::open(&args.database).await.map_err(|e| Failure::Input(e.to_string()))?;
        let clock: Arc<dyn crate::time::Clock> = Arc::new(crate::time::SystemClock);
        let service =
            Arc::new(Service::reader(store.clone(), clock).await.map_err(|e| Failure::Input(e.to_string()))?);
        let progress: crate::app::PreviewProgress = Arc::new(move |done, total| {
            if terminal {
                eprint!("\r{} customers", bar(done, total));
            }
        });
        let preview = service.reprice(Arc::new(draft), period, usize::from(args.top), progress).await;
        if terminal {
            eprintln!();
        }
        store.close().await;
        preview.map_err(|e| match e {
            // The input was good: the database failing part-way is exit 1.
            crate::app::Failure::Store(_) | crate::app::Failure::Internal(_) => {
                Failure::Partial(format!("the preview stopped: {e}"))
            }
            e => Failure::Input(e.to_string()),
        })
    })?;
    let out = match args.format {
        PreviewFormat::Json => {
            let mut body =
                serde_json::to_vec(&preview).map_err(|e| Failure::Output(std::io::Error::other(e)))?;
            // The API's bytes exactly when piped; a terminal gets a final newline.
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                body.push(b'\n');
            }
            body
        }
        PreviewFormat::Csv => csv(&preview).into_bytes(),
        PreviewFormat::Table => table(&preview).into_bytes(),
    };
    stdout.write_all(&out).and_then(|()| stdout.flush()).map_err(Failure::Output)
}

/// One row per customer.
fn csv(preview: &Preview) -> String {
    let mut out = String::from(
        "customer_id,invoice_id,current_total,draft_total,delta,delta_percent,products_moved,problem_code,problem_message\n",
    );
    for c in &preview.customers {
        let moved: Vec<&str> = c.products.iter().map(|p| p.product.as_str()).collect();
        let cells = [
            field(&c.customer_id),
            field(c.invoice_id.as_deref().unwrap_or("")),
            field(&c.current_total),
            field(c.draft_total.as_deref().unwrap_or("")),
            field(c.delta.as_deref().unwrap_or("")),
            field(c.delta_percent.as_deref().unwrap_or("")),
            field(&moved.join(" ")),
            field(c.problem.as_ref().map_or("", |p| p.code)),
            field(c.problem.as_ref().map_or("", |p| p.message.as_str())),
        ];
        let _ = writeln!(out, "{}", cells.join(","));
    }
    out
}

/// An amount for people: grouped thousands, a sign on changes.
fn money(text: &str, signed: bool) -> String {
    match text.parse::<Decimal>() {
        Ok(d) if signed && d > Decimal::ZERO => format!("+{}", group(d)),
        Ok(d) => group(d),
        Err(_) => text.to_owned(),
    }
}

fn percent(text: Option<&str>) -> String {
    match text {
        Some(p) if p.starts_with('-') => format!("{p} %"),
        Some(p) => format!("+{p} %"),
        None => "n/a".into(),
    }
}

/// The summary for a terminal.
fn table(p: &Preview) -> String {
    let s = &p.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Price preview: draft {} against {} — periods {} to {}, {}",
        p.price_book_version.draft.as_deref().unwrap_or("(unversioned)"),
        p.price_book_version.current.as_deref().unwrap_or("(no invoices)"),
        p.period.start,
        p.period.end,
        p.currency
    );
    let _ = writeln!(
        out,
        "customers      {} (pay more {}, less {}, the same {}; unpriceable {})",
        s.customers, s.more, s.less, s.same, s.unpriceable
    );
    let _ = writeln!(
        out,
        "revenue        {} → {} ({})",
        money(&s.current_revenue, false),
        money(&s.draft_revenue, false),
        money(&s.delta, true)
    );
    let q = &s.delta_percent_percentiles;
    let _ = writeln!(
        out,
        "change         p10 {}   median {}   p90 {}",
        percent(q.p10.as_deref()),
        percent(q.p50.as_deref()),
        percent(q.p90.as_deref())
    );
    let _ = writeln!(out, "caps           change the outcome for {} customers", s.caps_changed_outcome);
    let _ =
        writeln!(out, "\n{:<28} {:>16} {:>16} {:>14} {:>8}", "product", "current", "draft", "delta", "moved");
    for b in &s.by_product {
        let _ = writeln!(
            out,
            "{:<28} {:>16} {:>16} {:>14} {:>8}",
            b.product,
            money(&b.current, false),
            money(&b.draft, false),
            money(&b.delta, true),
            b.customers_moved
        );
    }
    movers(&mut out, "largest increases", &p.top_increases);
    movers(&mut out, "largest decreases", &p.top_decreases);
    let unpriceable: Vec<&CustomerPreview> = p.customers.iter().filter(|c| c.problem.is_some()).collect();
    if !unpriceable.is_empty() {
        let _ = writeln!(out, "\nunpriceable ({}; all in --format json or csv)", unpriceable.len());
        for c in unpriceable.iter().take(20) {
            if let Some(problem) = &c.problem {
                let _ = writeln!(out, "  {:<24} {:<22} {}", c.customer_id, problem.code, problem.message);
            }
        }
    }
    out
}

fn movers(out: &mut String, title: &str, customers: &[CustomerPreview]) {
    if customers.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    let _ = writeln!(
        out,
        "  {:<24} {:>14} {:>14} {:>12} {:>10}  products",
        "customer", "current", "draft", "delta", "delta %"
    );
    for c in customers {
        let moved: Vec<&str> = c.products.iter().map(|p| p.product.as_str()).collect();
        let _ = writeln!(
            out,
            "  {:<24} {:>14} {:>14} {:>12} {:>10}  {}",
            c.customer_id,
            money(&c.current_total, false),
            money(c.draft_total.as_deref().unwrap_or(""), false),
            money(c.delta.as_deref().unwrap_or(""), true),
            percent(c.delta_percent.as_deref()),
            moved.join(", ")
        );
    }
}
