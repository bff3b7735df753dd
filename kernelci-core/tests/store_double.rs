//! The store conformance suite against the naive reference store, through
//! `Arc<dyn Store>` (which also proves the trait is object-safe).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;

use kernelci_core::store::Store;
use kernelci_core::testing::{conformance, NaiveStore};

#[tokio::test]
async fn naive_store_passes_the_conformance_suite() {
    let store: Arc<dyn Store> = Arc::new(NaiveStore::new());
    conformance::run_all(store.as_ref()).await;
}

#[tokio::test]
async fn each_check_also_passes_on_a_fresh_store() {
    conformance::nodes(&NaiveStore::new()).await;
    conformance::events(&NaiveStore::new()).await;
    conformance::subscribers_and_counters(&NaiveStore::new()).await;
    conformance::users_and_groups(&NaiveStore::new()).await;
    conformance::tokens_and_kv(&NaiveStore::new()).await;
    conformance::telemetry(&NaiveStore::new()).await;
    conformance::queues(&NaiveStore::new()).await;
}

#[tokio::test]
async fn naive_store_exports_and_imports_every_record() {
    conformance::export_import(&NaiveStore::new(), &NaiveStore::new()).await;
}
