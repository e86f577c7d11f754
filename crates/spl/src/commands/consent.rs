//! `spl consent …`: grants that let records of one namespace reach a peer's namespace of another
//! name (federation-protocol.md §6.1). Same-name namespaces need no grant; a grant without `L0`
//! shares redacted stubs only. Also public grants of one thread, and the acceptance a puller
//! records for a source that requires two-sided L0 consent (§6.4).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::api::{AcceptL0, ConsentGrant, CreateGrant, GrantThreads, PublicGrant};
use syncropel_protocol::consent::HashLevel;

use super::Ctx;
use crate::cli::{AcceptArgs, ConsentCommand, GrantArgs, PublicArgs};
use crate::output::{print_json, table};

pub async fn run(ctx: &Ctx, command: ConsentCommand) -> Result<ExitCode> {
    match command {
        ConsentCommand::Grant(args) => grant(ctx, args).await,
        ConsentCommand::Revoke { grant_id, reason } => revoke(ctx, &grant_id, reason).await,
        ConsentCommand::List { namespace } => list(ctx, namespace.as_deref()).await,
        ConsentCommand::Public(args) => public(ctx, args).await,
        ConsentCommand::Accept(args) => accept(ctx, args).await,
    }
}

fn public_body(args: &PublicArgs) -> PublicGrant {
    PublicGrant {
        public: true,
        thread: args.thread.clone(),
        // The argument parser admits L0 and L2 only.
        granted_level: HashLevel::parse(&args.level).unwrap_or(HashLevel::L2),
        expires_at: args.expires.clone(),
        purpose: None,
    }
}

async fn public(ctx: &Ctx, args: PublicArgs) -> Result<ExitCode> {
    let grant = ctx.client()?.grant_public(&public_body(&args)).await?;
    if ctx.json {
        print_json(grant.json());
    } else {
        println!(
            "shared {} publicly at {} until {}: {}",
            args.thread,
            args.level,
            grant.expires_at.as_deref().unwrap_or("-"),
            grant.grant_id,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn accept_body(args: &AcceptArgs) -> AcceptL0 {
    AcceptL0 {
        op: "accept".to_owned(),
        peer_did: args.peer.clone(),
        source_namespace: args.from_namespace.clone(),
        target_namespace: args.to_namespace.clone(),
        expires_at: args.expires.clone(),
    }
}

async fn accept(ctx: &Ctx, args: AcceptArgs) -> Result<ExitCode> {
    let accepted = ctx.client()?.accept_l0(&accept_body(&args)).await?;
    if ctx.json {
        print_json(accepted.json());
    } else {
        println!(
            "accepted L0 from {}: {} → {} ({})",
            args.peer, args.from_namespace, args.to_namespace, accepted.grant_id,
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let namespaces = format!("{} → {}", grant.source_namespace, grant.target_namespace);
    vec![
        grant.grant_id.clone(),
        match &grant.thread {
            Some(thread) if grant.public => format!("public: {thread}"),
            _ if grant.op == "accept" => format!("accept: {namespaces}"),
            _ => namespaces,
        },
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

    fn command(args: &[&str]) -> ConsentCommand {
        let args = ["spl", "consent"].iter().chain(args);
        let Command::Consent(command) = Cli::try_parse_from(args).unwrap().command else {
            panic!("parsed into the wrong command");
        };
        command
    }

    #[test]
    fn public_and_accept_bodies_match_the_wire() {
        let ConsentCommand::Public(args) = command(&["public", "th_a"]) else {
            panic!("not public");
        };
        assert_eq!(
            serde_json::to_value(public_body(&args)).unwrap(),
            json!({"public": true, "thread": "th_a", "granted_level": "L2"})
        );
        assert!(
            Cli::try_parse_from(["spl", "consent", "public", "th_a", "--level", "L1"]).is_err()
        );
        let ConsentCommand::Accept(args) = command(&[
            "accept",
            "--peer",
            "did:key:z6MkSource",
            "--from-namespace",
            "research",
        ]) else {
            panic!("not accept");
        };
        assert_eq!(
            serde_json::to_value(accept_body(&args)).unwrap(),
            json!({"op": "accept", "peer_did": "did:key:z6MkSource",
                   "source_namespace": "research", "target_namespace": "default"})
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
