//! `spl consent …`: grants that let records of one namespace reach a peer's namespace of another
//! name (FEDERATION §6.1). Same-name namespaces need no grant; a grant without `L0` shares
//! redacted stubs only.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::encode_segment;

use super::federation::list_data;
use super::Ctx;
use crate::cli::{ConsentCommand, GrantArgs};
use crate::output::{display_field, print_json, str_field, table};

pub async fn run(ctx: &Ctx, command: ConsentCommand) -> Result<ExitCode> {
    match command {
        ConsentCommand::Grant(args) => grant(ctx, args).await,
        ConsentCommand::Revoke { grant_id, reason } => revoke(ctx, &grant_id, reason).await,
        ConsentCommand::List { namespace } => list(ctx, namespace.as_deref()).await,
    }
}

/// The body of `POST /v1/consent/grants`; optional members are left out when not given
/// (`threads` absent means every thread).
fn grant_body(args: &GrantArgs) -> Value {
    let mut body = json!({
        "source_namespace": args.from_namespace,
        "target_namespace": args.to_namespace,
        "hash_levels": args.hash_levels,
    });
    if let Some(peer) = &args.peer {
        body["peer_did"] = json!(peer);
    }
    if !args.threads.is_empty() {
        body["threads"] = json!(args.threads);
    }
    if let Some(purpose) = &args.purpose {
        body["purpose"] = json!(purpose);
    }
    if let Some(expires) = &args.expires {
        body["expires_at"] = json!(expires);
    }
    body
}

async fn grant(ctx: &Ctx, args: GrantArgs) -> Result<ExitCode> {
    let grant = ctx
        .client()?
        .post_json("/v1/consent/grants", &grant_body(&args))
        .await?;
    if ctx.json {
        print_json(&grant);
    } else {
        println!(
            "granted {}: {} → {} at {}",
            str_field(&grant, "grant_id"),
            args.from_namespace,
            args.to_namespace,
            args.hash_levels.join(","),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `/v1/consent/grants/{id}[?reason=…]`: the reason travels as a query parameter, since a
/// DELETE carries no body.
fn revoke_path(grant_id: &str, reason: Option<&str>) -> String {
    let mut path = format!("/v1/consent/grants/{}", encode_segment(grant_id));
    if let Some(reason) = reason {
        path.push_str("?reason=");
        path.push_str(&encode_segment(reason));
    }
    path
}

async fn revoke(ctx: &Ctx, grant_id: &str, reason: Option<String>) -> Result<ExitCode> {
    let answer = ctx
        .client()?
        .delete_json(&revoke_path(grant_id, reason.as_deref()))
        .await?;
    if ctx.json {
        let answer = if answer.is_null() {
            json!({"grant_id": grant_id, "revoked": true})
        } else {
            answer
        };
        print_json(&answer);
    } else {
        println!("revoked consent grant {grant_id}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, namespace: Option<&str>) -> Result<ExitCode> {
    let path = match namespace {
        Some(ns) => format!("/v1/consent/grants?namespace={}", encode_segment(ns)),
        None => "/v1/consent/grants".to_owned(),
    };
    let answer = ctx.client()?.get_json(&path).await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let grants = list_data(&answer, "consent grant list")?;
    if grants.is_empty() {
        println!("no consent grants");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = grants.iter().map(grant_row).collect();
    println!(
        "{}",
        table(&["GRANT", "NAMESPACES", "LEVELS", "PEER", "ACTIVE"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

fn grant_row(grant: &Value) -> Vec<String> {
    let levels: Vec<&str> = grant
        .get("hash_levels")
        .and_then(Value::as_array)
        .map(|levels| levels.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let peer = match grant.get("peer_did") {
        None | Some(Value::Null) => "any".to_owned(),
        Some(_) => display_field(grant, "peer_did"),
    };
    vec![
        display_field(grant, "grant_id"),
        format!(
            "{} → {}",
            display_field(grant, "source_namespace"),
            display_field(grant, "target_namespace")
        ),
        if levels.is_empty() {
            "-".to_owned()
        } else {
            levels.join(",")
        },
        peer,
        display_field(grant, "active"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn grant_args(extra: &[&str]) -> GrantArgs {
        let args = ["spl", "consent", "grant"].iter().chain(extra);
        let Command::Consent(ConsentCommand::Grant(args)) =
            Cli::try_parse_from(args).unwrap().command
        else {
            panic!("parsed into the wrong command");
        };
        args
    }

    #[test]
    fn grant_bodies_default_to_all_levels_from_default() {
        assert_eq!(
            grant_body(&grant_args(&["--to-namespace", "my-team"])),
            json!({"source_namespace": "default", "target_namespace": "my-team",
                   "hash_levels": ["L0", "L1", "L2", "L3"]})
        );
    }

    #[test]
    fn grant_bodies_carry_every_option_given() {
        let args = grant_args(&[
            "--to-namespace",
            "my-team",
            "--from-namespace",
            "research",
            "--hash-levels",
            "l1,L2",
            "--peer",
            "did:web:bob.example",
            "--threads",
            "th_a,th_b",
            "--purpose",
            "weekly telemetry",
            "--expires",
            "2026-12-31T00:00:00Z",
        ]);
        assert_eq!(
            grant_body(&args),
            json!({"source_namespace": "research", "target_namespace": "my-team",
                   "hash_levels": ["L1", "L2"], "peer_did": "did:web:bob.example",
                   "threads": ["th_a", "th_b"], "purpose": "weekly telemetry",
                   "expires_at": "2026-12-31T00:00:00Z"})
        );
    }

    #[test]
    fn revoke_reasons_travel_in_the_query() {
        assert_eq!(revoke_path("cg_1", None), "/v1/consent/grants/cg_1");
        assert_eq!(
            revoke_path("cg_1", Some("no longer needed")),
            "/v1/consent/grants/cg_1?reason=no%20longer%20needed"
        );
    }

    #[test]
    fn grant_rows_name_namespaces_levels_and_peer() {
        let row = grant_row(&json!({"grant_id":"cg_1","source_namespace":"research",
                                    "target_namespace":"my-team","hash_levels":["L1","L2"],
                                    "peer_did":null,"active":true}));
        assert_eq!(row, ["cg_1", "research → my-team", "L1,L2", "any", "true"]);
    }
}
