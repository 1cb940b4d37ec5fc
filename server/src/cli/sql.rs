//! `weft sql "SELECT ..."`: runs a query on a server and prints a table (or JSON lines).

/// Renders rows as an aligned text table: `id` first, then the other fields (in the
/// order the JSON objects list them, first appearance first); strings without quotes, other values as JSON.
pub fn table(rows: &[serde_json::Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        if let Some(object) = row.as_object() {
            for key in object.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    if let Some(at) = columns.iter().position(|c| c == "id") {
        let id = columns.remove(at);
        columns.insert(0, id);
    }
    let cell = |row: &serde_json::Value, column: &str| match row.get(column) {
        None => String::new(),
        Some(serde_json::Value::String(text)) => text.replace('\n', " "),
        Some(other) => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|row| columns.iter().map(|c| cell(row, c)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_owned()
    };
    let mut out = String::new();
    out.push_str(&line(&columns));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&format!("({} row{})\n", rows.len(), if rows.len() == 1 { "" } else { "s" }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_put_id_first_and_align_columns() {
        let rows = vec![
            serde_json::json!({"title": "milk", "id": "t1", "n": 2}),
            serde_json::json!({"id": "t22", "title": "tea", "done": true}),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id  | n | title | done");
        assert_eq!(lines[2], "t1  | 2 | milk  |");
        assert_eq!(lines[3], "t22 |   | tea   | true");
        assert_eq!(lines[4], "(2 rows)");
    }
}
