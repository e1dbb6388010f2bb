//! Invoicing over HTTP, in process on SQLite: commitments and the credit ledger, invoice runs, the invoice
//! lifecycle, every view of an invoice, and who may do what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{code, App, ADMIN};
use rust_decimal::Decimal;
use serde_json::{json, Value};

fn d(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

async fn usage(app: &App, customer: &str, meter: &str, quantity: u64, at: &str, id: &str) -> Value {
    let (status, body) = app
        .post(
            "/v1/usage",
            Some(ADMIN),
            json!({"events": [{"id": id, "customer_id": customer, "meter": meter, "quantity": quantity, "timestamp": at}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn invoices(app: &App, query: &str, token: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/invoices{query}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_run_invoices_every_ended_period_once_at_the_price_of_a_quote() {
    let app = App::new().await;
    app.customer("acme").await;
    app.customer("idle").await;
    // The cap first (set after the usage, it would be pinned at what the period already bills).
    let (status, _) = app
        .call(Method::PUT, "/v1/customers/acme/limits", Some(ADMIN), Some(json!({"session_replay": "10"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    usage(&app, "acme", "events", 2_000_000, "2026-11-05T10:00:00Z", "e1").await;
    usage(&app, "acme", "recordings", 20_000, "2026-11-06T10:00:00Z", "r1").await;

    // Not before the period has ended, and never in the future.
    let (status, body) =
        app.post("/v1/invoice-runs", Some(ADMIN), json!({"as_of": "2026-12-01T00:00:00Z"})).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    app.set_now("2026-12-02T09:00:00Z");

    let done = app.run_invoices("2026-12-01T00:00:00Z", false).await;
    assert_eq!(done["counts"], json!({"eligible": 2, "invoiced": 2, "already_invoiced": 0, "failed": 0}));
    let all = invoices(&app, "", ADMIN).await;
    assert_eq!(all.len(), 2);
    let acme = all.iter().find(|i| i["customer_id"] == "acme").unwrap();
    let idle = all.iter().find(|i| i["customer_id"] == "idle").unwrap();
    assert_eq!(acme["status"], "draft");
    assert_eq!(acme["number"], Value::Null);
    assert_eq!(acme["period"], json!({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}));
    // The invoice is the quote of its own request, to the character; the cap capped it.
    let (status, quote) = app.post("/v1/quotes", None, acme["request"].clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(quote, acme["bill"]);
    assert_eq!(acme["total"], acme["bill"]["total"]);
    assert_eq!(acme["amount_due"], acme["bill"]["amount_due"]);
    let replay = acme["bill"]["spend_limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["product"] == "session_replay")
        .unwrap();
    assert_eq!(replay["reached"], true);
    let replay_net: Decimal = acme["bill"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["product"] == "session_replay")
        .map(|l| d(&l["amount"]))
        .sum();
    assert_eq!(replay_net, Decimal::from(10));
    // A period without usage gets its invoice too: that is what closes it.
    assert_eq!(idle["total"], "0.00");

    // Again: nothing new, everything already invoiced.
    let again = app.run_invoices("2026-12-01T00:00:00Z", false).await;
    assert_eq!(again["counts"], json!({"eligible": 2, "invoiced": 0, "already_invoiced": 2, "failed": 0}));
    assert_eq!(invoices(&app, "", ADMIN).await.len(), 2);

    // Usage for the invoiced period is refused; a retry of an event already counted is still a duplicate; the
    // next period is open.
    let (status, body) = app
        .post(
            "/v1/usage",
            Some(ADMIN),
            json!({"events": [
                {"id": "late", "customer_id": "acme", "meter": "events", "quantity": 5, "timestamp": "2026-11-30T23:00:00Z"},
                {"id": "e1", "customer_id": "acme", "meter": "events", "quantity": 2000000, "timestamp": "2026-11-05T10:00:00Z"},
                {"id": "dec", "customer_id": "acme", "meter": "events", "quantity": 5, "timestamp": "2026-12-01T01:00:00Z"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["accepted"].clone(), body["duplicates"].clone()), (json!(1), json!(1)));
    assert_eq!(
        body["rejected"],
        json!([{"index": 0, "code": "period_closed", "message": "its billing period is already invoiced"}])
    );
    let (_, body) = app
        .post(
            "/v1/usage",
            Some(ADMIN),
            json!({"reports": [{"customer_id": "acme", "meter": "events", "value": 9, "as_of": "2026-11-20T00:00:00Z"}]}),
        )
        .await;
    assert_eq!(body["rejected"][0]["code"], "period_closed");
    // The closed period's usage view shows its invoice, line for line.
    let (_, view) = app.get("/v1/customers/acme/usage?at=2026-11-15T00:00:00Z", Some(ADMIN)).await;
    assert_eq!(view["bill"], acme["bill"]);
    // Ids sort in creation order: a later run's invoices come after.
    let ids: Vec<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("in_") && id.len() == 33), "{ids:?}");
}

#[tokio::test]
async fn an_invoice_moves_draft_issued_paid_or_void_and_never_back() {
    let app = App::new().await;
    app.customer("a").await;
    app.customer("b").await;
    app.customer("c").await;
    usage(&app, "a", "events", 3_000_000, "2026-11-05T10:00:00Z", "e").await;
    app.set_now("2026-12-01T00:00:01Z");
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let all = invoices(&app, "?status=draft", ADMIN).await;
    assert_eq!(all.len(), 3);
    let id = |c: &str| all.iter().find(|i| i["customer_id"] == c).unwrap()["id"].as_str().unwrap().to_owned();
    let (a, b, c) = (id("a"), id("b"), id("c"));
    let step = |id: String, action: &'static str| {
        let app = &app;
        async move { app.call(Method::POST, &format!("/v1/invoices/{id}/{action}"), Some(ADMIN), None).await }
    };
    // Paying a draft is not a step.
    let (status, body) = step(a.clone(), "pay").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_state"));
    // Numbers are given at issue, in order, without gaps.
    let (status, issued) = step(b.clone(), "issue").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((issued["status"].as_str(), issued["number"].as_str()), (Some("issued"), Some("INV-000001")));
    let (_, issued_a) = step(a.clone(), "issue").await;
    assert_eq!(issued_a["number"], "INV-000002");
    let (status, body) = step(a.clone(), "issue").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_state"));
    let (status, paid) = step(a.clone(), "pay").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")));
    assert!(paid["paid_at"].is_string());
    // A paid invoice cannot be voided or paid again; an issued one can be voided, a draft too.
    for action in ["void", "pay", "issue"] {
        let (status, body) = step(a.clone(), action).await;
        assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_state"), "{action}");
    }
    let (status, voided) = step(b.clone(), "void").await;
    assert_eq!(
        (status, voided["status"].as_str(), voided["number"].as_str()),
        (StatusCode::OK, Some("void"), Some("INV-000001"))
    );
    let (status, _) = step(c.clone(), "void").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = step(c.clone(), "issue").await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "invalid_state"));
    // What was issued is what is shown: amounts, request and bill unchanged by every step since.
    let (_, now_a) = app.get(&format!("/v1/invoices/{a}"), Some(ADMIN)).await;
    for field in ["bill", "request", "total", "amount_due", "number", "issued_at", "period"] {
        assert_eq!(now_a[field], issued_a[field], "{field}");
    }
    // No route changes an invoice otherwise.
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let (status, _) = app
            .call(method.clone(), &format!("/v1/invoices/{a}"), Some(ADMIN), Some(json!({"total": "0"})))
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let (status, body) = step("in_nope".into(), "issue").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // Filters.
    assert_eq!(invoices(&app, "?status=paid", ADMIN).await.len(), 1);
    assert_eq!(invoices(&app, "?customer_id=b&status=void", ADMIN).await.len(), 1);
    assert_eq!(invoices(&app, "?period_start=2026-11-01T00:00:00Z", ADMIN).await.len(), 3);
    assert_eq!(invoices(&app, "?period_start=2026-10-01T00:00:00Z", ADMIN).await.len(), 0);
    let (status, body) = app.get("/v1/invoices?status=open", Some(ADMIN)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let (status, body) = app.get("/v1/invoices?period_start=yesterday", Some(ADMIN)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    // Paging: one at a time, every invoice once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app.get(&format!("/v1/invoices?limit=1{cursor}"), Some(ADMIN)).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|i| i["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn a_customer_key_sees_its_own_invoices_and_changes_none() {
    let app = App::new().await;
    let key_a = app.customer("a").await;
    let key_b = app.customer("b").await;
    app.set_now("2026-12-03T00:00:00Z");
    // Runs are the admin's.
    let (status, _) = app.post("/v1/invoice-runs", Some(&key_a), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post("/v1/invoice-runs", None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let mine = invoices(&app, "", &key_a).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["customer_id"], "a");
    let (status, _) = app.get("/v1/invoices?customer_id=b", Some(&key_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let theirs = invoices(&app, "", &key_b).await[0]["id"].as_str().unwrap().to_owned();
    let (status, _) = app.get(&format!("/v1/invoices/{theirs}"), Some(&key_a)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/v1/invoices/{theirs}"), Some(&key_b)).await;
    assert_eq!(status, StatusCode::OK);
    for action in ["issue", "pay", "void"] {
        let (status, _) =
            app.call(Method::POST, &format!("/v1/invoices/{theirs}/{action}"), Some(&key_b), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}");
    }
    let run_id = app.post("/v1/invoice-runs", Some(ADMIN), json!({"as_of": "2026-12-01T00:00:00Z"})).await.1
        ["id"]
        .clone();
    let (status, _) = app.get(&format!("/v1/invoice-runs/{}", run_id.as_str().unwrap()), Some(&key_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app.get("/v1/invoice-runs/run_nope", Some(ADMIN)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = app.post("/v1/invoice-runs", Some(ADMIN), json!({"as_of": "soon"})).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let (status, body) = app.post("/v1/invoice-runs", Some(ADMIN), json!({"when": "now"})).await;
    assert_eq!((status, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    let (status, _) = app.raw(Method::POST, "/v1/invoice-runs", Some(ADMIN), Some("{".into()), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_commitment_pays_three_months_of_invoices_and_the_ledger_balances() {
    let app = App::new().await;
    let key = app.customer("acme").await;
    // Bad commitments first: below the minimum, not a decimal, before the first period, another customer's key.
    for (body, status) in [
        (json!({"yearly_credit": "3332"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"yearly_credit": "lots"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"yearly_credit": 3333.5}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"yearly_credit": "5000", "start": "2026-10-01T00:00:00Z"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"yearly_credit": "5000", "extra": 1}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (got, answer) = app.post("/v1/customers/acme/commitments", Some(ADMIN), body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
    }
    let other = app.customer("other").await;
    let (status, _) =
        app.post("/v1/customers/acme/commitments", Some(&other), json!({"yearly_credit": "5000"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, bought) =
        app.post("/v1/customers/acme/commitments", Some(&key), json!({"yearly_credit": "3333"})).await;
    assert_eq!(status, StatusCode::CREATED, "{bought}");
    assert_eq!((bought["discount_rate"].as_str(), bought["price"].as_str()), (Some("0.10"), Some("2999.70")));
    assert_eq!(bought["start"], "2026-11-01T00:00:00Z");
    assert_eq!(bought["releases"].as_array().unwrap().len(), 12);
    assert_eq!(bought["releases"][0], json!({"at": "2026-11-01T00:00:00Z", "amount": "277.75"}));

    // Three months of usage: 2M events (≈ 50 $ of list a month after the free million… whatever the book says),
    // then a heavy month the credit cannot cover alone.
    usage(&app, "acme", "events", 2_000_000, "2026-11-05T00:00:00Z", "nov").await;
    app.set_now("2026-12-10T00:00:00Z");
    usage(&app, "acme", "events", 20_000_000, "2026-12-05T00:00:00Z", "dec").await;
    app.set_now("2027-01-10T00:00:00Z");
    usage(&app, "acme", "events", 3_000_000, "2027-01-05T00:00:00Z", "jan").await;
    app.set_now("2027-02-02T00:00:00Z");
    let done = app.run_invoices("2027-02-01T00:00:00Z", false).await;
    assert_eq!(done["counts"]["invoiced"], 6, "{done}"); // three months of two customers

    let mut ours = invoices(&app, "?customer_id=acme", ADMIN).await;
    ours.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
    assert_eq!(ours.len(), 3);
    let mut consumed = Decimal::ZERO;
    for (month, invoice) in ours.iter().enumerate() {
        let bill = &invoice["bill"];
        // Priced at list, paid from credit: no discount line, and amount due = total + credit applied.
        assert_eq!(d(&bill["discount"]), Decimal::ZERO);
        assert_eq!(d(&invoice["amount_due"]), d(&invoice["total"]) + d(&invoice["credit_applied"]));
        assert!(d(&invoice["credit_applied"]) <= Decimal::ZERO);
        // Never more credit than released by the period's end, less what earlier invoices used.
        let released = Decimal::new(27775, 2) * Decimal::from(month + 1);
        assert!(consumed - d(&invoice["credit_applied"]) <= released, "month {month}");
        consumed -= d(&invoice["credit_applied"]);
        // Its own request, quoted, is the invoice.
        let (_, quote) = app.post("/v1/quotes", None, invoice["request"].clone()).await;
        assert_eq!(&quote, bill);
    }
    // December used more than its release: the credit ran out and the rest is due.
    assert!(d(&ours[1]["amount_due"]) > Decimal::ZERO);

    let (status, ledger) = app.get("/v1/customers/acme/credits", Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    let entries = ledger["entries"].as_array().unwrap();
    let sum = |kind: &str| -> Decimal {
        entries.iter().filter(|e| e["kind"] == kind).map(|e| d(&e["amount"])).sum()
    };
    // Releases of Nov, Dec, Jan and Feb (on Feb 1) by Feb 2.
    assert_eq!(sum("release"), Decimal::new(27775, 2) * Decimal::from(4));
    assert_eq!(sum("consumption"), -consumed);
    assert_eq!(d(&ledger["balance"]), sum("release") + sum("consumption"));
    assert_eq!(d(&ledger["balance"]), entries.iter().map(|e| d(&e["amount"])).sum::<Decimal>());

    // A closed month's usage view is its invoice, credit line included (not a recomputation with today's ledger).
    let (_, view) = app.get("/v1/customers/acme/usage?at=2026-11-15T00:00:00Z", Some(ADMIN)).await;
    assert_eq!(view["bill"], ours[0]["bill"]);
    // Voiding December returns its credit to the ledger.
    let dec = ours[1]["id"].as_str().unwrap();
    let (status, _) = app.call(Method::POST, &format!("/v1/invoices/{dec}/void"), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = app.get("/v1/customers/acme/credits", Some(ADMIN)).await;
    assert_eq!(d(&after["balance"]), d(&ledger["balance"]) - d(&ours[1]["credit_applied"]));
    // The ledger as it was before the run: two releases, nothing consumed.
    let (_, then) = app.get("/v1/customers/acme/credits?at=2026-12-15T00:00:00Z", Some(ADMIN)).await;
    assert_eq!(
        d(&then["balance"]),
        Decimal::new(27775, 2) * Decimal::from(2) - d(&ours[0]["credit_applied"]).abs()
    );
    // A commitment cannot start in an invoiced period.
    let (status, body) = app
        .post(
            "/v1/customers/acme/commitments",
            Some(ADMIN),
            json!({"yearly_credit": "5000", "start": "2026-12-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "period_closed"));
    // After the term, everything left has expired.
    let (_, expired) = app.get("/v1/customers/acme/credits?at=2027-11-01T00:00:00Z", Some(ADMIN)).await;
    assert_eq!(d(&expired["balance"]), Decimal::ZERO);
    assert!(expired["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "expiry"));
}

#[tokio::test]
async fn an_invoice_reads_as_csv_and_as_printable_html() {
    let app = App::new().await;
    app.customer("acme").await;
    usage(&app, "acme", "events", 2_500_000, "2026-11-05T10:00:00Z", "e").await;
    app.set_now("2026-12-02T00:00:00Z");
    app.run_invoices("2026-12-01T00:00:00Z", true).await;
    let invoice = &invoices(&app, "", ADMIN).await[0];
    assert_eq!(invoice["status"], "issued");
    assert_eq!(invoice["number"], "INV-000001");
    let id = invoice["id"].as_str().unwrap();
    let (status, csv) = app
        .raw(Method::GET, &format!("/v1/invoices/{id}"), Some(ADMIN), None, &[("accept", "text/csv")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap().to_owned();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("invoice_id,number,customer_id"));
    let line_rows = rows.iter().filter(|r| r.split(',').nth(6) == Some("line")).count();
    let tier_rows = rows.iter().filter(|r| r.split(',').nth(6) == Some("tier")).count();
    let bill_lines = invoice["bill"]["lines"].as_array().unwrap();
    assert_eq!(line_rows, bill_lines.len());
    let slices: usize = bill_lines.iter().map(|l| l["tiers"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(tier_rows, slices);
    assert!(slices >= 2, "2.5M events cross a tier boundary");
    assert!(rows
        .iter()
        .any(|r| r.ends_with(&format!("total,,,,,,,,,,,,,{}", invoice["total"].as_str().unwrap()))
            || r.contains(",total,")));
    let (status, html) = app
        .raw(Method::GET, &format!("/v1/invoices/{id}"), Some(ADMIN), None, &[("accept", "text/html")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("INV-000001"));
    assert!(html.contains(invoice["amount_due"].as_str().unwrap()));
}

#[tokio::test]
async fn a_platform_add_on_switched_off_mid_period_is_billed_up_to_then() {
    let app = App::new().await; // 2026-11-20 12:00
    let (status, body) = app
        .post("/v1/customers", Some(ADMIN), json!({"id": "acme", "name": "Acme", "billing_anchor": "2026-11-01T00:00:00Z", "addons": ["boost"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.set_now("2026-11-25T12:00:00Z");
    let (status, changed) =
        app.call(Method::PATCH, "/v1/customers/acme", Some(ADMIN), Some(json!({"addons": []}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["addons"], json!([]));
    // On from the 20th 12:00 to the 25th 12:00: 5 of November's 30 days of $250 = 41.67.
    let (_, view) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
    assert_eq!(view["bill"]["total"], "41.67", "{}", view["bill"]);
    app.set_now("2026-12-02T00:00:00Z");
    app.run_invoices("2026-12-01T00:00:00Z", false).await;
    let invoice = &invoices(&app, "", ADMIN).await[0];
    assert_eq!(invoice["total"], "41.67");
    assert_eq!(
        invoice["request"]["addons"],
        json!([{"key": "boost", "from": "2026-11-20T12:00:00Z", "until": "2026-11-25T12:00:00Z"}])
    );
    let (_, quote) = app.post("/v1/quotes", None, invoice["request"].clone()).await;
    assert_eq!(quote, invoice["bill"]);
    // December: off all month, nothing billed; switched on again on the 10th, prorated from then.
    app.set_now("2026-12-10T00:00:00Z");
    let (status, _) =
        app.call(Method::PATCH, "/v1/customers/acme", Some(ADMIN), Some(json!({"addons": ["boost"]}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, view) = app.get("/v1/customers/acme/usage", Some(ADMIN)).await;
    // 22 of December's 31 days of $250 = 177.42.
    assert_eq!(view["bill"]["total"], "177.42", "{}", view["bill"]);
}
