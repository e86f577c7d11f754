//! `spl service-account …` and `spl token …`.
//!
//! With `--with-token`, `service-account create` prints only the token on stdout so a script
//! can capture it (`TOKEN=$(spl service-account create … --with-token)`); the plaintext is shown
//! once, at mint, and never again.

use std::io::{self, BufRead};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use syncropel_client::{encode_segment, ClientError};
use syncropel_steward::local::{self, BootstrapRequest};

use super::Ctx;
use crate::cli::{CreateServiceAccountArgs, ServiceAccountCommand};
use crate::output::{display_field, print_json, str_field};

pub async fn service_account(ctx: &Ctx, command: ServiceAccountCommand) -> Result<ExitCode> {
    match command {
        ServiceAccountCommand::Create(args) => create(ctx, args).await,
        ServiceAccountCommand::List => list(ctx).await,
    }
}

async fn create(ctx: &Ctx, args: CreateServiceAccountArgs) -> Result<ExitCode> {
    let (account, token) = if args.bootstrap {
        create_local(ctx, args).await?
    } else {
        create_remote(ctx, args).await?
    };

    if ctx.json {
        print_json(&json!({"service_account": account, "token": token}));
    } else if let Some(token) = &token {
        let plaintext = token
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the steward's token answer has no `token`"))?;
        println!("{plaintext}");
    } else {
        println!("{}", str_field(&account, "id"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--bootstrap`: writes the account straight into the home's store. This is how the first
/// account (and its admin token) comes to exist, since every API route needs one.
async fn create_local(ctx: &Ctx, args: CreateServiceAccountArgs) -> Result<(Value, Option<Value>)> {
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
        (true, Some(token)) => Some(json!({"object": "token", "token": token})),
        (true, None) => bail!("the service account was created but no token was minted"),
        (false, _) => None,
    };
    Ok((account, token))
}

async fn create_remote(
    ctx: &Ctx,
    args: CreateServiceAccountArgs,
) -> Result<(Value, Option<Value>)> {
    let client = ctx.client()?;
    let account = client
        .post_json(
            "/v1/service-accounts",
            &json!({"name": args.name, "scopes": args.scopes, "allowed_actors": args.actors}),
        )
        .await?;
    if !args.with_token {
        return Ok((account, None));
    }
    let id = account
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Decode("service account answer has no `id`".into()))?;
    let body = match args.ttl_seconds {
        Some(ttl) => json!({"ttl_seconds": ttl}),
        None => json!({}),
    };
    let token = client
        .post_json(
            &format!("/v1/service-accounts/{}/tokens", encode_segment(id)),
            &body,
        )
        .await
        .with_context(|| {
            format!("service account {id} was created, but minting its token failed")
        })?;
    Ok((account, Some(token)))
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.get_json("/v1/service-accounts").await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let accounts = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ClientError::Decode("service account list has no `data` array".into()))?;
    for account in accounts {
        println!(
            "{}  {}  scopes {}  actors {}",
            str_field(account, "id"),
            display_field(account, "name"),
            joined(account, "scopes"),
            joined(account, "allowed_actors"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A string array member as `a,b`, or `-` when absent or empty.
fn joined(value: &Value, key: &str) -> String {
    let items: Vec<&str> = value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
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
    let answer = ctx
        .client()?
        .delete_json(&format!("/v1/tokens/{}", encode_segment(token_id)))
        .await?;
    if ctx.json {
        let answer = if answer.is_null() {
            json!({"token_id": token_id, "revoked": true})
        } else {
            answer
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
        let account = json!({"scopes":["records:read","admin"],"allowed_actors":[]});
        assert_eq!(joined(&account, "scopes"), "records:read,admin");
        assert_eq!(joined(&account, "allowed_actors"), "-");
        assert_eq!(joined(&account, "missing"), "-");
    }
}
