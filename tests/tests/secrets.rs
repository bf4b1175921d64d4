//! Secrets sealed at rest (issue 13, O2): the store's files hold no
//! credential, client secret or OAuth2 token in clear, a store from before
//! sealing is sealed when opened, keys rotate, and a wrong key is refused
//! by name without a change.

use ledgerbridge::model::OAuth2;
use ledgerbridge::seal::{Keyring, new_key};
use ledgerbridge::store::{Store, StoreOptions, default_key_file};
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use ledgerbridge_sim::quickbooks::{Company, Config, QuickBooksSim};
use ledgerbridge_tests::*;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const T: &str = "acme";
const CLIENT_SECRET: &str = "client-secret-0f-the-app-7c1d";
const CREDENTIAL: &str = "api-key-do-not-leak-52b9e";

/// Every byte of every file of the store (the database, its WAL and
/// shared memory), the key file left out.
fn store_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".seal-key"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn assert_absent(dir: &Path, secrets: &[&str]) {
    for (file, bytes) in store_bytes(dir) {
        for s in secrets {
            assert!(!s.is_empty());
            let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
            assert!(!found, "{file} holds {s:?} in clear");
        }
    }
}

fn options(keys: &str) -> StoreOptions {
    StoreOptions {
        keys: Some(Arc::new(Keyring::parse(keys).unwrap())),
        ..StoreOptions::default()
    }
}

/// O2: a connection's credentials, its app's client secret and the OAuth2
/// tokens the host obtained and rotated while syncing are nowhere in the
/// store's files in clear, and read back whole through the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_the_store_files_hold_no_credential_in_clear() {
    let sim = QuickBooksSim::start(Config::default()).await.unwrap();
    let realm = sim.add_company(Company::demo());
    sim.add_client("app", CLIENT_SECRET);
    let first_refresh = sim.grant("app", &realm);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(&path).unwrap();
    assert!(
        default_key_file(&path).exists(),
        "a key made beside the store"
    );
    let engine = Arc::new(Engine::new(
        store.clone(),
        runtime().clone(),
        RetryPolicy::default(),
        WorkerConfig::default(),
    ));
    engine.add_tenant(T).await.unwrap();
    let mut c = connection("qb", T, "quickbooks", None);
    c.settings = [
        ("realm-id".to_string(), realm.clone()),
        ("api-url".to_string(), sim.api_url()),
    ]
    .into();
    c.allowed_hosts = vec![format!("http://{}", sim.addr())];
    c.mappings.categories = [("office".to_string(), "60".to_string())].into();
    c.mappings.departments.clear();
    c.mappings.vendors = [("v-1".to_string(), "56".to_string())].into();
    c.credentials = [("api-key".to_string(), CREDENTIAL.to_string())].into();
    c.oauth2 = Some(OAuth2 {
        token_url: sim.token_url(),
        client_id: "app".into(),
        client_secret: CLIENT_SECRET.into(),
        refresh_token: Some(first_refresh.clone()),
    });
    engine.put_connection(c).await.unwrap();
    let mut d = doc_json(T, "d1", "approved", "10.00");
    d["lines"][0]["department"] = serde_json::Value::Null;
    import(&engine, json!({"documents": [d]})).await.unwrap();
    settle(&engine).await;
    assert_eq!(sim.bills(&realm).len(), 1, "synced through the grant");
    // What the host holds now: the rotated refresh token and an access token.
    let grant = store.grant("qb").await.unwrap().unwrap();
    let access = grant.access_token.clone().expect("an access token");
    assert_ne!(grant.refresh_token, first_refresh, "rotated");
    assert_eq!(grant.client_secret, CLIENT_SECRET);
    let read = engine.connection("qb").await.unwrap();
    assert_eq!(read.credentials["api-key"], CREDENTIAL);
    drop((engine, store));
    assert_absent(
        dir.path(),
        &[
            CLIENT_SECRET,
            CREDENTIAL,
            &first_refresh,
            &grant.refresh_token,
            &access,
        ],
    );
    // Reopened with its key, all of it reads back.
    let again = Store::open(&path).unwrap();
    let g = again.grant("qb").await.unwrap().unwrap();
    assert_eq!(g.refresh_token, grant.refresh_token);
    assert_eq!(g.access_token.as_deref(), Some(access.as_str()));
    assert_eq!(
        again.connection("qb").await.unwrap().unwrap().credentials["api-key"],
        CREDENTIAL
    );
}

/// O2: a store written before sealing (secrets in clear) is sealed when
/// opened, and reads the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_a_store_from_before_sealing_is_sealed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key = new_key();
    {
        let store = Store::open_with(&path, options(&key)).unwrap();
        store.add_tenant(T).await.unwrap();
        let mut c = connection("c1", T, "csv", Some(dir.path()));
        c.oauth2 = Some(OAuth2 {
            token_url: "https://example.com/token".into(),
            client_id: "app".into(),
            client_secret: "placeholder".into(),
            refresh_token: Some("placeholder".into()),
        });
        store.put_connection(c).await.unwrap();
    }
    // As an earlier version kept them: in clear.
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute(
            "UPDATE connections SET credentials = ?1",
            [format!("{{\"api-key\":\"{CREDENTIAL}\"}}")],
        )
        .unwrap();
        db.execute(
            "UPDATE oauth_grants SET client_secret = ?1, refresh_token = 'old-refresh-token-91ac', access_token = 'old-access-token-3e07'",
            [CLIENT_SECRET],
        )
        .unwrap();
    }
    let store = Store::open_with(&path, options(&key)).unwrap();
    let c = store.connection("c1").await.unwrap().unwrap();
    assert_eq!(c.credentials["api-key"], CREDENTIAL);
    let g = store.grant("c1").await.unwrap().unwrap();
    assert_eq!(g.client_secret, CLIENT_SECRET);
    assert_eq!(g.refresh_token, "old-refresh-token-91ac");
    assert_eq!(g.access_token.as_deref(), Some("old-access-token-3e07"));
    drop(store);
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    drop(db);
    assert_absent(
        dir.path(),
        &[
            CLIENT_SECRET,
            CREDENTIAL,
            "old-refresh-token-91ac",
            "old-access-token-3e07",
        ],
    );
}

/// O2: rotation: the new key first and the old one after it opens the
/// store and reseals every secret under the new key, after which the old
/// key is no longer needed. A store opened without its key is refused,
/// naming the key it needs, and nothing in it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_keys_rotate_and_a_missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (old, new, stranger) = (new_key(), new_key(), new_key());
    let old_id = Keyring::parse(&old).unwrap().current_id().to_string();
    {
        let store = Store::open_with(&path, options(&old)).unwrap();
        store.add_tenant(T).await.unwrap();
        let mut c = connection("c1", T, "csv", Some(dir.path()));
        c.credentials = [("api-key".to_string(), CREDENTIAL.to_string())].into();
        store.put_connection(c).await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = format!(
        "{:#}",
        Store::open_with(&path, options(&stranger))
            .err()
            .expect("the wrong key is refused")
    );
    assert!(
        e.contains(&old_id) && e.contains("LEDGERBRIDGE_SEAL_KEY"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing changed");
    {
        let store = Store::open_with(&path, options(&format!("{new}\n{old}"))).unwrap();
        let c = store.connection("c1").await.unwrap().unwrap();
        assert_eq!(c.credentials["api-key"], CREDENTIAL);
    }
    let store = Store::open_with(&path, options(&new)).unwrap();
    let c = store.connection("c1").await.unwrap().unwrap();
    assert_eq!(
        c.credentials["api-key"], CREDENTIAL,
        "the old key no longer needed"
    );
}

/// O2: a sealed secret copied onto another connection's row does not open
/// there (each is bound to its place): reading that connection fails,
/// naming it, rather than handing it another's credentials; the others
/// read as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_a_secret_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let key = new_key();
    {
        let store = Store::open_with(&path, options(&key)).unwrap();
        store.add_tenant(T).await.unwrap();
        let mut a = connection("a", T, "csv", Some(dir.path()));
        a.credentials = [("api-key".to_string(), CREDENTIAL.to_string())].into();
        store.put_connection(a).await.unwrap();
        store
            .put_connection(connection("b", T, "csv", Some(dir.path())))
            .await
            .unwrap();
    }
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute(
            "UPDATE connections SET credentials = (SELECT credentials FROM connections WHERE id = 'a') WHERE id = 'b'",
            [],
        )
        .unwrap();
    }
    let store = Store::open_with(&path, options(&key)).unwrap();
    let e = format!("{:#}", store.connection("b").await.expect_err("refused"));
    assert!(
        e.contains("does not open") && e.contains("connection b"),
        "{e}"
    );
    let a = store.connection("a").await.unwrap().unwrap();
    assert_eq!(a.credentials["api-key"], CREDENTIAL);
}
