//! The Rust reader of LiteLLM price files and `scripts/update_prices.py` convert the same way: both
//! are held to `tests/data/litellm_sample.snapshot.json`, the script's conversion of
//! `tests/data/litellm_sample.json` (checked on the Python side by `scripts/test_update_prices.py`).

use octo_prices::PriceTable;

#[test]
fn a_litellm_file_reads_like_the_snapshot_the_script_makes_of_it() {
    let litellm = PriceTable::parse(include_bytes!("data/litellm_sample.json")).unwrap();
    let snapshot = PriceTable::parse(include_bytes!("data/litellm_sample.snapshot.json")).unwrap();
    assert_eq!(litellm.info().format, "litellm");
    assert_eq!(snapshot.info().format, "octollm");
    assert_eq!(snapshot.info().version.as_deref(), Some("test"));
    assert_eq!(litellm.models(), snapshot.models());
    assert_eq!(litellm.len(), 6);
}
