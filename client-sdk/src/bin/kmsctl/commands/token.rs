//! `kmsctl token`: create, look up and revoke tokens.

use client_sdk::secrecy::ExposeSecret;
use client_sdk::{Client, NewToken, PolicyRule, TokenInfo};
use serde::Serialize;

use super::print;
use crate::cli::{Format, TokenCommand};
use crate::messages::{self, CliError};
use crate::output;

pub async fn run(client: &Client, format: Format, command: TokenCommand) -> Result<(), CliError> {
    let info = match command {
        TokenCommand::Create {
            policy,
            ttl,
            display_name,
        } => {
            let token = client
                .create_token(&policy, ttl, display_name.as_deref())
                .await?;
            return print_new_token(format, &token);
        }
        TokenCommand::Lookup { accessor: None } => client.lookup_self().await?,
        TokenCommand::Lookup {
            accessor: Some(accessor),
        } => client.lookup_token(&accessor).await?,
        TokenCommand::Revoke { accessor } => client.revoke_token(&accessor).await?,
    };
    print(format, &info, print_info)
}

/// A new token as JSON: the token next to the token info fields, as the API returns it.
#[derive(Serialize)]
struct NewTokenJson<'a> {
    token: &'a str,
    #[serde(flatten)]
    info: &'a TokenInfo,
}

fn print_new_token(format: Format, token: &NewToken) -> Result<(), CliError> {
    eprintln!("{}", messages::TOKEN_WARNING);
    let secret = token.token.expose_secret();
    if format == Format::Json {
        return output::json(&NewTokenJson {
            token: secret,
            info: &token.info,
        });
    }
    output::fields(&[
        ("Token", secret),
        ("Accessor", &token.info.accessor),
        (
            "Expires",
            &output::or_dash(token.info.expires_at.as_deref()),
        ),
    ])
}

fn print_info(info: &TokenInfo) -> Result<(), CliError> {
    let policy = if info.root {
        "root: every operation on every key".to_owned()
    } else {
        policy_text(&info.policy)
    };
    output::fields(&[
        ("Accessor", &info.accessor),
        (
            "Display name",
            &output::or_dash(info.display_name.as_deref()),
        ),
        ("Root", &info.root.to_string()),
        ("Policy", &policy),
        ("Created", &info.created_at),
        ("Expires", info.expires_at.as_deref().unwrap_or("never")),
        ("Revoked", &output::or_dash(info.revoked_at.as_deref())),
    ])
}

/// Writes rules as on the command line: `patient-*:generate,decrypt; billing:describe`.
fn policy_text(policy: &[PolicyRule]) -> String {
    let rules: Vec<String> = policy
        .iter()
        .map(|rule| {
            let operations: Vec<&str> = rule.operations.iter().map(|op| op.as_str()).collect();
            format!("{}:{}", rule.keys.join(","), operations.join(","))
        })
        .collect();
    if rules.is_empty() {
        "-".to_owned()
    } else {
        rules.join("; ")
    }
}
