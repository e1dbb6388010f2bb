//! `GET /openapi.json`: the OpenAPI 3.1 document of the service, built from [`OPERATIONS`] (`routes.rs`), the
//! table of every route the router serves and who may call it. A test probes every path of the table with every
//! method, so a route missing from either the table or the router fails it; another probes every route with five
//! credentials against the table's access.
//!
//! Why not utoipa's derives: the bill, the request and the price book are billing-core types, and billing-core
//! stays free of anything but its pricing dependencies (it builds for wasm); their schemas are written here, once,
//! beside the operations that use them. Patterns are ECMA-262 (no look-around, no possessive quantifiers).

use serde_json::{json, Value};

pub use super::routes::{Access, Operation, OPERATIONS};

fn error_responses(op: &Operation) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    if op.body.is_some() {
        out.extend([
            (400, "malformed body"),
            (413, "the body is too large"),
            (415, "not the body's media type"),
        ]);
    }
    if op.access != Access::Public {
        out.push((401, "no or unknown credentials"));
        out.push((403, "a credential that may not do this"));
    }
    if op.path.contains("{id}") {
        out.push((404, "no such customer, invoice or run"));
    }
    if op.method == "post" || op.method == "put" || op.method == "patch" {
        out.push((409, "a conflict: a taken id or version, an invoiced period (`period_closed`), a lifecycle step the invoice's status does not allow (`invalid_state`), or an Idempotency-Key reused with another body or still running"));
    }
    if op.body.is_some() || !op.query.is_empty() || op.path.contains("{id}") {
        out.push((422, "the request breaks a rule: every problem is listed with its path"));
    }
    out
}

/// An operation's responses: its successes (HTML answers as text/html, the others JSON), then its errors.
fn responses_of(op: &Operation) -> serde_json::Map<String, Value> {
    let mut responses = serde_json::Map::new();
    // An HTML answer is text/html; every other, JSON.
    let content = |schema: &str| {
        let kind = if schema == "Html" { "text/html" } else { "application/json" };
        json!({kind: {"schema": {"$ref": format!("#/components/schemas/{schema}")}}})
    };
    responses.insert(op.ok.0.to_string(), json!({"description": "success", "content": content(op.ok.1)}));
    for (status, schema, when) in op.also {
        responses.insert(status.to_string(), json!({"description": when, "content": content(schema)}));
    }
    for (status, description) in error_responses(op) {
        if responses.contains_key(&status.to_string()) {
            continue;
        }
        responses.insert(
            status.to_string(),
            json!({"$ref": format!("#/components/responses/Error{status}"), "description": description}),
        );
    }
    responses
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let responses = responses_of(op);
        let mut parameters: Vec<Value> = Vec::new();
        if op.path.contains("{id}") {
            let schema = if op.path.starts_with("/billing/sessions/") { "LinkToken" } else { "CustomerId" };
            parameters.push(json!({"name": "id", "in": "path", "required": true, "schema": {"$ref": format!("#/components/schemas/{schema}")}}));
        }
        for (name, schema) in op.query {
            parameters.push(json!({"name": name, "in": "query", "required": false, "schema": {"$ref": format!("#/components/schemas/{schema}")}}));
        }
        if op.method == "post" {
            parameters.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "The same key and body within 24 hours replays the first response", "schema": {"type": "string", "minLength": 1, "maxLength": 255}}));
        }
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '-', '.'], "_")),
            "parameters": parameters,
            "responses": responses,
        });
        if op.path == "/billing/invoices/{id}" {
            operation["responses"]["200"]["content"]["text/csv"] =
                json!({"schema": {"type": "string", "description": "one row per line and tier slice"}});
        }
        if op.path == "/v1/invoices/{id}" {
            operation["responses"]["200"]["content"]["text/csv"] =
                json!({"schema": {"type": "string", "description": "one row per line and tier slice"}});
            operation["responses"]["200"]["content"]["text/html"] =
                json!({"schema": {"type": "string", "description": "a printable invoice"}});
        }
        if let Some(body) = op.body {
            let kind =
                if body == "CapForm" { "application/x-www-form-urlencoded" } else { "application/json" };
            operation["requestBody"] = json!({"required": true, "content": {kind: {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        operation["security"] = match op.access {
            Access::Public => json!([]),
            Access::Portal => json!([{"portal": []}]),
            _ => json!([{"bearer": []}]),
        };
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    let mut responses = serde_json::Map::new();
    for status in [400, 401, 403, 404, 409, 413, 415, 422] {
        responses.insert(
            format!("Error{status}"),
            json!({"description": format!("HTTP {status}"), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tally", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Usage-based billing, exact to the cent: customers, metered usage, spend caps, quotes, commitments, invoices. Decimals are strings."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The admin token, or a customer's API key"},
                "portal": {"type": "apiKey", "in": "cookie", "name": "tally_portal", "description": "A billing-portal session, started by opening its link"}},
            "responses": responses,
            "schemas": schemas(),
        },
    })
}

fn decimal(description: &str) -> Value {
    json!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$", "description": description})
}

fn signed_decimal(description: &str) -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": description})
}

fn page_of(item: &str) -> Value {
    json!({"type": "object", "required": ["data", "next_cursor"], "properties": {
        "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        "next_cursor": {"type": ["string", "null"]}}})
}

/// Schemas used by several others: quantities, amounts, instants, keys, the bill and its parts, customers, usage.
#[derive(Debug)]
struct Parts {
    quantity: Value,
    amount_in: Value,
    instant: Value,
    key: Value,
    tier_slice: Value,
    line: Value,
    spend_limit: Value,
    bill: Value,
    customer: Value,
    event: Value,
    report: Value,
}

fn parts() -> Parts {
    let quantity = json!({"oneOf": [{"type": "integer", "minimum": 0, "maximum": 1_000_000_000_000_u64},
                                    {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,6})?$"}],
                          "description": "At most 10^12 and 6 decimal places: a JSON integer or a decimal string"});
    let amount_in = json!({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}]});
    let instant = json!({"type": "string", "format": "date-time", "description": "RFC 3339"});
    let key = json!({"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$"});
    let tier_slice = json!({"type": "object", "required": ["tier", "from", "units", "unit_amount", "flat_amount", "exact_amount", "amount"], "properties": {
        "tier": {"type": "integer", "minimum": 1}, "from": decimal("tier start"), "up_to": {"oneOf": [decimal("inclusive bound"), {"type": "null"}]},
        "units": decimal("units in the tier"), "unit_amount": decimal("price per unit"), "flat_amount": decimal("flat amount"),
        "exact_amount": signed_decimal("exact"), "amount": signed_decimal("rounded")}});
    let line = json!({"type": "object", "required": ["key", "name", "kind", "exact_amount", "amount"], "properties": {
        "key": {"type": "string"}, "name": {"type": "string"},
        "kind": {"enum": ["product", "addon", "platform_addon", "proration", "spend_limit", "commitment_discount", "prepaid_credit"]},
        "product": {"type": "string"}, "meter": {"type": "string"}, "quantity": decimal("quantity priced"), "unit": {"type": "string"},
        "exact_amount": signed_decimal("the exact amount"), "amount": signed_decimal("at the currency's minor unit"),
        "tiers": {"type": "array", "items": {"$ref": "#/components/schemas/TierSlice"}}, "note": {"type": "string"}}});
    let spend_limit = json!({"type": "object", "required": ["product", "limit", "list_amount", "net_exact_amount", "reached", "alerts", "meters"], "properties": {
        "product": {"type": "string"}, "limit": decimal("whole currency units"), "list_amount": decimal("billed at list price"),
        "net_exact_amount": decimal("after the discount, never above the limit"), "reached": {"type": "boolean"},
        "alerts": {"type": "array", "items": decimal("threshold")},
        "meters": {"type": "array", "items": {"type": "object", "required": ["meter", "offered", "billable", "dropped"], "properties": {
            "meter": {"type": "string"}, "offered": decimal("usage"), "billable": decimal("usage the cap pays for"), "dropped": decimal("usage past the cap")}}}}});
    let bill = json!({"type": "object", "required": ["currency", "lines", "subtotal", "discount", "total", "credit_applied", "amount_due"], "properties": {
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "price_book_version": {"type": "string"},
        "period": {"$ref": "#/components/schemas/Period"},
        "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
        "subtotal": signed_decimal("Σ charge lines"), "discount": signed_decimal("Σ discount lines"), "total": signed_decimal("subtotal + discount"),
        "credit_applied": signed_decimal("Σ prepaid-credit lines"), "amount_due": signed_decimal("total + credit"),
        "commitment": {"type": "object", "properties": {"yearly_credit": decimal("face value"), "discount_rate": decimal("0.20 = 20 %"), "price": decimal("price paid"),
            "monthly_release": {"type": "array", "items": decimal("released")}, "list_total": decimal("list"), "effective_total": decimal("after discount"),
            "credit_lasts_months": {"oneOf": [decimal("months"), {"type": "null"}]}}},
        "spend_limits": {"type": "array", "items": {"$ref": "#/components/schemas/SpendLimit"}}}});
    let customer = json!({"type": "object", "required": ["id", "name", "billing_anchor", "addons", "created_at", "updated_at"], "properties": {
        "id": {"$ref": "#/components/schemas/CustomerId"}, "name": {"type": "string"}, "billing_anchor": instant.clone(),
        "addons": {"type": "array", "items": key.clone()}, "created_at": instant.clone(), "updated_at": instant.clone()}});
    let event = json!({"type": "object", "required": ["id", "customer_id", "meter", "quantity", "timestamp"], "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 256}, "customer_id": {"$ref": "#/components/schemas/CustomerId"},
        "meter": {"type": "string"}, "quantity": quantity.clone(), "timestamp": instant.clone()}});
    let report = json!({"type": "object", "required": ["customer_id", "meter", "value", "as_of"], "properties": {
        "customer_id": {"$ref": "#/components/schemas/CustomerId"}, "meter": {"type": "string"}, "value": quantity.clone(), "as_of": instant.clone()}});
    Parts { quantity, amount_in, instant, key, tier_slice, line, spend_limit, bill, customer, event, report }
}

/// The component schemas: the shared ones, then the service's.
fn schemas() -> Value {
    let p = parts();
    let mut all = core_schemas(&p);
    for more in [service_schemas(&p), portal_schemas(), webhook_schemas(), preview_schemas()] {
        if let (Value::Object(all), Value::Object(more)) = (&mut all, more) {
            all.extend(more);
        }
    }
    all
}

/// A price preview's request and report (`app::Preview`).
fn preview_schemas() -> Value {
    let amount = signed_decimal("at the currency's minor unit");
    let or_null = |v: &Value| json!({"oneOf": [v.clone(), {"type": "null"}]});
    let percent = or_null(&signed_decimal("delta / current × 100, 2 places"));
    let customer = json!({"type": "object", "required": ["customer_id", "invoice_id", "current_total", "draft_total", "delta", "delta_percent", "products", "problem"], "properties": {
        "customer_id": {"type": "string"}, "invoice_id": {"type": ["string", "null"]}, "current_total": amount.clone(),
        "draft_total": or_null(&amount), "delta": or_null(&amount), "delta_percent": percent,
        "products": {"type": "array", "items": {"type": "object", "required": ["product", "current", "draft", "delta", "cap_binds"], "properties": {
            "product": {"type": "string"}, "current": amount.clone(), "draft": amount.clone(), "delta": amount.clone(),
            "cap_binds": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["current", "draft"], "properties": {"current": {"type": "boolean"}, "draft": {"type": "boolean"}}}]}}}},
        "problem": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"enum": ["meter_removed", "addon_removed", "product_removed", "cap_out_of_bounds", "commitment_unavailable", "currency_changed", "overflow", "unpriceable", "current_unpriced"]},
            "message": {"type": "string"}}}]}}});
    let count = json!({"type": "integer", "minimum": 0});
    let percentile = or_null(&signed_decimal("a customer's delta_percent"));
    json!({
        "PreviewRequest": {"type": "object", "required": ["price_book"], "additionalProperties": false, "properties": {
            "price_book": {"$ref": "#/components/schemas/PriceBook"},
            "period": {"type": ["string", "null"], "pattern": "^([0-9]{4}-[0-9]{2}|open)$", "description": "a month (the invoices whose period starts in it; default: the latest month with invoices) or `open`"},
            "top": {"type": ["integer", "null"], "minimum": 0, "maximum": crate::app::MAX_TOP}}},
        "PreviewCustomer": customer,
        "Preview": {"type": "object", "required": ["period", "price_book_version", "currency", "summary", "customers", "top_increases", "top_decreases"], "properties": {
            "period": {"$ref": "#/components/schemas/Period"},
            "price_book_version": {"type": "object", "required": ["current", "draft"], "properties": {"current": {"type": ["string", "null"]}, "draft": {"type": ["string", "null"]}}},
            "currency": {"type": "string"},
            "summary": {"type": "object", "required": ["customers", "current_revenue", "draft_revenue", "delta", "more", "less", "same", "unpriceable", "unpriceable_revenue", "delta_percent_percentiles", "caps_changed_outcome", "by_product"], "properties": {
                "customers": count.clone(), "current_revenue": amount.clone(), "draft_revenue": amount.clone(), "delta": amount.clone(),
                "more": count.clone(), "less": count.clone(), "same": count.clone(), "unpriceable": count.clone(), "unpriceable_revenue": amount.clone(),
                "delta_percent_percentiles": {"type": "object", "required": ["p10", "p50", "p90"], "properties": {"p10": percentile.clone(), "p50": percentile.clone(), "p90": percentile}},
                "caps_changed_outcome": count.clone(),
                "by_product": {"type": "array", "items": {"type": "object", "required": ["product", "current", "draft", "delta", "customers_moved"], "properties": {
                    "product": {"type": "string"}, "current": amount.clone(), "draft": amount.clone(), "delta": amount, "customers_moved": count}}}}},
            "customers": {"type": "array", "items": {"$ref": "#/components/schemas/PreviewCustomer"}},
            "top_increases": {"type": "array", "items": {"$ref": "#/components/schemas/PreviewCustomer"}},
            "top_decreases": {"type": "array", "items": {"$ref": "#/components/schemas/PreviewCustomer"}}}}
    })
}

/// Events and webhooks'.
fn webhook_schemas() -> Value {
    let instant = json!({"type": "string", "format": "date-time"});
    let types: Vec<&str> = crate::app::EVENT_TYPES.to_vec();
    let mut subscribable = types.clone();
    subscribable.push("*");
    let url = json!({"type": "string", "maxLength": 2048, "description": "https:// or http://; private, loopback and link-local addresses are refused unless tally runs with --webhook-allow-private"});
    json!({
        "EventType": {"enum": types},
        "Event": {"type": "object", "required": ["id", "type", "created_at", "customer_id", "data"], "properties": {
            "id": {"type": "string"}, "type": {"enum": crate::app::EVENT_TYPES}, "created_at": instant,
            "customer_id": {"type": ["string", "null"]}, "data": {"type": "object"}}},
        "EventPage": page_of("Event"),
        "NewWebhookEndpoint": {"type": "object", "required": ["url", "event_types"], "additionalProperties": false, "properties": {
            "url": url, "event_types": {"type": "array", "minItems": 1, "items": {"enum": subscribable}},
            "description": {"type": ["string", "null"], "maxLength": 500}}},
        "WebhookEndpointChange": {"type": "object", "additionalProperties": false, "properties": {
            "url": url, "event_types": {"type": "array", "minItems": 1, "items": {"enum": subscribable}},
            "enabled": {"type": "boolean"}, "description": {"type": ["string", "null"], "maxLength": 500}}},
        "WebhookEndpoint": {"type": "object", "required": ["id", "url", "event_types", "enabled", "secret", "description", "disabled_reason", "previous_secret_until", "created_at", "updated_at"], "properties": {
            "id": {"type": "string"}, "url": {"type": "string"}, "event_types": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"}, "secret": {"type": ["string", "null"], "description": "whsec_ + base64 of 32 bytes: given at creation and rotation only"},
            "description": {"type": ["string", "null"]}, "disabled_reason": {"type": ["string", "null"]},
            "previous_secret_until": {"type": ["string", "null"], "format": "date-time"}, "created_at": instant, "updated_at": instant}},
        "WebhookEndpointPage": page_of("WebhookEndpoint"),
        "WebhookDelivery": {"type": "object", "required": ["id", "event_id", "endpoint_id", "state", "created_at", "next_attempt_at", "attempts"], "properties": {
            "id": {"type": "string"}, "event_id": {"type": "string"}, "endpoint_id": {"type": "string"},
            "state": {"enum": ["pending", "succeeded", "failed"]}, "created_at": instant,
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "attempts": {"type": "array", "items": {"type": "object", "required": ["n", "at", "status", "latency_ms", "response", "error", "manual"], "properties": {
                "n": {"type": "integer"}, "at": instant, "status": {"type": ["integer", "null"]}, "latency_ms": {"type": "integer"},
                "response": {"type": "string", "description": "the first 1 KB of the answer"}, "error": {"type": ["string", "null"]}, "manual": {"type": "boolean"}}}}}},
        "WebhookDeliveryPage": page_of("WebhookDelivery"),
        "Deleted": {"type": "object", "required": ["id", "deleted"], "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}}
    })
}

/// The billing portal's: sessions, cap changes, the billing page's form and parameters.
fn portal_schemas() -> Value {
    json!({
        "PortalSession": {"type": "object", "required": ["id", "customer_id", "url", "expires_at", "created_at", "created_by", "opened_at", "revoked_at"], "properties": {
            "id": {"type": "string"}, "customer_id": {"type": "string"},
            "url": {"type": ["string", "null"], "description": "the single-use link (given once, at creation)"},
            "expires_at": {"type": "string", "format": "date-time", "description": "the link's expiry until opened, then the session's"},
            "created_at": {"type": "string", "format": "date-time"}, "created_by": {"enum": ["admin", "api_key"]},
            "opened_at": {"type": ["string", "null"], "format": "date-time"}, "revoked_at": {"type": ["string", "null"], "format": "date-time"}}},
        "LimitChange": {"type": "object", "required": ["product", "old", "new", "changed_at", "by"], "properties": {
            "product": {"type": "string"}, "old": {"oneOf": [decimal("whole currency units"), {"type": "null"}]},
            "new": {"oneOf": [decimal("whole currency units"), {"type": "null"}]},
            "changed_at": {"type": "string", "format": "date-time"}, "by": {"enum": ["admin", "api_key", "portal"]}}},
        "LimitHistoryPage": page_of("LimitChange"),
        "CapForm": {"type": "object", "required": ["product", "limit", "csrf"], "properties": {
            "product": {"type": "string"}, "limit": {"type": "string", "description": "a whole amount; empty removes the cap"},
            "csrf": {"type": "string", "description": "the session's CSRF token, from the page's hidden input"}}},
        "PeriodStart": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "the date a period starts"},
        "InvoiceFormat": {"enum": ["html", "csv"]},
        "LinkToken": {"type": "string", "description": "the token of a billing-portal link"}
    })
}

/// Errors, health, the document itself, ids, instants, pages, price books, quotes and advice.
fn core_schemas(p: &Parts) -> Value {
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object", "required": ["path", "message"], "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}}}}},
        "Html": {"type": "string", "description": "an HTML document"},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "unavailable"]}}},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "paths"], "properties": {"openapi": {"type": "string"}, "paths": {"type": "object"}}},
        "CustomerId": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "Instant": p.instant.clone(),
        "PageLimit": {"type": "string", "pattern": "^([1-9][0-9]?|[1-4][0-9]{2}|500)$", "description": "1 to 500 (default 50)"},
        "PageCursor": {"type": "string", "description": "next_cursor of the previous page"},
        "Period": {"type": "object", "required": ["start", "end"], "properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}},
        "PriceBook": {"type": "object", "required": ["currency", "products"], "description": "A price book (README: The price book)", "properties": {
            "currency": {"type": "string"}, "version": {"type": "string"}, "effective_from": {"type": "string", "format": "date-time"}, "description": {"type": "string"},
            "products": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["key", "name", "unit", "meter"], "properties": {
                "key": p.key.clone(), "name": {"type": "string"}, "unit": {"type": "string"}, "meter": p.key.clone()}}},
            "platform_addons": {"type": "array", "items": {"type": "object", "required": ["key", "name", "monthly_price"], "properties": {"key": p.key.clone(), "name": {"type": "string"}, "monthly_price": p.amount_in.clone()}}},
            "commitment": {"type": "object"}, "spend_limits": {"type": "object"}}},
        "PriceBookVersion": {"type": "object", "required": ["version", "in_force_at", "currency"], "properties": {
            "version": {"type": ["string", "null"]}, "in_force_at": {"type": "string", "format": "date-time"}, "currency": {"type": "string"}}},
        "PriceBookVersionPage": page_of("PriceBookVersion"),
        "PublishPriceBook": {"type": "object", "required": ["price_book"], "additionalProperties": false, "properties": {
            "price_book": {"$ref": "#/components/schemas/PriceBook"}, "in_force_at": {"type": ["string", "null"], "format": "date-time"}}},
        "QuoteRequest": {"type": "object", "required": ["usage"], "additionalProperties": false, "properties": {
            "usage": {"type": "object", "additionalProperties": p.quantity.clone()},
            "addons": {"type": "array", "items": {"oneOf": [p.key.clone(), {"type": "object", "required": ["key"], "additionalProperties": false, "properties": {"key": p.key.clone(), "from": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"}}}]}},
            "limits": {"type": "object", "additionalProperties": p.amount_in.clone()},
            "commitment": {"type": "object", "required": ["yearly_credit"], "additionalProperties": false, "properties": {"yearly_credit": p.amount_in.clone()}},
            "credit_balance": p.amount_in.clone(),
            "period": {"type": "object", "required": ["start", "end"], "additionalProperties": false, "properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}}}},
        "AdviceRequest": {"type": "object", "required": ["monthly_estimate"], "additionalProperties": false, "properties": {
            "monthly_estimate": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}],
                                 "description": "a month's bill total, in whole minor units"}}},
        "AdviceOption": {"type": "object", "required": ["yearly_credit", "discount_rate", "price", "billed_past_credit", "unused_credit", "twelve_month_cost", "saving"], "properties": {
            "yearly_credit": {"oneOf": [decimal("credit bought"), {"type": "null"}]}, "discount_rate": decimal("0.20 = 20 %"),
            "price": decimal("paid up front, rounded"), "billed_past_credit": decimal("usage past the credit, at list"),
            "unused_credit": decimal("credit that expires unused"), "twelve_month_cost": decimal("price + billed past the credit"),
            "saving": signed_decimal("against no commitment")}},
        "CommitmentAdvice": {"type": "object", "required": ["monthly_estimate", "yearly_usage", "no_commitment", "best", "options"], "properties": {
            "monthly_estimate": decimal("the estimate"), "yearly_usage": decimal("12 × the estimate"),
            "no_commitment": {"$ref": "#/components/schemas/AdviceOption"}, "best": {"$ref": "#/components/schemas/AdviceOption"},
            "options": {"type": "array", "items": {"$ref": "#/components/schemas/AdviceOption"}}}}
    })
}

/// The bill and its parts, customers, usage, caps, commitments and credit, invoice runs, invoices.
fn service_schemas(p: &Parts) -> Value {
    json!({
        "TierSlice": p.tier_slice.clone(),
        "Line": p.line.clone(),
        "SpendLimit": p.spend_limit.clone(),
        "Bill": p.bill.clone(),
        "Customer": p.customer.clone(),
        "CustomerPage": page_of("Customer"),
        "NewCustomer": {"type": "object", "required": ["id", "name"], "additionalProperties": false, "properties": {
            "id": {"$ref": "#/components/schemas/CustomerId"}, "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "billing_anchor": {"type": "string", "format": "date-time"}, "addons": {"type": "array", "items": p.key.clone()}}},
        "CustomerCreated": {"type": "object", "required": ["customer", "api_key"], "properties": {
            "customer": {"$ref": "#/components/schemas/Customer"}, "api_key": {"type": ["string", "null"], "description": "shown once; null when the creation is replayed"}}},
        "CustomerChanges": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256}, "addons": {"type": "array", "items": p.key.clone()}}},
        "ApiKey": {"type": "object", "required": ["customer_id", "api_key"], "properties": {"customer_id": {"type": "string"}, "api_key": {"type": ["string", "null"]}}},
        "UsageEvent": p.event.clone(),
        "UsageReport": p.report.clone(),
        "UsageBatch": {"oneOf": [
            {"type": "object", "required": ["events"], "additionalProperties": false, "properties": {"events": {"type": "array", "maxItems": 10000, "items": {"$ref": "#/components/schemas/UsageEvent"}}}},
            {"type": "object", "required": ["reports"], "additionalProperties": false, "properties": {"reports": {"type": "array", "maxItems": 10000, "items": {"$ref": "#/components/schemas/UsageReport"}}}}]},
        "UsageAccepted": {"type": "object", "required": ["accepted", "duplicates", "rejected"], "properties": {
            "accepted": {"type": "integer", "minimum": 0}, "duplicates": {"type": "integer", "minimum": 0},
            "rejected": {"type": "array", "items": {"type": "object", "required": ["index", "code", "message"], "properties": {
                "index": {"type": "integer", "minimum": 0}, "code": {"type": "string"}, "message": {"type": "string"}}}}}},
        "UsageView": {"type": "object", "required": ["customer_id", "period", "usage", "bill", "projected", "caps"], "properties": {
            "customer_id": {"type": "string"}, "period": {"$ref": "#/components/schemas/Period"},
            "usage": {"type": "object", "additionalProperties": decimal("quantity")},
            "bill": {"$ref": "#/components/schemas/Bill"},
            "projected": {"type": "object", "required": ["usage", "bill"], "properties": {"usage": {"type": "object", "additionalProperties": decimal("quantity")}, "bill": {"$ref": "#/components/schemas/Bill"}}},
            "caps": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/SpendLimit"}, {"type": "object", "properties": {
                "cap_reached_at": {"type": ["string", "null"], "format": "date-time"}, "projected_cap_at": {"type": ["string", "null"], "format": "date-time"}}}]}}}},
        "Limits": {"type": "object", "additionalProperties": decimal("whole currency units")},
        "LimitChanges": {"type": "object", "additionalProperties": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+$"}, {"type": "null"}]}},
        "Alert": {"type": "object", "required": ["product", "period_start", "threshold", "detected_at"], "properties": {
            "product": {"type": "string"}, "period_start": {"type": "string", "format": "date-time"}, "threshold": decimal("share of the cap"), "detected_at": {"type": "string", "format": "date-time"}}},
        "AlertPage": page_of("Alert"),
        "NewCommitment": {"type": "object", "required": ["yearly_credit"], "additionalProperties": false, "properties": {
            "yearly_credit": p.amount_in.clone(), "start": {"type": "string", "format": "date-time"}}},
        "Commitment": {"type": "object", "required": ["id", "customer_id", "yearly_credit", "discount_rate", "price", "exact_price", "start", "expires_at", "releases"], "properties": {
            "id": {"type": "string"}, "customer_id": {"type": "string"}, "yearly_credit": decimal("face value"),
            "discount_rate": decimal("0.20 = 20 %"), "price": decimal("price paid, rounded"), "exact_price": decimal("credit × (1 − discount)"),
            "start": {"type": "string", "format": "date-time"}, "expires_at": {"type": "string", "format": "date-time"},
            "releases": {"type": "array", "items": {"type": "object", "required": ["at", "amount"], "properties": {
                "at": {"type": "string", "format": "date-time"}, "amount": decimal("released")}}}}},
        "CreditLedger": {"type": "object", "required": ["customer_id", "at", "balance", "commitments", "entries"], "properties": {
            "customer_id": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "balance": signed_decimal("Σ entries"),
            "commitments": {"type": "array", "items": {"$ref": "#/components/schemas/Commitment"}},
            "entries": {"type": "array", "items": {"type": "object", "required": ["at", "kind", "amount", "commitment_id", "invoice_id"], "properties": {
                "at": {"type": "string", "format": "date-time"}, "kind": {"enum": ["release", "consumption", "void_return", "expiry"]},
                "amount": signed_decimal("signed"), "commitment_id": {"type": "string"}, "invoice_id": {"type": ["string", "null"]}}}}}},
        "NewInvoiceRun": {"type": "object", "additionalProperties": false, "properties": {
            "as_of": {"type": "string", "format": "date-time"}, "issue": {"type": "boolean"}}},
        "InvoiceRun": {"type": "object", "required": ["id", "as_of", "issue", "status", "counts", "failures", "created_at", "finished_at"], "properties": {
            "id": {"type": "string"}, "as_of": {"type": "string", "format": "date-time"}, "issue": {"type": "boolean"},
            "status": {"enum": ["running", "completed"]},
            "counts": {"type": "object", "required": ["eligible", "invoiced", "already_invoiced", "failed"], "properties": {
                "eligible": {"type": "integer", "minimum": 0}, "invoiced": {"type": "integer", "minimum": 0},
                "already_invoiced": {"type": "integer", "minimum": 0}, "failed": {"type": "integer", "minimum": 0}}},
            "failures": {"type": "array", "items": {"type": "object", "required": ["customer_id", "period_start", "reason"], "properties": {
                "customer_id": {"type": "string"}, "period_start": {"type": "string", "format": "date-time"}, "reason": {"type": "string"}}}},
            "created_at": {"type": "string", "format": "date-time"}, "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "seconds": {"type": ["string", "null"], "description": "from creation to completion"}}},
        "InvoiceStatus": {"enum": ["draft", "issued", "paid", "void"]},
        "Invoice": {"type": "object", "required": ["id", "number", "customer_id", "period", "status", "price_book_version", "request", "bill", "total", "amount_due", "created_at", "issued_at", "paid_at", "voided_at"], "properties": {
            "id": {"type": "string"}, "number": {"type": ["string", "null"]}, "customer_id": {"type": "string"},
            "period": {"$ref": "#/components/schemas/Period"}, "status": {"$ref": "#/components/schemas/InvoiceStatus"},
            "price_book_version": {"type": "string"}, "currency": {"type": "string"},
            "request": {"$ref": "#/components/schemas/QuoteRequest"}, "bill": {"$ref": "#/components/schemas/Bill"},
            "total": signed_decimal("the bill's total"), "credit_applied": signed_decimal("paid from credit"), "amount_due": signed_decimal("what remains"),
            "run_id": {"type": ["string", "null"]}, "created_at": {"type": "string", "format": "date-time"},
            "issued_at": {"type": ["string", "null"], "format": "date-time"}, "paid_at": {"type": ["string", "null"], "format": "date-time"},
            "voided_at": {"type": ["string", "null"], "format": "date-time"}}},
        "InvoicePage": page_of("Invoice")
    })
}
