//! `allot import users.csv|users.jsonl [--dry-run]`: creates or updates users matched by login,
//! with their company, groups and direct licenses, through `POST /v1/batch` (1,000 rows a
//! request).
//! Every bad row is reported with its row number (the file's line; a CSV's header is row 1),
//! field and reason, and the good rows are applied; running it twice changes nothing.
//!
//! CSV columns (a header names them, any order): `login` (required), `first_name`,
//! `last_name`, `email`, `company` (its name; made if missing), `licenses` (`owner/name` or
//! ids, separated by `;`), `groups` (names, separated by `;`: the user joins each, and a group
//! missing is made). An empty cell leaves the field as it is. JSON lines carry the same keys,
//! `licenses` and `groups` as arrays. Groups not named are left alone (an import adds
//! memberships, never removes one).

use std::io::IsTerminal;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::client::Client;
use super::output::json_line;
use crate::api::v1::batch::{BatchResponse, MAX_BATCH};

/// A row the file could not say properly, or the server refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BadRow {
    pub row: u64,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub rows: u64,
    pub applied: u64,
    pub failed: u64,
    pub changed: u64,
    pub dry_run: bool,
}

/// One user as the file states it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    login: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    company: Option<String>,
    #[serde(default)]
    licenses: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

fn bad(row: u64, field: &str, reason: impl Into<String>) -> BadRow {
    BadRow {
        row,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// An empty cell (or value) says nothing.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Checks what the file can be wrong about by itself; the server checks the rest.
fn operation(line: u64, row: Row) -> Result<Value, BadRow> {
    let login = row.login.trim().to_owned();
    if login.is_empty() {
        return Err(bad(line, "login", "missing"));
    }
    let mut licenses = Vec::new();
    for license in row
        .licenses
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
    {
        let is_id = license.parse::<i64>().is_ok();
        let named = license
            .split_once('/')
            .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty());
        if !is_id && !named {
            return Err(bad(
                line,
                "licenses",
                format!("{license:?}: expected owner/name or an id"),
            ));
        }
        licenses.push(license.to_owned());
    }
    let groups: Vec<String> = row
        .groups
        .iter()
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    Ok(json!({
        "op": "upsert_user", "login": login,
        "first_name": given(row.first_name), "last_name": given(row.last_name),
        "email": given(row.email), "company": given(row.company), "licenses": licenses,
        "groups": groups,
    }))
}

/// A row's number in the file and the batch operation it becomes.
type Numbered = (u64, Value);

/// Reads the file into numbered operations and the rows it could not read.
fn read(path: &Path) -> anyhow::Result<(Vec<Numbered>, Vec<BadRow>)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = path.display().to_string();
    match ext.as_str() {
        "csv" => read_csv(std::fs::File::open(path)?, &name),
        "jsonl" | "ndjson" | "json" => Ok(read_jsonl(&std::fs::read_to_string(path)?)),
        other => anyhow::bail!("{name}: expected a .csv or .jsonl file, not {other:?}"),
    }
}

/// A CSV file's rows (`name` names it in errors). Fails only when the header is unusable.
pub(crate) fn read_csv(
    input: impl std::io::Read,
    name: &str,
) -> anyhow::Result<(Vec<Numbered>, Vec<BadRow>)> {
    let mut good = Vec::new();
    let mut bad_rows = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers()?.clone();
    const KNOWN: [&str; 7] = [
        "login",
        "first_name",
        "last_name",
        "email",
        "company",
        "licenses",
        "groups",
    ];
    for h in &headers {
        anyhow::ensure!(
            KNOWN.contains(&h),
            "{name}: unknown column {h:?} (known: {})",
            KNOWN.join(", ")
        );
    }
    anyhow::ensure!(
        headers.iter().any(|h| h == "login"),
        "{name}: no login column"
    );
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bad_rows.push(bad(line, "-", e.to_string()));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != headers.len() {
            bad_rows.push(bad(
                line,
                "-",
                format!("{} cells, the header has {}", record.len(), headers.len()),
            ));
            continue;
        }
        let cell = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .and_then(|i| record.get(i))
                .map(str::to_owned)
        };
        let row = Row {
            login: cell("login").unwrap_or_default(),
            first_name: cell("first_name"),
            last_name: cell("last_name"),
            email: cell("email"),
            company: cell("company"),
            licenses: cell("licenses")
                .map(|l| l.split(';').map(str::to_owned).collect())
                .unwrap_or_default(),
            groups: cell("groups")
                .map(|g| g.split(';').map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        match operation(line, row) {
            Ok(op) => good.push((line, op)),
            Err(b) => bad_rows.push(b),
        }
    }
    Ok((good, bad_rows))
}

/// A JSON-lines file's rows; every line that is not a row is a bad row.
pub(crate) fn read_jsonl(text: &str) -> (Vec<Numbered>, Vec<BadRow>) {
    let mut good = Vec::new();
    let mut bad_rows = Vec::new();
    for (i, text) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(text) {
            Ok(row) => match operation(line, row) {
                Ok(op) => good.push((line, op)),
                Err(b) => bad_rows.push(b),
            },
            Err(e) => {
                let message = e.to_string();
                // serde names the field it missed or did not know.
                let field = message
                    .split('`')
                    .nth(1)
                    .filter(|_| message.contains("field"))
                    .unwrap_or("-");
                bad_rows.push(bad(line, field, message.clone()));
            }
        }
    }
    (good, bad_rows)
}

/// Reads the file, sends its good rows in batches, and prints every bad row and a summary.
/// Fails (after applying the good rows) when any row was bad.
pub async fn run(client: &Client, path: &Path, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let (good, mut bad_rows) = read(path)?;
    let rows = (good.len() + bad_rows.len()) as u64;
    // A bar on a terminal only: never in a pipe, a log, or JSON output.
    let bar = if json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(good.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut applied, mut changed) = (0, 0);
    for chunk in good.chunks(MAX_BATCH) {
        let operations: Vec<&Value> = chunk.iter().map(|(_, op)| op).collect();
        let answer: BatchResponse = client
            .post(
                "/v1/batch",
                &json!({ "operations": operations, "dry_run": dry_run }),
            )
            .await?;
        anyhow::ensure!(
            answer.results.len() == chunk.len(),
            "the server answered {} outcomes for {} rows",
            answer.results.len(),
            chunk.len()
        );
        for ((line, _), result) in chunk.iter().zip(answer.results) {
            if result.ok {
                applied += 1;
                changed += result.changed.unwrap_or(0);
            } else {
                let reason = result.error.map(|e| e.message).unwrap_or_default();
                bad_rows.push(bad(*line, result.field.as_deref().unwrap_or("-"), reason));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    bad_rows.sort_by_key(|b| b.row);
    let summary = Summary {
        rows,
        applied,
        failed: bad_rows.len() as u64,
        changed,
        dry_run,
    };
    if json {
        bad_rows.iter().for_each(json_line);
        json_line(&summary);
    } else {
        for b in &bad_rows {
            println!("row {}: {}: {}", b.row, b.field, b.reason);
        }
        println!(
            "{} rows: {} applied, {} failed, {} changes{}",
            summary.rows,
            summary.applied,
            summary.failed,
            summary.changed,
            if dry_run {
                " (dry run: nothing was written)"
            } else {
                ""
            }
        );
    }
    anyhow::ensure!(bad_rows.is_empty(), "{} bad row(s)", bad_rows.len());
    Ok(())
}
