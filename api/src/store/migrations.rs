//! The migrations, compiled into the binary so `tally` needs no files beside it.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationSource, MigrationType};

/// Migrations compiled into the binary, so `tally` needs no files beside it.
#[derive(Debug)]
pub(super) struct Embedded(pub(super) &'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(super) const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "service", include_str!("../../../migrations/sqlite/0001_service.sql")),
    (2, "invoicing", include_str!("../../../migrations/sqlite/0002_invoicing.sql")),
    (3, "invoice run reads", include_str!("../../../migrations/sqlite/0003_invoice_run_reads.sql")),
    (4, "idempotency expiry", include_str!("../../../migrations/sqlite/0004_idempotency_expiry.sql")),
    (5, "billing portal", include_str!("../../../migrations/sqlite/0005_billing_portal.sql")),
    (6, "webhooks", include_str!("../../../migrations/sqlite/0006_webhooks.sql")),
];
pub(super) const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "service", include_str!("../../../migrations/postgres/0001_service.sql")),
    (2, "invoicing", include_str!("../../../migrations/postgres/0002_invoicing.sql")),
    (3, "invoice run reads", include_str!("../../../migrations/postgres/0003_invoice_run_reads.sql")),
    (4, "idempotency expiry", include_str!("../../../migrations/postgres/0004_idempotency_expiry.sql")),
    (5, "billing portal", include_str!("../../../migrations/postgres/0005_billing_portal.sql")),
    (6, "webhooks", include_str!("../../../migrations/postgres/0006_webhooks.sql")),
];
