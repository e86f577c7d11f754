//! `spl namespace …`: the registry a record's `body.namespace` must be active in (PROTOCOL §12.2).
//!
//! A namespace id is `/`-separated (`acme/payments`); in the URL the slashes stay slashes and
//! each segment is percent-encoded on its own.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use syncropel_client::{encode_segment, ClientError};

use super::Ctx;
use crate::cli::{CreateNamespaceArgs, NamespaceCommand};
use crate::output::{display_field, print_json, str_field};

pub async fn run(ctx: &Ctx, command: NamespaceCommand) -> Result<ExitCode> {
    match command {
        NamespaceCommand::Create(args) => create(ctx, args).await,
        NamespaceCommand::List => list(ctx).await,
        NamespaceCommand::Show { id } => show(ctx, &id).await,
        NamespaceCommand::Archive { id } => archive(ctx, &id).await,
    }
}

async fn create(ctx: &Ctx, args: CreateNamespaceArgs) -> Result<ExitCode> {
    let mut body = json!({"id": args.id});
    if let Some(description) = args.description {
        body["description"] = Value::String(description);
    }
    let namespace = ctx.client()?.post_json("/v1/namespaces", &body).await?;
    if ctx.json {
        print_json(&namespace);
    } else {
        println!("{}", namespace_line(&namespace));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.get_json("/v1/namespaces").await?;
    if ctx.json {
        print_json(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let namespaces = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ClientError::Decode("namespace list has no `data` array".into()))?;
    for namespace in namespaces {
        println!("{}", namespace_line(namespace));
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let namespace = ctx.client()?.get_json(&namespace_path(id)?).await?;
    if ctx.json {
        print_json(&namespace);
    } else {
        println!("id           {}", str_field(&namespace, "id"));
        println!("state        {}", display_field(&namespace, "state"));
        println!("description  {}", display_field(&namespace, "description"));
        println!("record       {}", display_field(&namespace, "record"));
    }
    Ok(ExitCode::SUCCESS)
}

async fn archive(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let namespace = ctx.client()?.delete_json(&namespace_path(id)?).await?;
    if ctx.json {
        print_json(&namespace);
    } else {
        println!("archived namespace {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `/v1/namespaces/{id}`, slashes kept and every segment percent-encoded. Empty, `.` and `..`
/// segments are refused here: no namespace id has them, and URL normalisation would turn the
/// latter two into a different route.
fn namespace_path(id: &str) -> Result<String> {
    let mut path = String::from("/v1/namespaces");
    for segment in id.split('/') {
        if matches!(segment, "" | "." | "..") {
            bail!("invalid namespace id {id:?}: segments cannot be empty, `.` or `..`");
        }
        path.push('/');
        path.push_str(&encode_segment(segment));
    }
    Ok(path)
}

/// One line per namespace: id, state and description.
fn namespace_line(namespace: &Value) -> String {
    format!(
        "{}  {}  {}",
        str_field(namespace, "id"),
        display_field(namespace, "state"),
        display_field(namespace, "description"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_slashes_and_encode_each_segment() {
        assert_eq!(
            namespace_path("acme/payments").unwrap(),
            "/v1/namespaces/acme/payments"
        );
        assert_eq!(
            namespace_path("a b/c?d#e%").unwrap(),
            "/v1/namespaces/a%20b/c%3Fd%23e%25"
        );
    }

    #[test]
    fn paths_refuse_segments_that_would_change_the_route() {
        for id in ["", "acme/", "/acme", "a//b", ".", "acme/..", "../tokens"] {
            assert!(namespace_path(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn namespace_lines_are_compact() {
        let line = namespace_line(&json!({"object":"namespace","id":"acme","state":"active",
                                          "description":null,"record":"abc"}));
        assert_eq!(line, "acme  active  -");
        let line = namespace_line(&json!({"id":"acme/payments","state":"archived",
                                          "description":"cards"}));
        assert_eq!(line, "acme/payments  archived  cards");
    }
}
