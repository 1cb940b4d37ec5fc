//! `weft import` and `weft export`: JSON lines, one object per record with its key in
//! `id`, over the server's HTTP API (so rules and limits apply as to any client).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use weft_client::http::HttpClient;

/// Records sent per request by `weft import`.
pub const IMPORT_BATCH: usize = 500;

/// Why an import or export failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the input is not a record.
    #[error("{path} line {line}: {reason}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The server refused or failed.
    #[error("server: {0}")]
    Server(#[from] weft_client::ClientError),
}

fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{bytes}}/{{total_bytes}} ({{per_sec}}, {{eta}} left)"
            )) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) =
                ProgressStyle::with_template(&format!("{what} {{spinner}} {{pos}} records ({{per_sec}})"))
            {
                bar.set_style(style);
            }
            bar
        }
    }
}

/// Imports `file` into `collection`; returns the number of records written.
pub async fn import(client: &HttpClient, collection: &str, file: &Path) -> Result<u64, TransferError> {
    let path = file.display().to_string();
    let io = |source| TransferError::Io { path: path.clone(), source };
    let size = std::fs::metadata(file).map_err(io)?.len();
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
    let bar = progress(Some(size), "importing");
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut written = 0u64;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| TransferError::BadLine { path: path.clone(), line: index + 1, reason };
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(bad("expected a JSON object".to_owned()));
        };
        let id = match fields.remove("id") {
            Some(serde_json::Value::String(id)) => id,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad("missing string `id`".to_owned())),
        };
        batch.push(serde_json::json!({"collection": collection, "id": id, "op": "put", "fields": fields}));
        if batch.len() == IMPORT_BATCH {
            written += send(client, &mut batch).await?;
        }
    }
    written += send(client, &mut batch).await?;
    bar.finish_and_clear();
    Ok(written)
}

async fn send(client: &HttpClient, batch: &mut Vec<serde_json::Value>) -> Result<u64, TransferError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let count = batch.len() as u64;
    client.sync_json(&serde_json::json!({ "writes": std::mem::take(batch) })).await?;
    Ok(count)
}

/// Exports `collection` to `out` (a file, or stdout when `None`); returns the count.
pub async fn export(client: &HttpClient, collection: &str, out: Option<&Path>) -> Result<u64, TransferError> {
    let path = out.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let io = |source| TransferError::Io { path: path.clone(), source };
    let mut writer: Box<dyn Write> = match out {
        Some(file) => Box::new(std::io::BufWriter::new(std::fs::File::create(file).map_err(io)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = progress(None, "exporting");
    let mut after: Option<String> = None;
    let mut count = 0u64;
    loop {
        let (records, next) = client.list(collection, after.as_deref(), crate::http::records::PAGE_LIMIT_MAX).await?;
        for record in &records {
            serde_json::to_writer(&mut writer, record).map_err(|e| io(e.into()))?;
            writer.write_all(b"\n").map_err(io)?;
        }
        count += records.len() as u64;
        bar.inc(records.len() as u64);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writer.flush().map_err(io)?;
    bar.finish_and_clear();
    Ok(count)
}
