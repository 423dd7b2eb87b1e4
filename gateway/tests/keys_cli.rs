//! `mft-gateway keys ...` run as a real process against a temporary config.
//!
//! The config names TLS files that do not exist: the keys commands must not
//! load TLS material.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use mft_filters::auth::api_key;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ndata_dir = \"data\"\n\n\
         [backend]\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    Env { dir, config }
}

fn keys(config: &Path, args: &[&str]) -> Output {
    // Run from elsewhere: data_dir must be resolved against the config's folder.
    Command::new(env!("CARGO_BIN_EXE_mft-gateway"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run mft-gateway")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

#[test]
fn create_list_revoke_round_trip() {
    let env = env();
    let created = ok(keys(
        &env.config,
        &[
            "create",
            "--name",
            "ci-bot",
            "--scopes",
            "files:read,files:write",
            "--expires",
            "30",
            "--json",
        ],
    ));
    let text = stdout(&created);
    assert_eq!(text.lines().count(), 1, "exactly one line: {text}");
    assert!(text.starts_with("{\"id\":\""), "id first: {text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    let id = json["id"].as_str().unwrap().to_string();
    let key = json["key"].as_str().unwrap().to_string();
    let parsed = api_key::parse(&key).expect("a well-formed key");
    assert_eq!(parsed.id, id);
    assert_eq!(json["account"], "ci-bot");
    assert_eq!(
        json["scopes"],
        serde_json::json!(["files:read", "files:write"])
    );
    assert!(json["expires_at"].is_string(), "{json}");
    assert!(
        env.dir.path().join("data/keys.sqlite").is_file(),
        "store under data_dir next to the config"
    );

    let listed = ok(keys(&env.config, &["list", "--json"]));
    let list_text = stdout(&listed);
    assert!(!list_text.contains(&key), "list shows no secret");
    let list: Value = serde_json::from_str(&list_text).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["status"], "active");
    assert!(entries[0].get("key").is_none() && entries[0].get("secret_hash").is_none());

    let table = stdout(&ok(keys(&env.config, &["list"])));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&id) && table.contains("active"), "{table}");

    let revoked = ok(keys(&env.config, &["revoke", &id]));
    assert!(
        stdout(&revoked).contains("Revoked key"),
        "{}",
        stdout(&revoked)
    );

    let list: Value =
        serde_json::from_str(&stdout(&ok(keys(&env.config, &["list", "--json"])))).unwrap();
    assert_eq!(list[0]["status"], "revoked");
    assert!(list[0]["revoked_at"].is_string());

    // Unknown id: exit 1 with a clear message.
    let unknown = keys(&env.config, &["revoke", "0123456789abcdef"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no API key with id \"0123456789abcdef\""),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn human_create_output_and_config_before_subcommand() {
    let env = env();
    // `--config` also works between `keys` and the subcommand.
    let out = Command::new(env!("CARGO_BIN_EXE_mft-gateway"))
        .args(["keys", "--config"])
        .arg(&env.config)
        .args(["create", "--name", "ops", "--scopes", "files:read"])
        .output()
        .unwrap();
    let out = ok(out);
    let text = stdout(&out);
    let key_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("key:"))
        .expect("a key line");
    let key = key_line.trim_start().trim_start_matches("key:").trim();
    assert!(api_key::parse(key).is_ok(), "{key_line}");
    assert!(text.contains("NOT be shown again"), "{text}");
    assert!(text.contains("expires:  never"), "{text}");
}

#[test]
fn invalid_input_is_refused_with_a_clear_error() {
    let env = env();
    let bad_scope = keys(
        &env.config,
        &["create", "--name", "ci-bot", "--scopes", "Files:Read"],
    );
    assert_eq!(bad_scope.status.code(), Some(1));
    assert!(
        stderr(&bad_scope).contains("invalid scope \"Files:Read\""),
        "{}",
        stderr(&bad_scope)
    );
    let bad_name = keys(
        &env.config,
        &["create", "--name", "ci bot", "--scopes", "files:read"],
    );
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        stderr(&bad_name).contains("invalid service account name"),
        "{}",
        stderr(&bad_name)
    );
    let no_scopes = keys(&env.config, &["create", "--name", "ci-bot"]);
    assert!(!no_scopes.status.success());
    assert!(
        stderr(&no_scopes).contains("--scopes"),
        "{}",
        stderr(&no_scopes)
    );
    // Nothing was created.
    let list: Value =
        serde_json::from_str(&stdout(&ok(keys(&env.config, &["list", "--json"])))).unwrap();
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn missing_config_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = keys(&missing, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
}

#[test]
fn help_is_available_for_each_subcommand() {
    for sub in [
        &["keys"][..],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "revoke"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mft-gateway"))
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        let text = stdout(&ok(out));
        assert!(text.contains("Usage: mft-gateway keys"), "{sub:?}: {text}");
    }
}

/// With `[auth] store = "postgres://..."` the CLI uses PostgreSQL, not SQLite.
/// Runs when `MFT_TEST_POSTGRES_URL` is set (scripts/start-postgres).
#[tokio::test]
async fn postgres_store_from_config() {
    let Ok(url) = std::env::var("MFT_TEST_POSTGRES_URL") else {
        eprintln!("skipped postgres_store_from_config: MFT_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("cli_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let env = env();
    std::fs::write(
        &env.config,
        format!(
            "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ndata_dir = \"data\"\n\n\
             [backend]\nurl = \"http://127.0.0.1:9\"\n\n\
             [auth]\nstore = \"{url}{sep}options[search_path]={schema}\"\n"
        ),
    )
    .unwrap();

    let created = ok(keys(
        &env.config,
        &[
            "create",
            "--name",
            "pg-bot",
            "--scopes",
            "files:read",
            "--json",
        ],
    ));
    let json: Value = serde_json::from_str(&stdout(&created)).unwrap();
    let id = json["id"].as_str().unwrap().to_string();
    assert!(
        !env.dir.path().join("data/keys.sqlite").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    let (stored,): (String,) = sqlx::query_as(&format!(
        "SELECT account FROM {schema}.api_keys WHERE id = $1"
    ))
    .bind(&id)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(stored, "pg-bot");

    ok(keys(&env.config, &["revoke", &id]));
    let list: Value =
        serde_json::from_str(&stdout(&ok(keys(&env.config, &["list", "--json"])))).unwrap();
    assert_eq!(list[0]["status"], "revoked");

    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
