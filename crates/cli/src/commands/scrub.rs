//! `lagesbild scrub`: what a text becomes before it may leave the node, and
//! which rule removed what; for a privacy officer deciding on `text = true`.

use anyhow::{bail, Context, Result};
use lagesbild_privacy::scrub::{scrub_explained, Known};
use std::io::Read;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The text; read from standard input if left out.
    text: Option<String>,
    /// A person the report lists (removed wherever the text names them);
    /// may be given more than once.
    #[arg(long = "person")]
    persons: Vec<String>,
    /// A vehicle plate the report lists; may be given more than once.
    #[arg(long = "plate")]
    plates: Vec<String>,
    /// Print JSON instead of words.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let text = match args.text {
        Some(text) => text,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the text from standard input (it must be UTF-8)")?;
            text
        }
    };
    if text.trim().is_empty() {
        bail!("there is no text to scrub: give it as an argument or on standard input");
    }
    let known = Known {
        names: args.persons.iter().map(String::as_str).collect(),
        plates: args.plates.iter().map(String::as_str).collect(),
    };
    let (scrubbed, removed) = scrub_explained(&text, &known);
    if args.json {
        let removed: Vec<serde_json::Value> = removed
            .iter()
            .map(|r| {
                serde_json::json!({
                    "rule": r.rule,
                    "placeholder": r.placeholder,
                    "removed": r.text,
                })
            })
            .collect();
        let out = serde_json::json!({ "scrubbed": scrubbed, "removed": removed });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{}", scrubbed.trim_end());
    if removed.is_empty() {
        println!("\nNothing was removed.");
    } else {
        println!();
        for r in &removed {
            println!("{:<22} {:?}  ({})", r.placeholder, r.text, r.rule);
        }
    }
    Ok(())
}
