//! `spl namespace …`: the registry a record's `body.namespace` must be active in
//! (protocol.md §12.2).
//!
//! A namespace id is `/`-separated (`acme/payments`); in the URL the slashes stay slashes and
//! each segment is percent-encoded on its own.

use std::process::ExitCode;

use anyhow::Result;
use syncropel_client::api::{CreateNamespace, Namespace};

use super::Ctx;
use crate::cli::{CreateNamespaceArgs, NamespaceCommand};
use crate::output::{or_dash, print_json};

pub async fn run(ctx: &Ctx, command: NamespaceCommand) -> Result<ExitCode> {
    match command {
        NamespaceCommand::Create(args) => create(ctx, args).await,
        NamespaceCommand::List => list(ctx).await,
        NamespaceCommand::Show { id } => show(ctx, &id).await,
        NamespaceCommand::Archive { id } => archive(ctx, &id).await,
    }
}

async fn create(ctx: &Ctx, args: CreateNamespaceArgs) -> Result<ExitCode> {
    let request = CreateNamespace {
        id: args.id,
        description: args.description,
    };
    let namespace = ctx.client()?.create_namespace(&request).await?;
    if ctx.json {
        print_json(namespace.json());
    } else {
        println!("{}", namespace_line(&namespace));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let answer = ctx.client()?.namespaces().await?;
    if ctx.json {
        print_json(answer.json());
        return Ok(ExitCode::SUCCESS);
    }
    for namespace in &answer.data {
        println!("{}", namespace_line(namespace));
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let namespace = ctx.client()?.namespace(id).await?;
    if ctx.json {
        print_json(namespace.json());
    } else {
        println!("id           {}", namespace.id);
        println!("state        {}", namespace.state.as_str());
        println!("description  {}", or_dash(namespace.description.as_deref()));
        println!("record       {}", namespace.record);
    }
    Ok(ExitCode::SUCCESS)
}

async fn archive(ctx: &Ctx, id: &str) -> Result<ExitCode> {
    let namespace = ctx.client()?.archive_namespace(id).await?;
    if ctx.json {
        print_json(namespace.json());
    } else {
        println!("archived namespace {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per namespace: id, state and description.
fn namespace_line(namespace: &Namespace) -> String {
    format!(
        "{}  {}  {}",
        namespace.id,
        namespace.state.as_str(),
        or_dash(namespace.description.as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace(answer: serde_json::Value) -> Namespace {
        serde_json::from_value(answer).unwrap()
    }

    #[test]
    fn namespace_lines_are_compact() {
        let line = namespace_line(&namespace(json!({"object":"namespace","id":"acme",
                                                    "state":"active","description":null,
                                                    "record":"abc"})));
        assert_eq!(line, "acme  active  -");
        let line = namespace_line(&namespace(json!({"id":"acme/payments","state":"archived",
                                                    "description":"cards"})));
        assert_eq!(line, "acme/payments  archived  cards");
    }
}
