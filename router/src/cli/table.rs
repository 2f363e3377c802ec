//! Plain-text tables for the command line: columns padded to their widest cell.

/// Render `rows` under `header`, two spaces between columns, no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines, keys padded to the longest.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<w$}  {v}\n", w = w + 1, k = format!("{k}:"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_have_no_trailing_space() {
        let rows = vec![
            vec!["acme".to_string(), "ready".to_string(), "2/2".to_string()],
            vec!["b".to_string(), "-".to_string(), "".to_string()],
        ];
        let t = render(&["NAME", "STATUS", "PROCS"], &rows);
        assert_eq!(t, "NAME  STATUS  PROCS\nacme  ready   2/2\nb     -\n");
        assert_eq!(
            fields(&[("name", "a".into()), ("mount", "/m".into())]),
            "name:   a\nmount:  /m\n"
        );
    }
}
