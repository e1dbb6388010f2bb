//! The table of every route the router serves: its method and path, who may call it, its body and its answer.
//! The router's guard enforces the access it gives (`auth.rs`) and `/openapi.json` documents it (`openapi.rs`):
//! one table, so the two cannot disagree.

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The admin token.
    Admin,
    /// The admin token, or the key of the customer in the path.
    AdminOrOwn,
    /// The admin token, or a customer key (for its own customer's data).
    AdminOrKey,
}

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// HTTP method, lowercase.
    pub method: &'static str,
    /// Path, with `{id}` parameters.
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The request body's schema (a component name).
    pub body: Option<&'static str>,
    /// The success status and its body's schema.
    pub ok: (u16, &'static str),
    /// Query parameters: name, schema.
    pub query: &'static [(&'static str, &'static str)],
}

const PAGE: &[(&str, &str)] = &[("limit", "PageLimit"), ("cursor", "PageCursor")];

/// Every operation the router serves.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/",
        summary: "The pricing page (HTML). Its query is the estimate: one parameter per meter, addon=<key> repeated, \
                  limit.<product>=<amount>, commitment=<yearly credit>",
        access: Access::Public,
        body: None,
        ok: (200, "Html"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Whether the database answers",
        access: Access::Public,
        body: None,
        ok: (200, "Health"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        access: Access::Public,
        body: None,
        ok: (200, "OpenApiDocument"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/price-book",
        summary: "The price-book version in force now, in canonical form",
        access: Access::Public,
        body: None,
        ok: (200, "PriceBook"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/price-books",
        summary: "The published price-book versions",
        access: Access::Public,
        body: None,
        ok: (200, "PriceBookVersionPage"),
        query: PAGE,
    },
    Operation {
        method: "post",
        path: "/v1/price-books",
        summary: "Publish a price-book version",
        access: Access::Admin,
        body: Some("PublishPriceBook"),
        ok: (201, "PriceBookVersion"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/quotes",
        summary: "Price a request against the version in force (as `tally quote`)",
        access: Access::Public,
        body: Some("QuoteRequest"),
        ok: (200, "Bill"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/commitment-advice",
        summary: "The yearly credit that makes a monthly estimate cheapest over twelve months, beside no commitment",
        access: Access::Public,
        body: Some("AdviceRequest"),
        ok: (200, "CommitmentAdvice"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/customers",
        summary: "List customers",
        access: Access::Admin,
        body: None,
        ok: (200, "CustomerPage"),
        query: PAGE,
    },
    Operation {
        method: "post",
        path: "/v1/customers",
        summary: "Create a customer and its API key (shown once)",
        access: Access::Admin,
        body: Some("NewCustomer"),
        ok: (201, "CustomerCreated"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/customers/{id}",
        summary: "A customer",
        access: Access::AdminOrOwn,
        body: None,
        ok: (200, "Customer"),
        query: &[],
    },
    Operation {
        method: "patch",
        path: "/v1/customers/{id}",
        summary: "Change a customer's name and add-ons",
        access: Access::Admin,
        body: Some("CustomerChanges"),
        ok: (200, "Customer"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/customers/{id}/api-keys",
        summary: "Issue a new API key; the old one stops working",
        access: Access::Admin,
        body: None,
        ok: (201, "ApiKey"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/customers/{id}/usage",
        summary: "The period containing `at`: usage, bill, projection, caps",
        access: Access::AdminOrOwn,
        body: None,
        ok: (200, "UsageView"),
        query: &[("at", "Instant")],
    },
    Operation {
        method: "get",
        path: "/v1/customers/{id}/limits",
        summary: "The spend caps in force",
        access: Access::AdminOrOwn,
        body: None,
        ok: (200, "Limits"),
        query: &[],
    },
    Operation {
        method: "put",
        path: "/v1/customers/{id}/limits",
        summary: "Set (a whole amount) or remove (null) spend caps; absent products keep theirs",
        access: Access::AdminOrOwn,
        body: Some("LimitChanges"),
        ok: (200, "Limits"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/customers/{id}/alerts",
        summary: "Each cap threshold crossed, once per product and period",
        access: Access::AdminOrOwn,
        body: None,
        ok: (200, "AlertPage"),
        query: PAGE,
    },
    Operation {
        method: "post",
        path: "/v1/usage",
        summary: "Report usage events (deduplicated by id) or absolute counts",
        access: Access::AdminOrKey,
        body: Some("UsageBatch"),
        ok: (200, "UsageAccepted"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/customers/{id}/commitments",
        summary: "Buy a yearly prepaid credit: its bracket, discount, price and monthly releases",
        access: Access::AdminOrOwn,
        body: Some("NewCommitment"),
        ok: (201, "Commitment"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/customers/{id}/credits",
        summary: "The credit ledger at `at` (default now): releases, consumption, returns, expiries, balance",
        access: Access::AdminOrOwn,
        body: None,
        ok: (200, "CreditLedger"),
        query: &[("at", "Instant")],
    },
    Operation {
        method: "post",
        path: "/v1/invoice-runs",
        summary: "Invoice, in the background, every customer period ended by `as_of` without an invoice",
        access: Access::Admin,
        body: Some("NewInvoiceRun"),
        ok: (202, "InvoiceRun"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/invoice-runs/{id}",
        summary: "An invoice run: status, counts, failures, timings",
        access: Access::Admin,
        body: None,
        ok: (200, "InvoiceRun"),
        query: &[],
    },
    Operation {
        method: "get",
        path: "/v1/invoices",
        summary: "List invoices (a customer key sees its own)",
        access: Access::AdminOrKey,
        body: None,
        ok: (200, "InvoicePage"),
        query: &[
            ("limit", "PageLimit"),
            ("cursor", "PageCursor"),
            ("customer_id", "CustomerId"),
            ("period_start", "Instant"),
            ("status", "InvoiceStatus"),
        ],
    },
    Operation {
        method: "get",
        path: "/v1/invoices/{id}",
        summary: "An invoice: JSON, or CSV (`Accept: text/csv`, a row per line and tier slice), or HTML (`Accept: text/html`)",
        access: Access::AdminOrKey,
        body: None,
        ok: (200, "Invoice"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/invoices/{id}/issue",
        summary: "Issue a draft: it gets the next number and never changes again",
        access: Access::Admin,
        body: None,
        ok: (200, "Invoice"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/invoices/{id}/pay",
        summary: "Mark an issued invoice paid",
        access: Access::Admin,
        body: None,
        ok: (200, "Invoice"),
        query: &[],
    },
    Operation {
        method: "post",
        path: "/v1/invoices/{id}/void",
        summary: "Void a draft or an unpaid issued invoice; its consumed credit returns to the ledger",
        access: Access::Admin,
        body: None,
        ok: (200, "Invoice"),
        query: &[],
    },
];
