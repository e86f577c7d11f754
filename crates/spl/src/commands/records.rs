//! Writing and reading records: `intend`, `do`, `know`, `learn`, `emit`, `records`, `threads`.
//!
//! Envelopes are built the way the Python SDK builds them, so records written from the CLI and
//! from the SDK look alike: the home's did:key as the default actor, wall-clock milliseconds as
//! the default clock, `th_` + 64 hex for a new thread.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Map, Value};
use syncropel_client::api::ListPage;
use syncropel_client::{Emitted, ListParams};
use syncropel_home::Home;

use super::Ctx;
use crate::cli::{
    ActArgs, EmitArgs, IntendArgs, ListArgs, RecordOptions, RecordsCommand, ThreadsArgs,
};
use crate::output::{print_json, record_line, str_field, thread_line};

pub async fn intend(ctx: &Ctx, args: IntendArgs) -> Result<ExitCode> {
    let thread = args.thread.unwrap_or_else(new_thread_id);
    coordination(ctx, "INTEND", "goal", &thread, args.text, args.options).await
}

/// `do`, `know` and `learn`: a `text` body on an existing thread.
pub async fn act(ctx: &Ctx, act: &str, args: ActArgs) -> Result<ExitCode> {
    coordination(ctx, act, "text", &args.thread, args.text, args.options).await
}

async fn coordination(
    ctx: &Ctx,
    act: &str,
    field: &str,
    thread: &str,
    text: String,
    options: RecordOptions,
) -> Result<ExitCode> {
    let draft = Draft {
        act,
        thread,
        body: coordination_body(field, text, &options),
        data_type: "SCALAR",
        parents: Vec::new(),
        actor: options.actor,
        clock: options.clock,
    };
    send(ctx, &draft.into_envelope(&ctx.home)?).await
}

pub async fn emit(ctx: &Ctx, args: EmitArgs) -> Result<ExitCode> {
    let draft = Draft {
        act: &args.act,
        thread: &args.thread,
        body: args.body,
        data_type: &args.data_type,
        parents: args.parents,
        actor: args.actor,
        clock: args.clock,
    };
    send(ctx, &draft.into_envelope(&ctx.home)?).await
}

/// `{field: text}`, overlaid with `--body`, then `kind` from `--kind` (the most specific flag
/// wins).
fn coordination_body(field: &str, text: String, options: &RecordOptions) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert(field.to_owned(), Value::String(text));
    if let Some(extra) = &options.body {
        body.extend(extra.clone());
    }
    if let Some(kind) = &options.kind {
        body.insert("kind".to_owned(), Value::String(kind.clone()));
    }
    body
}

/// A record to emit, before the defaults are filled in.
struct Draft<'a> {
    act: &'a str,
    thread: &'a str,
    body: Map<String, Value>,
    data_type: &'a str,
    parents: Vec<String>,
    actor: Option<String>,
    clock: Option<i64>,
}

impl Draft<'_> {
    /// The seven hashed envelope fields, in the order the SDK sends them. Parents are sorted
    /// and deduplicated because the record id is computed over the sorted set.
    fn into_envelope(mut self, home: &Home) -> Result<Value> {
        let actor = match self.actor {
            Some(actor) => actor,
            None => home.did()?,
        };
        self.parents.sort();
        self.parents.dedup();
        Ok(json!({
            "act": self.act,
            "actor": actor,
            "body": self.body,
            "clock": self.clock.unwrap_or_else(wall_clock_millis),
            "data_type": self.data_type,
            "parents": self.parents,
            "thread": self.thread,
        }))
    }
}

async fn send(ctx: &Ctx, envelope: &Value) -> Result<ExitCode> {
    let Emitted { record, .. } = ctx.client()?.emit::<Value>(envelope).await?;
    if ctx.json {
        print_json(&record);
    } else {
        println!("id      {}", str_field(&record, "id"));
        println!("thread  {}", str_field(&record, "thread"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `th_` + 64 lowercase hex, as the SDK mints for `intend()`.
fn new_thread_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("th_{}", hex::encode(bytes))
}

/// Milliseconds since the epoch: the SDK's default clock, so CLI and SDK writers on one thread
/// produce comparable clocks.
fn wall_clock_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

pub async fn records(ctx: &Ctx, command: RecordsCommand) -> Result<ExitCode> {
    match command {
        RecordsCommand::List(args) => list_records(ctx, args).await,
        RecordsCommand::Get { id } => {
            let record: Value = ctx.client()?.get_record(&id).await?;
            if ctx.json {
                print_json(&record);
            } else {
                println!("{}", serde_json::to_string_pretty(&record)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list_records(ctx: &Ctx, args: ListArgs) -> Result<ExitCode> {
    let client = ctx.client()?;
    let mut params = ListParams {
        thread: Some(args.thread),
        actor: args.actor,
        since: args.since,
        limit: args.limit,
        cursor: args.cursor,
    };
    let mut page: ListPage<Value> = client.list_records(&params).await?;
    if args.all {
        let mut all = std::mem::take(&mut page.data);
        while page.has_more {
            let Some(cursor) = page.next_cursor.take() else {
                break;
            };
            if params.cursor.as_deref() == Some(cursor.as_str()) {
                bail!("the steward returned the same cursor twice; stopping");
            }
            params.cursor = Some(cursor);
            page = client.list_records(&params).await?;
            all.append(&mut page.data);
        }
        page = ListPage::whole(all);
    }
    print_page(ctx, page, record_line);
    Ok(ExitCode::SUCCESS)
}

pub async fn threads(ctx: &Ctx, args: &ThreadsArgs) -> Result<ExitCode> {
    let page = ctx
        .client()?
        .threads(args.limit, args.cursor.as_deref())
        .await?;
    print_page(ctx, page, thread_line);
    Ok(ExitCode::SUCCESS)
}

/// Prints a page as JSON, or one line per item followed by how to get the next page.
fn print_page<T: Serialize>(ctx: &Ctx, page: ListPage<T>, line: fn(&T) -> String) {
    if ctx.json {
        print_json(&page);
        return;
    }
    for item in &page.data {
        println!("{}", line(item));
    }
    if let (true, Some(cursor)) = (page.has_more, &page.next_cursor) {
        eprintln!("more: pass --cursor {cursor}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kind: Option<&str>, body: Option<Value>) -> RecordOptions {
        RecordOptions {
            actor: None,
            clock: None,
            kind: kind.map(str::to_owned),
            body: body.map(|b| b.as_object().unwrap().clone()),
        }
    }

    #[test]
    fn thread_ids_look_like_the_sdks() {
        let id = new_thread_id();
        assert_eq!(id.len(), 67);
        assert!(id.starts_with("th_"));
        assert!(id[3..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_ne!(id, new_thread_id());
    }

    #[test]
    fn body_merges_text_then_body_then_kind() {
        let body = coordination_body(
            "goal",
            "ship it".into(),
            &options(
                Some("core.task"),
                Some(json!({"priority": 2, "kind": "ignored"})),
            ),
        );
        assert_eq!(
            Value::Object(body),
            json!({"goal": "ship it", "priority": 2, "kind": "core.task"})
        );
        let body = coordination_body("text", "done".into(), &options(None, None));
        assert_eq!(Value::Object(body), json!({"text": "done"}));
    }

    #[test]
    fn envelope_defaults_and_sorted_parents() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_owned());
        let did = home.init(false).unwrap().did;
        let draft = |parents: Vec<String>, actor: Option<String>, clock: Option<i64>| Draft {
            act: "DO",
            thread: "th_x",
            body: Map::new(),
            data_type: "SCALAR",
            parents,
            actor,
            clock,
        };

        let before = wall_clock_millis();
        let defaulted = draft(vec!["b".into(), "a".into(), "b".into()], None, None)
            .into_envelope(&home)
            .unwrap();
        assert_eq!(defaulted["actor"], json!(did));
        assert_eq!(defaulted["parents"], json!(["a", "b"]));
        assert!(defaulted["clock"].as_i64().unwrap() >= before);

        let explicit = draft(Vec::new(), Some("did:example:me".into()), Some(7))
            .into_envelope(&home)
            .unwrap();
        assert_eq!(explicit["actor"], json!("did:example:me"));
        assert_eq!(explicit["clock"], json!(7));
        assert_eq!(explicit["parents"], json!([]));
    }

    #[test]
    fn default_actor_needs_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("missing"));
        let draft = Draft {
            act: "DO",
            thread: "th_x",
            body: Map::new(),
            data_type: "SCALAR",
            parents: Vec::new(),
            actor: None,
            clock: Some(1),
        };
        assert!(draft.into_envelope(&home).is_err());
    }
}
