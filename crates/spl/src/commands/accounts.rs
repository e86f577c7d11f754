//! `spl service-account …` and `spl token …`.
//!
//! With `--with-token`, `service-account create` prints only the token on stdout so a script
//! can capture it (`TOKEN=$(spl service-account create … --with-token)`); the plaintext is shown
//! once, at mint, and never again.

use std::io::{self, BufRead};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use syncropel_client::api::{CreateServiceAccount, MintToken};
use syncropel_steward::local::{self, BootstrapRequest};

use super::Ctx;
use crate::cli::{CreateServiceAccountArgs, ServiceAccountCommand};
use crate::output::print_json;

pub async fn service_account(ctx: &Ctx, command: ServiceAccountCommand) -> Result<ExitCode> {
    match command {
        ServiceAccountCommand::Create(args) => create(ctx, args).await,
        ServiceAccountCommand::List => list(ctx).await,
    }
}

/// A service account just made: its id and, when one was minted, its token's plaintext; and
/// both as JSON to print.
struct Created {
    id: String,
    account: Value,
    token: Option<(String, Value)>,
}

async fn create(ctx: &Ctx, args: CreateServiceAccountArgs) -> Result<ExitCode> {
    let created = if args.bootstrap {
        create_local(ctx, args).await?
    } else {
        create_remote(ctx, args).await?
    };

    if ctx.json {
        let token = created.token.map(|(_, json)| json);
        print_json(&json!({"service_account": created.account, "token": token}));
    } else if let Some((plaintext, _)) = &created.token {
        println!("{plaintext}");
    } else {
        println!("{}", created.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--bootstrap`: writes the account straight into the home's store. This is how the first
/// account (and its admin token) comes to exist, since every API route needs one.
async fn create_local(ctx: &Ctx, args: CreateServiceAccountArgs) -> Result<Created> {
    ctx.home.init(false)?;
    let request = BootstrapRequest {
        name: args.name,
        scopes: args.scopes,
        allowed_actors: args.actors,
        with_token: args.with_token,
    };
    let outcome = local::bootstrap_service_account(&ctx.home, &request).await?;
    let account = json!({
        "object": "service_account",
        "id": outcome.sa_id,
        "name": request.name,
        "scopes": request.scopes,
        "allowed_actors": request.allowed_actors,
    });
    let token = match (request.with_token, outcome.token) {
        (true, Some(token)) => Some((token.clone(), json!({"object": "token", "token": token}))),
        (true, None) => bail!("the service account was created but no token was minted"),
        (false, _) => None,
    };
    Ok(Created {
        id: outcome.sa_id,
        account,
        token,
    })
}

async fn create_remote(ctx: &Ctx, args: CreateServiceAccountArgs) -> Result<Created> {
    let client = ctx.client()?;
    let mint = MintToken {
        ttl_seconds: args
            .ttl_seconds
            .map(i64::try_from)
            .transpose()
            .context("--ttl-seconds is too large")?,
    };
    let request = CreateServiceAccount {
        name: args.name,
        scopes: args.scopes,
        allowed_actors: args.actors,
    };
    let account = client.create_service_account(&request).await?;
    let id = account.id.clone();
    if !args.with_token {
        return Ok(Created {
            id,
            account: account.into_json(),
            token: None,
        });
    }
    let token = client.mint_token(&id, &mint).await.with_context(|| {
        format!("service account {id} was created, but minting its token failed")
    })?;
    Ok(Created {
        id,
        account: account.into_json(),
        token: Some((token.token.clone(), token.into_json())),
    })
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.service_accounts().await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    for account in &answer.data {
        println!(
            "{}  {}  scopes {}  actors {}",
            account.id,
            account.name,
            joined(&account.scopes),
            joined(&account.allowed_actors),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A list as `a,b`, or `-` when empty.
fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// `spl token save`: `-` reads the token from stdin, which keeps it out of shell history and
/// the process list.
pub fn save_token(ctx: &Ctx, token: &str) -> Result<ExitCode> {
    let token = if token == "-" {
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        line
    } else {
        token.to_owned()
    };
    ctx.home.save_token(&token)?;
    if ctx.json {
        print_json(&json!({"saved": true, "home": ctx.home.root().display().to_string()}));
    } else {
        println!("token saved in {}", ctx.home.root().display());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke_token(ctx: &Ctx, token_id: &str) -> Result<ExitCode> {
    let answer = ctx.client()?.revoke_token(token_id).await?;
    if ctx.json {
        let answer = match answer.into_json() {
            Value::Null => json!({"token_id": token_id, "revoked": true}),
            answer => answer,
        };
        print_json(&answer);
    } else {
        println!("revoked token {token_id}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_string_arrays() {
        let account: syncropel_client::api::ServiceAccount =
            serde_json::from_value(json!({"scopes":["records:read","admin"],"allowed_actors":[]}))
                .unwrap();
        assert_eq!(joined(&account.scopes), "records:read,admin");
        assert_eq!(joined(&account.allowed_actors), "-");
        let missing: syncropel_client::api::ServiceAccount =
            serde_json::from_value(json!({})).unwrap();
        assert_eq!(joined(&missing.scopes), "-");
    }
}
