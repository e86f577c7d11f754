//! `spl invite …` and `spl member …` (protocol.md §11.11): invites shown once, members, and
//! the agent sub-grants below them.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Map, Value};
use syncropel_client::Client;

use super::Ctx;
use crate::cli::{AgentGrantArgs, CaveatArgs, InviteCommand, IssueInviteArgs, MemberCommand};
use crate::output::print_json;

pub async fn invite(ctx: &Ctx, command: InviteCommand) -> Result<ExitCode> {
    let client = ctx.client()?;
    let answer = match command {
        InviteCommand::Issue(args) => {
            let answer = client.issue_invite(&issue_request(args)).await?;
            if !ctx.json {
                println!("{}", text(answer.json(), "invite_id"));
                eprintln!("the invite id is shown only now: pass it to the invitee");
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        InviteCommand::Show { id } => anonymous(ctx)?.invite(&id).await?,
        InviteCommand::Redeem(args) => {
            let mut request = json!({
                "holder_type": "guest",
                "holder_pubkey": ctx.home.keypair()?.did_key(),
            });
            if let Some(label) = args.label {
                request["member_label"] = json!(label);
                request["custody"] = json!("custodial");
            }
            let answer = anonymous(ctx)?.redeem_invite(&args.id, &request).await?;
            if !ctx.json {
                println!("{}", text(answer.json(), "bearer"));
                eprintln!(
                    "acting as {}; keep the bearer with `spl token save -`",
                    text(answer.json(), "actor_did")
                );
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        InviteCommand::Revoke { id } => client.revoke_invite(&id).await?,
    };
    print_json(answer.json());
    Ok(ExitCode::SUCCESS)
}

pub async fn member(ctx: &Ctx, command: MemberCommand) -> Result<ExitCode> {
    let client = ctx.client()?;
    let answer = match command {
        MemberCommand::List => {
            let answer = client.members().await?;
            if !ctx.json {
                for row in answer.json()["data"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}  scopes={}  expires_at={}",
                        text(row, "label"),
                        text(row, "member_did"),
                        text(row, "status"),
                        row["scopes"],
                        row["expires_at"]
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        MemberCommand::Adopt {
            label,
            sa_id,
            ttl_seconds,
        } => {
            let request = json!({"label": label, "sa_id": sa_id, "ttl_seconds": ttl_seconds});
            client.adopt_member(&request).await?
        }
        MemberCommand::Revoke { label, note } => {
            client.revoke_member(&label, note.as_deref()).await?
        }
        MemberCommand::Grant(args) => {
            let label = args.label.clone();
            let answer = client
                .mint_agent_grant(&label, &agent_request(args))
                .await?;
            if !ctx.json {
                println!("{}", text(answer.json(), "bearer"));
                eprintln!("sub-grant {}", text(answer.json(), "grant_id"));
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        MemberCommand::RevokeGrant { label, grant_id } => {
            client.revoke_agent_grant(&label, &grant_id).await?
        }
    };
    print_json(answer.json());
    Ok(ExitCode::SUCCESS)
}

/// A client that sends no token: invites are opened by their id.
fn anonymous(ctx: &Ctx) -> Result<Client> {
    Ok(Client::new(&ctx.endpoint()?.url, None)?)
}

fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name].as_str().unwrap_or("-")
}

fn caveats(args: CaveatArgs) -> Value {
    let mut caveats = Map::new();
    for (name, value) in [
        ("max_depth", args.max_depth.map(u64::from)),
        ("max_fanout", args.max_fanout.map(u64::from)),
        ("budget", args.budget),
    ] {
        if let Some(value) = value {
            caveats.insert(name.into(), json!(value));
        }
    }
    Value::Object(caveats)
}

fn issue_request(args: IssueInviteArgs) -> Value {
    let mut request = json!({"max_uses": args.max_uses, "ttl_seconds": args.ttl_seconds});
    if args.scopes.is_empty() {
        request["membership"] = json!({
            "preset": args.preset,
            "label": args.label,
            "ttl_seconds": args.grant_ttl_seconds,
            "caveats": caveats(args.caveats),
        });
    } else {
        request["scopes"] = json!(args.scopes);
    }
    request
}

fn agent_request(args: AgentGrantArgs) -> Value {
    let mut request = json!({
        "aud": args.aud,
        "ttl_seconds": args.ttl_seconds,
        "caveats": caveats(args.caveats),
    });
    if !args.scopes.is_empty() {
        request["scopes"] = json!(args.scopes);
    }
    request
}
