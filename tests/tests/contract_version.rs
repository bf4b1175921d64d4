//! P5: a plugin carries its contract version; the host refuses what it does
//! not accept, naming both versions, before instantiating anything.

use ledgerbridge::runtime::{ContractError, LoadError};
use ledgerbridge_tests::*;

#[tokio::test]
async fn p5_an_incompatible_contract_version_is_refused_naming_both() {
    let err = runtime()
        .load_file(std::path::Path::new(FUTURE_CONTRACT))
        .await
        .expect_err("a 0.9.0 plugin must be refused");
    match &err {
        LoadError::Contract {
            error: ContractError::Incompatible { found, accepted },
            ..
        } => {
            assert_eq!(found, "0.9.0");
            assert_eq!(accepted, "0.1.0");
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("ledgerbridge:connector@0.9.0")
            && msg.contains("ledgerbridge:connector@0.1.0"),
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
    assert_eq!(p.contract_version, "0.1.0");
    assert_eq!(p.descriptor.name, "scripted");
    let csv = load_csv().await;
    assert_eq!(csv.descriptor.name, "csv");
    assert_eq!(
        csv.contract_version,
        ledgerbridge::runtime::contract::ACCEPTED[0]
    );
}
