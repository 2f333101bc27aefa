//! A small reader for the comma-separated tables data sets ship (BUS-BRA's
//! `bus_data.csv` and fold files): RFC 4180 quoting (`"[91,24,103,79]"`,
//! doubled quotes), CRLF or LF line ends, a header row, and errors that name the
//! file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::DataError;

/// A parsed table: the header's column names and the rows, each with the line
/// it started on (1-based, the header being line 1).
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<(usize, Vec<String>)>,
    index: HashMap<String, usize>,
}

impl Table {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Table, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| DataError::Table {
            path: path.to_path_buf(),
            line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            why: "not UTF-8 text".into(),
        })?;
        Table::parse(path, &text)
    }

    /// Parses `text`; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Table, DataError> {
        let err = |line: usize, why: String| DataError::Table {
            path: path.to_path_buf(),
            line,
            why,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut records: Vec<(usize, Vec<String>)> = Vec::new();
        let mut field = String::new();
        let mut record: Vec<String> = Vec::new();
        let mut line = 1;
        let mut start = 1;
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() => quoted = true,
                '"' => return Err(err(line, "a quote inside an unquoted field".into())),
                ',' => record.push(std::mem::take(&mut field)),
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    record.push(std::mem::take(&mut field));
                    records.push((start, std::mem::take(&mut record)));
                    line += 1;
                    start = line;
                }
                _ => field.push(c),
            }
        }
        if quoted {
            return Err(err(start, "a quoted field is not closed".into()));
        }
        if !field.is_empty() || !record.is_empty() {
            record.push(field);
            records.push((start, record));
        }
        // Blank lines carry nothing.
        records.retain(|(_, r)| !(r.len() == 1 && r[0].trim().is_empty()));
        let mut it = records.into_iter();
        let Some((_, header)) = it.next() else {
            return Err(err(1, "the file is empty (no header row)".into()));
        };
        let columns: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
        let mut index = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            if index.insert(c.to_ascii_lowercase(), i).is_some() {
                return Err(err(1, format!("column {c:?} appears twice in the header")));
            }
        }
        let mut rows = Vec::new();
        for (l, r) in it {
            if r.len() != columns.len() {
                return Err(err(
                    l,
                    format!(
                        "{} fields where the header has {} columns",
                        r.len(),
                        columns.len()
                    ),
                ));
            }
            rows.push((l, r.into_iter().map(|f| f.trim().to_string()).collect()));
        }
        Ok(Table {
            path: path.to_path_buf(),
            columns,
            rows,
            index,
        })
    }

    /// The index of a column (case-insensitive), or an error naming the file and
    /// the columns it has.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.index
            .get(&name.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| DataError::Table {
                path: self.path.clone(),
                line: 1,
                why: format!(
                    "no column {name:?} (the header has {})",
                    self.columns.join(", ")
                ),
            })
    }

    /// An error about row `line`.
    pub fn error(&self, line: usize, why: impl Into<String>) -> DataError {
        DataError::Table {
            path: self.path.clone(),
            line,
            why: why.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Table, DataError> {
        Table::parse(Path::new("t.csv"), text)
    }

    #[test]
    fn quoted_fields_keep_their_commas_and_quotes() {
        let t =
            parse("ID,BBOX,Note\r\nbus_1,\"[1,2,3,4]\",\"say \"\"hi\"\"\"\r\n\nbus_2,x,y").unwrap();
        assert_eq!(t.columns, ["ID", "BBOX", "Note"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(
            t.rows[0],
            (
                2,
                vec!["bus_1".into(), "[1,2,3,4]".into(), "say \"hi\"".into()]
            )
        );
        assert_eq!(t.rows[1].0, 4);
        assert_eq!(t.column("bbox").unwrap(), 1);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(
            e.contains("t.csv") && e.contains("line 3") && e.contains("1 fields"),
            "{e}"
        );
        let e = parse("a,b\n1,\"2\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not closed"), "{e}");
        let e = parse("a,b\n1,2\n")
            .unwrap()
            .column("c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"c\"") && e.contains("a, b"), "{e}");
        assert!(parse("").is_err());
    }
}
