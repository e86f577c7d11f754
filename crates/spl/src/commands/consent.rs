//! `spl consent …`: grants that let records of one namespace reach a peer's namespace of another
//! name (federation-protocol.md §6.1). Same-name namespaces need no grant; a grant without `L0`
//! shares redacted stubs only.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::api::{ConsentGrant, CreateGrant, GrantThreads};
use syncropel_protocol::consent::HashLevel;

use super::Ctx;
use crate::cli::{ConsentCommand, GrantArgs};
use crate::output::{print_json, table};

pub async fn run(ctx: &Ctx, command: ConsentCommand) -> Result<ExitCode> {
    match command {
        ConsentCommand::Grant(args) => grant(ctx, args).await,
        ConsentCommand::Revoke { grant_id, reason } => revoke(ctx, &grant_id, reason).await,
        ConsentCommand::List { namespace } => list(ctx, namespace.as_deref()).await,
    }
}

/// The body of `POST /v1/consent/grants`; optional members are left out when not given
/// (`threads` absent means every thread).
fn grant_body(args: &GrantArgs) -> CreateGrant {
    CreateGrant {
        source_namespace: Some(args.from_namespace.clone()),
        target_namespace: args.to_namespace.clone(),
        // The argument parser admits L0-L3 only.
        hash_levels: Some(
            args.hash_levels
                .iter()
                .filter_map(|l| HashLevel::parse(l))
                .collect(),
        ),
        peer_did: args.peer.clone(),
        threads: (!args.threads.is_empty()).then(|| GrantThreads::Only(args.threads.clone())),
        purpose: args.purpose.clone(),
        expires_at: args.expires.clone(),
    }
}

async fn grant(ctx: &Ctx, args: GrantArgs) -> Result<ExitCode> {
    let grant = ctx.client()?.grant_consent(&grant_body(&args)).await?;
    if ctx.json {
        print_json(grant.json());
    } else {
        println!(
            "granted {}: {} → {} at {}",
            grant.grant_id,
            args.from_namespace,
            args.to_namespace,
            args.hash_levels.join(","),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(ctx: &Ctx, grant_id: &str, reason: Option<String>) -> Result<ExitCode> {
    let answer = ctx
        .client()?
        .revoke_grant(grant_id, reason.as_deref())
        .await?;
    if ctx.json {
        let answer = match answer.into_json() {
            Value::Null => json!({"grant_id": grant_id, "revoked": true}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        println!("revoked consent grant {grant_id}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, namespace: Option<&str>) -> Result<ExitCode> {
    let answer = ctx.client()?.consent_grants(namespace).await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    if answer.data.is_empty() {
        println!("no consent grants");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = answer.data.iter().map(grant_row).collect();
    println!(
        "{}",
        table(&["GRANT", "NAMESPACES", "LEVELS", "PEER", "ACTIVE"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

fn grant_row(grant: &ConsentGrant) -> Vec<String> {
    let levels: Vec<&str> = grant.hash_levels.iter().map(|l| l.as_str()).collect();
    vec![
        grant.grant_id.clone(),
        format!("{} → {}", grant.source_namespace, grant.target_namespace),
        if levels.is_empty() {
            "-".to_owned()
        } else {
            levels.join(",")
        },
        grant.peer_did.as_deref().unwrap_or("any").to_owned(),
        grant.active.to_string(),
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

    fn body(args: &GrantArgs) -> Value {
        serde_json::to_value(grant_body(args)).unwrap()
    }

    #[test]
    fn grant_bodies_default_to_all_levels_from_default() {
        assert_eq!(
            body(&grant_args(&["--to-namespace", "my-team"])),
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
            body(&args),
            json!({"source_namespace": "research", "target_namespace": "my-team",
                   "hash_levels": ["L1", "L2"], "peer_did": "did:web:bob.example",
                   "threads": ["th_a", "th_b"], "purpose": "weekly telemetry",
                   "expires_at": "2026-12-31T00:00:00Z"})
        );
    }

    #[test]
    fn grant_rows_name_namespaces_levels_and_peer() {
        let grant: ConsentGrant =
            serde_json::from_value(json!({"grant_id":"cg_1","source_namespace":"research",
                                          "target_namespace":"my-team","hash_levels":["L1","L2"],
                                          "peer_did":null,"active":true}))
            .unwrap();
        let row = grant_row(&grant);
        assert_eq!(row, ["cg_1", "research → my-team", "L1,L2", "any", "true"]);
    }
}
