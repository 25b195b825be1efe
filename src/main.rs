//! `haven [serve] [--settings PATH]` runs the server.

use std::path::PathBuf;

use anyhow::{bail, Context};
use haven::settings::Settings;
use haven::Application;

const USAGE: &str = "usage:
  haven [serve] [--settings PATH]      run the server (default settings/default.toml)";

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    haven::configure_process_env();

    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some("serve") | Some("detect") => args.next().unwrap(),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => "serve".to_string(),
    };
    let mut settings_path = PathBuf::from("settings/default.toml");
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--settings" => settings_path = args.next().context("--settings needs a path")?.into(),
            _ => rest.push(arg),
        }
    }
    match command.as_str() {
        "serve" => {
            if !rest.is_empty() {
                bail!("unexpected arguments: {}\n{USAGE}", rest.join(" "));
            }
            serve(settings_path)
        }
        other => bail!("unknown command {other}\n{USAGE}"),
    }
}

fn serve(settings_path: PathBuf) -> anyhow::Result<()> {
    let settings = Settings::load(&settings_path)?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, None).await?;
        app.run_until_stopped().await?;
        anyhow::Ok(())
    })
}
