//! Golden tests: whole quotes, one concern per case, checked against reviewed snapshots.
//!
//! Each folder of `tests/golden/` holds a `request.json`, optionally a `price-book.json` (the default book
//! otherwise), and `expected.json`: the bill exactly as `tally quote` prints it, or `{"error": "…"}`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the snapshots after an intended change, then review the diff before committing.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use billing_core::{compute, PriceBook, QuoteRequest};

/// Prices the case in `dir` and compares the result with its snapshot.
#[track_caller]
fn check(dir: &Path) {
    let read = |name: &str| fs::read_to_string(dir.join(name));
    let book = match read("price-book.json") {
        Ok(text) => PriceBook::from_json(&text).unwrap(),
        Err(_) => PriceBook::default_book().unwrap(),
    };
    let request = read("request.json").unwrap();
    let actual = match QuoteRequest::from_json_for(&book, &request).and_then(|r| compute(&book, &r)) {
        Ok(bill) => serde_json::to_string_pretty(&bill).unwrap(),
        Err(e) => serde_json::to_string_pretty(&serde_json::json!({"error": e.to_string()})).unwrap(),
    } + "\n";
    let expected_path = dir.join("expected.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!("{} is missing: run with UPDATE_GOLDEN=1 and review it", expected_path.display())
    });
    assert!(expected == actual, "{} differs from its snapshot:\n{actual}", dir.display());
}

#[test]
fn every_golden_case_matches_its_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<_> =
        fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 12, "golden cases went missing");
    for case in &cases {
        check(case);
    }
}
