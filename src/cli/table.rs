//! Plain-text tables: upper-case headers, left-aligned columns two spaces apart,
//! `(none)` under the header when there are no rows.

/// `rows` (one cell per column) under `columns`, as text without a final newline.
pub(crate) fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            rows.iter()
                .filter_map(|row| row.get(i).map(String::len))
                .chain([column.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut out = vec![line(&header.iter().map(String::as_str).collect::<Vec<_>>())];
    for row in rows {
        out.push(line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    if rows.is_empty() {
        out.push("(none)".to_owned());
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["demo".to_owned(), "builtin".to_owned()],
            vec!["a-long-name".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            table(&["name", "transport"], &rows),
            "NAME         TRANSPORT\ndemo         builtin\na-long-name  -"
        );
        assert_eq!(table(&["name"], &[]), "NAME\n(none)");
    }
}
