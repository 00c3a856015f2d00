//! A small RFC 4180 CSV reader (quoted fields, doubled quotes, commas and
//! newlines inside quotes) for the calibration tables, with lookups by
//! column name that report the file, row and column on failure.

use crate::model_error::ModelError;

/// A parsed table: a header and rows of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    file: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn split_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    records
}

impl Table {
    /// Parses `text`; `file` names it in errors.
    ///
    /// # Errors
    /// [`ModelError::Data`] for an empty file or a row whose field count
    /// differs from the header's.
    pub fn parse(text: &str, file: &str) -> Result<Table, ModelError> {
        let mut records = split_records(text).into_iter();
        let header = records.next().ok_or_else(|| ModelError::Data {
            file: file.to_string(),
            detail: "empty file, expected a header row".into(),
        })?;
        let rows: Vec<Vec<String>> = records.collect();
        for (i, r) in rows.iter().enumerate() {
            if r.len() != header.len() {
                return Err(ModelError::Data {
                    file: file.to_string(),
                    detail: format!(
                        "row {}: {} fields, the header has {}",
                        i + 2,
                        r.len(),
                        header.len()
                    ),
                });
            }
        }
        Ok(Table {
            file: file.to_string(),
            header,
            rows,
        })
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The file name given to [`Table::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Field `column` of data row `row` (0-based), trimmed.
    ///
    /// # Errors
    /// [`ModelError::Data`] when the column does not exist.
    pub fn get(&self, row: usize, column: &str) -> Result<&str, ModelError> {
        let c = self
            .header
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| ModelError::Data {
                file: self.file.clone(),
                detail: format!("missing column `{column}`"),
            })?;
        Ok(self.rows[row][c].trim())
    }

    /// Field `column` of row `row` as a number.
    ///
    /// # Errors
    /// [`ModelError::Data`] naming the row and column when it is not a number.
    pub fn number(&self, row: usize, column: &str) -> Result<f64, ModelError> {
        let s = self.get(row, column)?;
        s.parse::<f64>().map_err(|_| ModelError::Data {
            file: self.file.clone(),
            detail: format!("row {}: column `{column}`: `{s}` is not a number", row + 2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_commas_quotes_and_newlines() {
        let t = Table::parse("a,b\n\"x, \"\"y\"\"\",\"1\n2\"\n3,4\n", "t.csv").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0, "a").unwrap(), "x, \"y\"");
        assert_eq!(t.get(0, "b").unwrap(), "1\n2");
        assert_eq!(t.number(1, "b").unwrap(), 4.0);
        assert!(t.get(0, "c").is_err());
        assert!(Table::parse("a,b\n1\n", "t.csv").is_err());
    }
}
