//! `tally` subcommands.
//!
//! Exit codes: 0 on success, 2 on bad input (usage errors, unreadable files, an invalid price book or request),
//! 1 when writing the output fails. Errors are one line on stderr, naming the field at fault; nothing panics.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use billing_core::{compute, Bill, PriceBook, QuoteRequest};
use clap::{Parser, Subcommand, ValueEnum};

mod reprice;

/// tally: usage-based billing and pricing, exact to the cent.
#[derive(Debug, Parser)]
#[command(name = "tally", version, disable_help_subcommand = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Price usage against a price book and print the quote.
    ///
    /// The request is JSON: {"usage": {"<meter>": <quantity>}, "addons": ["<key>"], "limits": {"<product>":
    /// "<whole amount>"}, "commitment": {"yearly_credit": "<amount>"}, "credit_balance": "<amount>",
    /// "period": {"start": "<RFC 3339>", "end": "<RFC 3339>"}}; only `usage` is required.
    Quote {
        /// Price book JSON file (default: the built-in example price book).
        #[arg(long, value_name = "FILE")]
        price_book: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Request JSON file, or `-` for standard input (the default).
        #[arg(value_name = "REQUEST_FILE")]
        request: Option<PathBuf>,
    },
    /// Run the HTTP service: customers, metered usage, spend caps, quotes.
    ///
    /// Creates and migrates the database on start; a new database gets the price book (the built-in one by
    /// default) as its first version. Stops on SIGTERM or Ctrl-C after finishing the requests in flight.
    Serve(ServeArgs),
    /// Webhooks: check a delivery's signature as a receiver must.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Invoices.
    Invoice {
        #[command(subcommand)]
        command: InvoiceCommand,
    },
    /// Create the database if needed and apply the migrations, then exit.
    Migrate {
        /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB.
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tally.db?mode=rwc")]
        database: String,
    },
    /// Try a draft price book on every customer before publishing it: what each would pay, and the whole.
    ///
    /// The invoices of a month (their stored requests: usage, add-ons, caps, commitment) are priced with the
    /// draft; with `--open`, the open periods at their month-end projection. Reads only: it runs beside a live
    /// `tally serve`. Exit 0 with a report (unpriceable customers are listed in it), 2 on bad input.
    Reprice(reprice::RepriceArgs),
    /// Validate a price book and print it in canonical form (the built-in one by default).
    PriceBook {
        /// Price book JSON file (default: the built-in example price book).
        #[arg(long, value_name = "FILE")]
        price_book: Option<PathBuf>,
    },
}

/// `tally serve`'s flags.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TALLY_LISTEN", default_value = "127.0.0.1:3000")]
    listen: String,
    /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tally.db?mode=rwc")]
    database: String,
    /// Price book JSON file for a new database (default: the built-in example price book).
    #[arg(long, value_name = "FILE")]
    price_book: Option<PathBuf>,
    /// The largest request body, in bytes.
    #[arg(long, env = "TALLY_MAX_BODY", default_value_t = 5 * 1024 * 1024)]
    max_body: usize,
    /// Prefix of invoice numbers, given at issue (INV-000001, INV-000002, …).
    #[arg(long, env = "TALLY_INVOICE_PREFIX", default_value = crate::app::DEFAULT_PREFIX)]
    invoice_prefix: String,
    /// The pricing page's site folder, holding the wasm bundle in pkg/ (built by scripts/build-ui; default:
    /// target/site next to the binary, then ./target/site).
    #[arg(long, env = "TALLY_ASSETS", value_name = "DIR")]
    assets: Option<PathBuf>,
    /// The site's public address (https://billing.example.com): billing-portal links start with it, and their
    /// session cookies are Secure when it is https (default: the address each request was made to, over http).
    #[arg(long, env = "TALLY_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// The seller's name, printed on invoices.
    #[arg(long, env = "TALLY_SELLER_NAME", default_value = "tally")]
    seller_name: String,
    /// The seller's postal address, printed on invoices (lines separated by `|`).
    #[arg(long, env = "TALLY_SELLER_ADDRESS", default_value = "")]
    seller_address: String,
    /// Allow webhook endpoints at private, loopback and link-local addresses (refused by default, at
    /// registration and at each delivery).
    #[arg(long, env = "TALLY_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    webhook_allow_private: bool,
    /// A factor on the webhook retry schedule and on the 5 days after which a failing endpoint is disabled
    /// (0.001 turns 5 minutes into 0.3 s: for tests and drills).
    #[arg(long, env = "TALLY_WEBHOOK_RETRY_SCALE", default_value = "1")]
    webhook_retry_scale: String,
    /// Seconds a webhook attempt may take before it counts as failed.
    #[arg(long, env = "TALLY_WEBHOOK_TIMEOUT", default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..=60))]
    webhook_timeout: u16,
    /// Webhook attempts in flight at once in this process (its share of the CPU for deliveries).
    #[arg(long, env = "TALLY_WEBHOOK_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    webhook_concurrency: u16,
}

#[derive(Debug, Subcommand)]
enum InvoiceCommand {
    /// Invoice every customer period that ended at or before `--as-of` and has no invoice yet.
    ///
    /// Exactly once: each invoice, its credit consumption and the period's close commit together, so a run that
    /// is killed and started again, or runs at once in several processes (PostgreSQL), invoices every period once.
    /// Exit 0 when every eligible period is invoiced, 1 when some failed (each listed), 2 on bad input.
    Run {
        /// Invoice periods that ended at or before this instant (RFC 3339; default: now).
        #[arg(long, value_name = "INSTANT")]
        as_of: Option<String>,
        /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST:PORT/DB.
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://tally.db?mode=rwc")]
        database: String,
        /// Issue the invoices at once (numbered), instead of leaving them as drafts.
        #[arg(long)]
        issue: bool,
        /// Concurrent workers in this process.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// Customers invoiced per transaction.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=5000))]
        batch: u16,
        /// Prefix of invoice numbers.
        #[arg(long, env = "TALLY_INVOICE_PREFIX", default_value = crate::app::DEFAULT_PREFIX)]
        invoice_prefix: String,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Verify a webhook: exit 0 when a signature matches and the timestamp is within 5 minutes of now, 1 when not
    /// (one line says which), 2 on bad input. Give the three headers' values and the body (a file, or `-` for
    /// standard input, the default).
    Verify {
        /// The endpoint's signing secret (whsec_…).
        #[arg(long)]
        secret: String,
        /// The `webhook-id` header.
        #[arg(long)]
        id: String,
        /// The `webhook-timestamp` header (Unix seconds).
        #[arg(long)]
        timestamp: String,
        /// The `webhook-signature` header (`v1,<base64>`, several separated by spaces).
        #[arg(long)]
        signature: String,
        /// The body, exactly as received: a file, or `-` for standard input.
        #[arg(value_name = "BODY_FILE")]
        body: Option<PathBuf>,
    },
}

/// Output format of `tally quote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The bill as JSON, amounts as decimal strings.
    Json,
    /// An aligned table for people.
    Table,
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// Bad input: exit 2.
    Input(String),
    /// The output could not be written: exit 1 (a closed pipe is not reported).
    Output(io::Error),
    /// The work was done in part: exit 1.
    Partial(String),
}

/// Runs `tally` with `args`, reading a request from `stdin` when asked, writing to `stdout` and `stderr`.
///
/// This is the whole program; `main.rs` only passes the process's streams, so tests can run it in-process.
pub fn main(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" to clap that go to stdout with success.
            let (out, code): (&mut dyn Write, u8) = if e.use_stderr() { (stderr, 2) } else { (stdout, 0) };
            let _ = write!(out, "{}", e.render());
            return ExitCode::from(code);
        }
    };
    match run(cli, stdin, stdout, stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            let _ = writeln!(stderr, "error: {}", one_line(&message));
            ExitCode::from(2)
        }
        Err(Failure::Partial(message)) => {
            let _ = writeln!(stderr, "error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            let _ = writeln!(stderr, "error: cannot write the output: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(
    cli: Cli,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Failure> {
    match cli.command {
        Command::Invoice {
            command: InvoiceCommand::Run { as_of, database, issue, workers, batch, invoice_prefix },
        } => {
            let as_of = match as_of {
                None => None,
                Some(a) => Some(a.parse::<chrono::DateTime<chrono::Utc>>().map_err(|_| {
                    Failure::Input(format!(
                        "--as-of `{a}` is not an RFC 3339 instant such as 2026-12-01T00:00:00Z"
                    ))
                })?),
            };
            let settings = crate::app::RunSettings {
                workers: usize::from(workers),
                batch: usize::from(batch),
                prefix: invoice_prefix,
            };
            invoice_run(&database, as_of, issue, &settings, stdout, stderr)
        }
        Command::Serve(args) => serve(serve_settings(args)?, stderr),
        Command::Webhook { command } => verify_webhook(command, stdin, stdout),
        Command::Reprice(args) => reprice::reprice(&args, stdout),
        Command::Migrate { database } => runtime()?.block_on(async {
            let store = crate::store::open(&database).await.map_err(|e| Failure::Input(e.to_string()))?;
            store.migrate().await.map_err(|e| Failure::Input(e.to_string()))?;
            store.close().await;
            writeln!(stdout, "migrated {} ({})", redact(&database), store.backend()).map_err(Failure::Output)
        }),
        Command::Quote { price_book, format, request } => {
            let book = load_price_book(price_book.as_ref())?;
            let text = match request.as_deref() {
                None => read_stdin(stdin)?,
                Some(p) if p.as_os_str() == "-" => read_stdin(stdin)?,
                Some(p) => read_file(p, "request file")?,
            };
            let request =
                QuoteRequest::from_json_for(&book, &text).map_err(|e| Failure::Input(e.to_string()))?;
            let bill = compute(&book, &request).map_err(|e| Failure::Input(e.to_string()))?;
            write_bill(stdout, &bill, format)
        }
        Command::PriceBook { price_book } => {
            let book = load_price_book(price_book.as_ref())?;
            let json =
                serde_json::to_string_pretty(&book).map_err(|e| Failure::Output(io::Error::other(e)))?;
            writeln!(stdout, "{json}").map_err(Failure::Output)
        }
    }
}

/// `tally serve`'s settings from its flags.
fn serve_settings(args: ServeArgs) -> Result<crate::server::Settings, Failure> {
    let ServeArgs {
        listen,
        database,
        price_book,
        max_body,
        invoice_prefix,
        assets,
        public_url,
        seller_name,
        seller_address,
        webhook_allow_private,
        webhook_retry_scale,
        webhook_timeout,
        webhook_concurrency,
    } = args;
    let retry_scale = billing_core::wire::parse_decimal(&webhook_retry_scale)
        .ok()
        .filter(|s| !s.is_zero() && *s <= rust_decimal::Decimal::from(1000))
        .ok_or_else(|| {
            Failure::Input(format!(
                "--webhook-retry-scale `{webhook_retry_scale}` is not a decimal above 0 and at most 1000, such as 1 or \
                 0.001"
            ))
        })?;
    let price_book = match price_book {
        Some(p) => Some(load_price_book(Some(&p))?),
        None => None,
    };
    let admin_token = std::env::var("TALLY_ADMIN_TOKEN").ok();
    let settings = crate::server::Settings {
        listen,
        database_url: database,
        price_book,
        max_body,
        admin_token,
        invoice_prefix,
        assets,
        public_url: public_url.filter(|u| !u.is_empty()),
        seller: crate::http::Seller { name: seller_name, address: seller_address.replace('|', "\n") },
        webhooks: crate::app::WebhookSettings {
            allow_private: webhook_allow_private,
            retry_scale,
            timeout: std::time::Duration::from_secs(u64::from(webhook_timeout)),
            concurrency: usize::from(webhook_concurrency),
            ..crate::app::WebhookSettings::default()
        },
    };
    Ok(settings)
}

/// `tally webhook verify`: 0 valid, 1 not (one line says why), 2 bad input.
fn verify_webhook(
    command: WebhookCommand,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let WebhookCommand::Verify { secret, id, timestamp, signature, body } = command;
    let body = match body.as_deref() {
        None => read_stdin_bytes(stdin)?,
        Some(p) if p.as_os_str() == "-" => read_stdin_bytes(stdin)?,
        Some(p) => std::fs::read(p)
            .map_err(|e| Failure::Input(format!("cannot read the body file {}: {e}", p.display())))?,
    };
    let now = chrono::Utc::now().timestamp();
    match crate::signature::verify(&secret, &id, &timestamp, &signature, &body, now) {
        Ok(()) => writeln!(stdout, "valid: the signature matches and the timestamp is current")
            .map_err(Failure::Output),
        Err(crate::signature::Rejection::Malformed(m)) => Err(Failure::Input(m)),
        Err(rejection) => Err(Failure::Partial(format!("invalid: {rejection}"))),
    }
}

fn read_stdin_bytes(stdin: &mut dyn Read) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    stdin.read_to_end(&mut body).map_err(|e| Failure::Input(format!("cannot read standard input: {e}")))?;
    Ok(body)
}

fn write_bill(out: &mut dyn Write, bill: &Bill<'_>, format: Format) -> Result<(), Failure> {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(bill).map_err(|e| Failure::Output(io::Error::other(e)))?
        }
        Format::Table => crate::table::render(bill),
    };
    writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()).map_err(Failure::Output)
}

fn load_price_book(path: Option<&PathBuf>) -> Result<PriceBook, Failure> {
    match path {
        None => PriceBook::default_book(),
        Some(p) => PriceBook::from_json(&read_file(p, "price book")?),
    }
    .map_err(|e| Failure::Input(e.to_string()))
}

fn read_file(path: &std::path::Path, what: &str) -> Result<String, Failure> {
    let cannot = |e: io::Error| Failure::Input(format!("cannot read {what} `{}`: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    read_bounded(file, what).map_err(|e| match e {
        Bounded::Io(e) => cannot(e),
        Bounded::Refused(m) => Failure::Input(m),
    })
}

fn read_stdin(stdin: &mut dyn Read) -> Result<String, Failure> {
    read_bounded(stdin, "request").map_err(|e| match e {
        Bounded::Io(e) => Failure::Input(format!("cannot read the request from standard input: {e}")),
        Bounded::Refused(m) => Failure::Input(m),
    })
}

enum Bounded {
    Io(io::Error),
    Refused(String),
}

/// Reads at most one byte more than [`billing_core::wire::MAX_INPUT_BYTES`]: a larger input is refused without
/// being held in memory, let alone parsed.
fn read_bounded(input: impl Read, what: &str) -> Result<String, Bounded> {
    let limit = billing_core::wire::MAX_INPUT_BYTES;
    let mut bytes = Vec::new();
    input.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(Bounded::Io)?;
    if let Some(m) = billing_core::wire::too_large(what, bytes.len()) {
        return Err(Bounded::Refused(m));
    }
    String::from_utf8(bytes)
        .map_err(|_| Bounded::Io(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Input(format!("cannot start the runtime: {e}")))
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn serve(settings: crate::server::Settings, stderr: &mut dyn Write) -> Result<(), Failure> {
    let level = std::env::var("TALLY_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    let database = redact(&settings.database_url);
    runtime()?.block_on(async {
        let app =
            crate::server::Application::build(settings).await.map_err(|e| Failure::Input(e.to_string()))?;
        let addr = app.local_addr().map_err(|e| Failure::Input(e.to_string()))?;
        let book = app.state().service.book_at(app.state().service.now());
        let _ = writeln!(stderr, "tally listening on http://{addr}");
        let _ = writeln!(stderr, "database: {database} ({})", app.state().service.backend());
        let _ = writeln!(
            stderr,
            "price book in force: {} ({})",
            book.version().unwrap_or("unversioned"),
            book.currency()
        );
        if let Some(token) = &app.generated_admin_token {
            let _ = writeln!(stderr, "admin token (shown once, stored hashed): {token}");
        }
        app.run_until_stopped(crate::server::shutdown_signal())
            .await
            .map_err(|e| Failure::Input(e.to_string()))
    })
}

/// `tally invoice run`: opens (or joins) the run of `as_of`, works on it, prints a summary line.
fn invoice_run(
    database: &str,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    issue: bool,
    settings: &crate::app::RunSettings,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), Failure> {
    use std::sync::Arc;
    let started = std::time::Instant::now();
    let run = runtime()?.block_on(async {
        let store = crate::store::open(database).await.map_err(|e| Failure::Input(e.to_string()))?;
        store.migrate().await.map_err(|e| Failure::Input(e.to_string()))?;
        let clock: Arc<dyn crate::time::Clock> = Arc::new(crate::time::SystemClock);
        let book = PriceBook::default_book().map_err(|e| Failure::Input(e.to_string()))?;
        let service = Arc::new(
            crate::app::Service::start(store.clone(), clock.clone(), &book)
                .await
                .map_err(|e| Failure::Input(e.to_string()))?,
        );
        let as_of = as_of.unwrap_or_else(|| clock.now());
        let (run, created) =
            service.open_run(as_of, issue).await.map_err(|e| Failure::Input(e.to_string()))?;
        let _ = writeln!(
            stderr,
            "{} invoice run {} (as of {}): {} customer periods eligible",
            if created { "started" } else { "joined" },
            run.id,
            as_of.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            run.eligible
        );
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let progress = progress_bar(terminal, run.invoiced, run.eligible);
        let run =
            // The input was good: a run that stops part-way (the database failing) is exit 1, and running it
            // again finishes the job.
            service.work_run(&run, settings, progress).await.map_err(|e| {
                Failure::Partial(format!("the run stopped part-way ({e}); run it again to finish it"))
            })?;
        if terminal {
            eprintln!();
        }
        store.close().await;
        Ok::<_, Failure>(run)
    })?;
    let counts = crate::app::RunCounts::of(&run);
    let seconds = started.elapsed().as_millis();
    let rate = if seconds > 0 {
        i128::from(counts.invoiced) * 1000 / i128::try_from(seconds).unwrap_or(1)
    } else {
        0
    };
    writeln!(
        stdout,
        "invoice run {}: {} eligible, {} invoiced, {} already invoiced, {} failed in {}.{:03} s ({} invoices/s)",
        run.id,
        counts.eligible,
        counts.invoiced,
        counts.already_invoiced,
        counts.failed,
        seconds / 1000,
        seconds % 1000,
        rate
    )
    .map_err(Failure::Output)?;
    if counts.failed > 0 {
        for f in &run.failures {
            let start = chrono::DateTime::from_timestamp_micros(f.period_start)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let _ = writeln!(stderr, "failed: customer {} period {start}: {}", f.customer_id, f.reason);
        }
        return Err(Failure::Partial(format!("{} customer periods could not be invoiced", counts.failed)));
    }
    Ok(())
}

/// What an invoice run reports after each batch: a progress bar on a terminal; nothing when stderr is a file or a
/// pipe.
fn progress_bar(
    terminal: bool,
    already: i64,
    total: i64,
) -> std::sync::Arc<dyn Fn(crate::store::BatchDone) + Send + Sync> {
    use std::sync::atomic::{AtomicI64, Ordering};
    let done = AtomicI64::new(already);
    std::sync::Arc::new(move |batch| {
        let step = i64::try_from(batch.invoiced + batch.failed).unwrap_or(0);
        let n = done.fetch_add(step, Ordering::Relaxed) + step;
        if terminal {
            let count = |v: i64| usize::try_from(v).unwrap_or(0);
            eprint!("\r{}", bar(count(n), count(total)));
        }
    })
}

/// One line of progress for a terminal: `[####....] done/total`, redrawn after a `\r`.
fn bar(done: usize, total: usize) -> String {
    let width = 40;
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(width);
    let bar: String = (0..width).map(|i| if i < filled { '#' } else { '.' }).collect();
    format!("[{bar}] {done}/{total}")
}

/// Error messages go on one line, whatever the underlying error printed.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
