//! `coupon-host accounts add | list | show | remove | authorize | rekey`. Secrets never come on
//! the command line (`ps` shows it): they are read from an environment variable or stdin.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use coupon_host::{AccountInfo, AccountSpec, Host};

#[derive(Subcommand)]
pub(crate) enum AccountsCommand {
    /// Keep a merchant's authorization on a plugin (replacing one of that name).
    Add {
        /// The plugin.
        plugin: String,
        /// The account's name: letters, digits, '-', '_', '.'.
        name: String,
        /// TOP: the environment variable holding the seller's session.
        #[arg(long, value_name = "VAR", conflicts_with = "session_stdin")]
        session_env: Option<String>,
        /// TOP: read the seller's session from stdin (one line).
        #[arg(long)]
        session_stdin: bool,
        /// Douyin: the merchant's own client key (with --client-secret-env).
        #[arg(long, requires = "client_secret_env")]
        client_key: Option<String>,
        /// Douyin: the environment variable holding the merchant's client secret.
        #[arg(long, value_name = "VAR", requires = "client_key")]
        client_secret_env: Option<String>,
        /// A setting that overrides the plugin's for this merchant, `KEY=VALUE`; repeatable.
        #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = crate::cli::parse_option)]
        settings: Vec<(String, String)>,
        /// Requests per second for this account alone, under the app's own limit.
        #[arg(long)]
        qps: Option<u32>,
        /// Print the account as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A plugin's accounts, without secrets.
    List {
        /// The plugin.
        plugin: String,
        /// Print `{"accounts":[…]}`.
        #[arg(long)]
        json: bool,
    },
    /// One account, without secrets.
    Show {
        /// The plugin.
        plugin: String,
        /// The account.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Forget a kept account.
    Remove {
        /// The plugin.
        plugin: String,
        /// The account.
        name: String,
    },
    /// Exchange an OAuth authorization code for the account's session (TOP), through the host.
    Authorize {
        /// The plugin.
        plugin: String,
        /// The account (created if new).
        name: String,
        /// The code the authorize page gave the merchant (short-lived, single-use).
        #[arg(long)]
        code: String,
        /// Print the account as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Seal every kept account again under a new master key, then use that key.
    Rekey {
        /// The environment variable holding the new master key (64 hex digits).
        #[arg(long, value_name = "VAR")]
        new_key_env: String,
    },
}

impl AccountsCommand {
    /// Whether it was given `--json` (its failure is then a JSON object too).
    pub(crate) fn json(&self) -> bool {
        match self {
            AccountsCommand::Add { json, .. }
            | AccountsCommand::List { json, .. }
            | AccountsCommand::Show { json, .. }
            | AccountsCommand::Authorize { json, .. } => *json,
            AccountsCommand::Remove { .. } | AccountsCommand::Rekey { .. } => false,
        }
    }
}

fn read_env(var: &str) -> anyhow::Result<String> {
    let value =
        std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    anyhow::ensure!(
        !value.trim().is_empty(),
        "environment variable {var} is empty"
    );
    Ok(value)
}

pub(crate) async fn run(host: &Host, command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Add {
            plugin,
            name,
            session_env,
            session_stdin,
            client_key,
            client_secret_env,
            settings,
            qps,
            json,
        } => {
            let mut spec = AccountSpec::new(name);
            if let Some(var) = session_env {
                spec = spec.session(read_env(&var)?);
            }
            if session_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_to_string(&mut line)
                    .context("cannot read the session from stdin")?;
                let line = line.trim();
                anyhow::ensure!(!line.is_empty(), "no session on stdin");
                spec = spec.session(line);
            }
            if let (Some(key), Some(var)) = (client_key, client_secret_env) {
                spec = spec.client(key, read_env(&var)?);
            }
            for (key, value) in settings {
                spec = spec.setting(key, value);
            }
            spec.qps = qps;
            let account = host.account_add(&plugin, spec).await?;
            if let Some(warning) = &account.warning {
                eprintln!("warning: {warning}");
            }
            print_account(&account, json)?;
        }
        AccountsCommand::List { plugin, json } => {
            let accounts = host.account_list(&plugin).await?;
            if json {
                crate::cli::print_json(&serde_json::json!({ "accounts": accounts }))?;
            } else {
                for account in &accounts {
                    print_line(account);
                }
                println!("{}", crate::cli::count(accounts.len(), "account"));
            }
        }
        AccountsCommand::Show { plugin, name, json } => {
            let account = host.account_show(&plugin, &name).await?;
            print_account(&account, json)?;
        }
        AccountsCommand::Remove { plugin, name } => {
            host.account_remove(&plugin, &name).await?;
            println!("removed account {name} of {plugin}");
        }
        AccountsCommand::Authorize {
            plugin,
            name,
            code,
            json,
        } => {
            let account = host.account_authorize(&plugin, &name, &code).await?;
            print_account(&account, json)?;
        }
        AccountsCommand::Rekey { new_key_env } => {
            let count = host.accounts_rekey(&new_key_env).await?;
            println!(
                "sealed {} again under the key in {new_key_env}; now set [accounts] master_key_env = \"{new_key_env}\" in the config (or give the old variable the new key), for every host",
                crate::cli::count(count, "account")
            );
        }
    }
    Ok(())
}

fn print_account(account: &AccountInfo, json: bool) -> anyhow::Result<()> {
    if json {
        crate::cli::print_json(account)
    } else {
        print_line(account);
        Ok(())
    }
}

fn print_line(account: &AccountInfo) {
    let expires = account
        .expires_at
        .map(|at| format!("session until {at}"))
        .unwrap_or_else(|| "-".to_owned());
    println!(
        "{}\t{}\t{}\t{}{}",
        account.name,
        account.state,
        account.source,
        expires,
        account
            .reason
            .as_deref()
            .map(|r| format!("\t{r}"))
            .unwrap_or_default()
    );
}
