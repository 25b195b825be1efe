//! `haven user …` and `haven token …`: accounts and tokens managed from the server's own machine
//! (the first admin is made this way). They work on the accounts file directly, so also while the
//! server runs: it reads accounts at every request.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;

use super::{password, AccountStore, Role, Scope, StoreError};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Make an account. The password is asked for on the terminal (twice, not shown), or read as one
    /// line from stdin when stdin is not a terminal; never from the command line, where other users
    /// of the machine and the shell's history would see it
    Add {
        /// The account's name: 1-64 letters, digits, '_', '-' or '.'
        name: String,
        /// admin (everything), operator (watch, acknowledge, snooze) or viewer (watch only)
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// The cameras the account sees, names or globs separated by commas (ward-a-*,door); all
        /// cameras when left out
        #[arg(long, value_name = "LIST")]
        cameras: Option<String>,
    },
    /// List the accounts: name, role, cameras
    List,
    /// Give an account a new password (asked for as `add` does); its sessions end
    Passwd {
        name: String,
    },
    /// Remove an account; its sessions end
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for an integration and print it, once: only its hash is kept. Send it as
    /// "Authorization: Bearer TOKEN"
    Create {
        /// The token's name (what it is for): 1-64 letters, digits, '_', '-' or '.'
        name: String,
        /// admin, operator or viewer
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// The cameras it sees, names or globs separated by commas; all when left out
        #[arg(long, value_name = "LIST")]
        cameras: Option<String>,
        /// The token stops working after N days; never when left out
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List the tokens (names, roles, cameras, expiry; never the tokens themselves)
    List,
    /// Revoke a token: it stops working at once
    Revoke {
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Password(#[from] password::PasswordError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the password: {0}")]
    Read(std::io::Error),
}

fn scope(list: Option<&str>) -> Result<Scope, CliError> {
    list.map_or(Ok(Scope::all()), Scope::parse_list).map_err(CliError::Usage)
}

/// A new password: from the terminal without echo (asked twice), else one line of stdin.
fn read_new_password() -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(CliError::Read)?;
        password::check_new(&first)?;
        let again = rpassword::prompt_password("Password again: ").map_err(CliError::Read)?;
        if first != again {
            return Err(CliError::Usage("the two passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(CliError::Read)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

fn cameras_shown(s: &Scope) -> String {
    if s.is_all() {
        "all".into()
    } else {
        s.patterns().join(",")
    }
}

/// Runs `haven user …` on the accounts in `data_dir`; what it prints goes to `out`.
pub fn user(data_dir: &Path, command: &UserCommand, out: &mut impl Write) -> Result<(), CliError> {
    let store = AccountStore::open(data_dir)?;
    match command {
        UserCommand::Add { name, role, cameras } => {
            super::store::check_name("name", name)?;
            let scope = scope(cameras.as_deref())?;
            let phc = password::hash(&read_new_password()?)?;
            store.add_user(name, &phc, *role, &scope)?;
            store.audit("command line", "user add", name, &format!("role {}, cameras {}", role.as_str(), cameras_shown(&scope)));
            let _ = writeln!(out, "account {name} added: {}, cameras {}", role.as_str(), cameras_shown(&scope));
        }
        UserCommand::List => {
            for u in store.users()? {
                let _ = writeln!(out, "{}\t{}\t{}", u.name, u.role.as_str(), cameras_shown(&u.cameras));
            }
        }
        UserCommand::Passwd { name } => {
            if store.user(name)?.is_none() {
                return Err(StoreError::NotFound(format!("no account named {name}")).into());
            }
            let phc = password::hash(&read_new_password()?)?;
            store.update_user(name, Some(&phc), None, None)?;
            store.audit("command line", "user passwd", name, "password changed; sessions ended");
            let _ = writeln!(out, "password of {name} changed; its sessions ended");
        }
        UserCommand::Remove { name } => {
            store.remove_user(name, false)?;
            store.audit("command line", "user remove", name, "");
            let _ = writeln!(out, "account {name} removed");
        }
    }
    Ok(())
}

/// Runs `haven token …` on the accounts in `data_dir`.
pub fn token(data_dir: &Path, command: &TokenCommand, out: &mut impl Write) -> Result<(), CliError> {
    let store = AccountStore::open(data_dir)?;
    match command {
        TokenCommand::Create { name, role, cameras, expires_in_days } => {
            let scope = scope(cameras.as_deref())?;
            let (secret, view) = store.add_token(name, *role, &scope, *expires_in_days, "command line")?;
            store.audit("command line", "token create", name, &format!("role {}, cameras {}", role.as_str(), cameras_shown(&scope)));
            let _ = writeln!(out, "{secret}");
            let expiry = view.expires_at.map_or("never expires".to_string(), |_| format!("expires in {} days", expires_in_days.unwrap_or(0)));
            eprintln!("token {name} ({}, cameras {}, {expiry}): shown once, only its hash is kept", role.as_str(), cameras_shown(&scope));
        }
        TokenCommand::List => {
            for t in store.tokens()? {
                let expiry = t.expires_at.map_or("never".to_string(), |at| format!("{at:.0}"));
                let _ = writeln!(out, "{}\t{}\t{}\texpires {expiry}", t.name, t.role.as_str(), cameras_shown(&t.cameras));
            }
        }
        TokenCommand::Revoke { name } => {
            store.remove_token(name)?;
            store.audit("command line", "token revoke", name, "");
            let _ = writeln!(out, "token {name} revoked");
        }
    }
    Ok(())
}
