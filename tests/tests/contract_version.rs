//! P5: a plugin carries its contract version; the host refuses what it does
//! not accept, naming its own and every accepted version, before
//! instantiating anything. Plugins built for 0.1.0, frozen in
//! `wit/since_v0.1.0/`, still run.

use ledgerbridge::runtime::{ContractError, LoadError};
use ledgerbridge_tests::*;

#[tokio::test]
async fn p5_an_incompatible_contract_version_is_refused_naming_all_accepted() {
    let err = runtime()
        .load_file(std::path::Path::new(FUTURE_CONTRACT))
        .await
        .expect_err("a 0.3.0 plugin must be refused");
    match &err {
        LoadError::Contract {
            error: ContractError::Incompatible { found, accepted },
            ..
        } => {
            assert_eq!(found, "0.3.0");
            assert_eq!(accepted, "0.2.0, 0.1.0");
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("built for contract ledgerbridge:connector@0.3.0")
            && msg.contains(
                "this host accepts ledgerbridge:connector@0.2.0 or ledgerbridge:connector@0.1.0"
            ),
        "{msg}"
    );
}

#[tokio::test]
async fn v1_files_that_are_not_plugins_are_refused_clearly() {
    let rt = runtime();
    let err = rt
        .load(b"not wasm at all".to_vec(), "junk.wasm")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("junk.wasm") && err.to_string().contains("header"),
        "{err}"
    );

    let core = b"\0asm\x01\0\0\0".to_vec();
    let err = rt.load(core, "core.wasm").await.unwrap_err();
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");

    let missing = rt
        .load_file(std::path::Path::new("/nonexistent/p.wasm"))
        .await
        .unwrap_err();
    assert!(matches!(missing, LoadError::Read { .. }), "{missing}");
}

#[tokio::test]
async fn p5_accepted_plugins_report_their_contract_version() {
    let p = load(SCRIPTED).await;
    assert_eq!(p.contract_version, "0.2.0");
    assert_eq!(p.descriptor.name, "scripted");
    // Built from `wit/since_v0.1.0/` alone: described in today's terms,
    // one item per call.
    let legacy = load(LEGACY).await;
    assert_eq!(legacy.contract_version, "0.1.0");
    assert_eq!(legacy.descriptor.name, "legacy");
    assert_eq!(
        (
            legacy.descriptor.limits.lookups_per_call,
            legacy.descriptor.limits.creates_per_call,
            legacy.descriptor.limits.updates_per_call
        ),
        (1, 1, 1)
    );
    let csv = load_csv().await;
    assert_eq!(csv.descriptor.name, "csv");
    assert_eq!(
        csv.contract_version,
        ledgerbridge::runtime::contract::ACCEPTED[0]
    );
}
