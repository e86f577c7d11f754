//! `spl status`: which steward answers, its health, and (with a token) its authenticated report.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use syncropel_client::api::HealthReport;
use syncropel_client::{Client, ClientError};

use super::Ctx;
use crate::output::print_json;

pub async fn run(ctx: &Ctx) -> Result<ExitCode> {
    let endpoint = ctx.endpoint()?;
    let token = ctx.token()?;
    let has_token = token.is_some();
    let client = Client::new(&endpoint.url, token)?;
    // The identity is informative only; an uninitialized home is not a status failure.
    let did = ctx.home.did().ok();

    let health = match client.health().await {
        Ok(health) => health,
        Err(err) => {
            // With its causes: "connection refused" is the useful part of a transport error.
            let error = format!("{:#}", anyhow::Error::from(err));
            if ctx.json {
                print_json(&json!({
                    "endpoint": endpoint.url,
                    "endpoint_source": endpoint.source.to_string(),
                    "reachable": false,
                    "error": error,
                    "did": did,
                }));
            } else {
                eprintln!(
                    "no steward answers at {} ({}): {error}",
                    endpoint.url, endpoint.source
                );
                eprintln!("hint: start one with `spl serve --daemon`");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let report = if has_token {
        Some(client.health_report().await)
    } else {
        None
    };

    if ctx.json {
        let (status, status_error) = match &report {
            Some(Ok(status)) => (serde_json::to_value(status)?, Value::Null),
            Some(Err(err)) => (Value::Null, error_json(err)),
            None => (Value::Null, Value::Null),
        };
        print_json(&json!({
            "endpoint": endpoint.url,
            "endpoint_source": endpoint.source.to_string(),
            "reachable": true,
            "health": health,
            "status": status,
            "status_error": status_error,
            "did": did,
        }));
        return Ok(ExitCode::SUCCESS);
    }

    println!("endpoint  {} ({})", endpoint.url, endpoint.source);
    println!("health    {}, version {}", health.status, health.version);
    if let Some(did) = &did {
        println!("identity  {did}");
    }
    match &report {
        Some(Ok(status)) => println!("auth      {}", authorization_summary(status)),
        Some(Err(err)) => println!("auth      {err}"),
        None => {
            println!("auth      no token (pass --token, set SPL_TOKEN or run `spl token save`)")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /v1/health` reports how many authorization deciders are live; that is the line worth
/// showing. A report without deciders is summarised by its `status`.
fn authorization_summary(status: &HealthReport) -> String {
    let auth = &status.authorization;
    if auth.of == 0 {
        format!("token accepted; status {}", status.status)
    } else {
        format!(
            "token accepted; {} of {} authorization deciders live",
            auth.live, auth.of
        )
    }
}

fn error_json(err: &ClientError) -> Value {
    match err {
        ClientError::Api {
            status,
            code,
            message,
            hint,
        } => json!({"status": status, "code": code, "message": message, "hint": hint}),
        other => json!({"message": other.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(answer: Value) -> HealthReport {
        serde_json::from_value(answer).unwrap()
    }

    #[test]
    fn summarises_the_authorization_report() {
        let status = report(json!({"status":"ok","authorization":{"live":3,"of":6,"deciders":[]}}));
        assert_eq!(
            authorization_summary(&status),
            "token accepted; 3 of 6 authorization deciders live"
        );
        assert_eq!(
            authorization_summary(&report(json!({"status":"ok"}))),
            "token accepted; status ok"
        );
    }
}
