//! Credentials and idempotency records: who a key belongs to, new keys, and the records that make a POST with an
//! `Idempotency-Key` answer once (kept a day, then purged).

use super::service::{Outcome, Service};
use crate::secret::{hash_secret, hex, new_secret};
use crate::store::{Idempotent, IDEMPOTENCY_KEEP_MICROS};
use crate::time::micros;

impl Service {
    /// The customer a key's hash (hex) belongs to.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn key_owner(&self, key_hash: &str) -> Outcome<Option<String>> {
        Ok(self.store.key_owner(key_hash).await?)
    }

    /// A new key for a customer, returned once (only its hash is stored); the customer's previous keys are revoked.
    ///
    /// # Errors
    /// `NotFound` for an unknown customer; storage errors; no randomness.
    pub async fn new_api_key(&self, customer_id: &str) -> Outcome<String> {
        self.customer(customer_id).await?;
        let key = new_secret("tk_").map_err(|e| super::service::Failure::Internal(e.to_string()))?;
        self.store.rotate_key(customer_id, &hex(&hash_secret(&key)), micros(self.now())).await?;
        Ok(key)
    }

    /// Claims an idempotency key for a request (`request_hash`) in `scope`, now.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn claim_idempotent(&self, scope: &str, key: &str, request_hash: &str) -> Outcome<Idempotent> {
        Ok(self.store.claim_idempotent(scope, key, request_hash, micros(self.now())).await?)
    }

    /// Stores the answer of a claimed key.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn finish_idempotent(&self, scope: &str, key: &str, status: i64, body: &str) -> Outcome<()> {
        Ok(self.store.finish_idempotent(scope, key, status, body).await?)
    }

    /// Releases a claimed key whose request did not run (refused) or failed: nothing of it stays.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn release_idempotent(&self, scope: &str, key: &str) -> Outcome<()> {
        Ok(self.store.release_idempotent(scope, key).await?)
    }

    /// Deletes the idempotency records older than a day; how many.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_idempotent(&self) -> Outcome<u64> {
        Ok(self.store.purge_idempotent(micros(self.now()) - IDEMPOTENCY_KEEP_MICROS).await?)
    }

    /// Closes the store's connections (after the last request).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn ping(&self) -> Outcome<()> {
        Ok(self.store.ping().await?)
    }
}
