//! The two wire forms of released values: a message each
//! ([`ReleasedCount`], [`PictureCell`]) or columns ([`ReleaseColumns`],
//! [`PictureColumns`]), and the conversions between them. Both forms hold the
//! same values in the same order; which one a caller gets is its choice.

use crate::v1::{GridCell, PeerAnswer, PictureCell, PictureColumns, ReleaseColumns, ReleasedCount};
use prost_types::Timestamp;

impl ReleaseColumns {
    /// Empty columns with room for `n` values each.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            bucket: Vec::with_capacity(n),
            category: Vec::with_capacity(n),
            easting: Vec::with_capacity(n),
            northing: Vec::with_capacity(n),
            count: Vec::with_capacity(n),
            severity_sum: Vec::with_capacity(n),
        }
    }

    /// How many values, if every column has that many; `None` if they differ
    /// (a malformed answer).
    pub fn checked_len(&self) -> Option<usize> {
        let n = self.bucket.len();
        [
            self.category.len(),
            self.easting.len(),
            self.northing.len(),
            self.count.len(),
            self.severity_sum.len(),
        ]
        .iter()
        .all(|&len| len == n)
        .then_some(n)
    }
}

impl PictureColumns {
    /// How many values, if the columns agree with each other: the same length
    /// everywhere and as many contributors as counted. `None` for a malformed
    /// picture.
    pub fn checked_len(&self) -> Option<usize> {
        let values = self.values.as_ref()?;
        let n = values.checked_len()?;
        let named: usize = self.contributor_count.iter().map(|&c| c as usize).sum();
        (self.contributor_count.len() == n && named == self.contributors.len()).then_some(n)
    }
}

/// The columns of `rows`. A row without a cell gets cell (0, 0); a profile row
/// its slot as the bucket.
pub fn columns_of(rows: &[ReleasedCount]) -> ReleaseColumns {
    let n = rows.len();
    let mut columns = ReleaseColumns::with_capacity(n);
    for row in rows {
        let cell = row.cell.unwrap_or_default();
        columns
            .bucket
            .push(row.bucket_start.map_or(i64::from(row.slot), |t| t.seconds));
        columns.category.push(row.category);
        columns.easting.push(cell.easting);
        columns.northing.push(cell.northing);
        columns.count.push(row.count);
        columns.severity_sum.push(row.severity_sum);
    }
    columns
}

/// One row of `columns`: with cells of `size_m` (none for totals), a slot for
/// profiles, a bucket start otherwise.
fn row(columns: &ReleaseColumns, i: usize, size_m: Option<u32>, profile: bool) -> ReleasedCount {
    let bucket = columns.bucket[i];
    ReleasedCount {
        cell: size_m.map(|size_m| GridCell {
            size_m,
            easting: columns.easting[i],
            northing: columns.northing[i],
        }),
        bucket_start: (!profile).then_some(Timestamp {
            seconds: bucket,
            nanos: 0,
        }),
        slot: if profile {
            u32::try_from(bucket).unwrap_or(0)
        } else {
            0
        },
        category: columns.category[i],
        count: columns.count[i],
        severity_sum: columns.severity_sum[i],
    }
}

/// The rows of `columns` (which must be [`checked_len`](ReleaseColumns::checked_len)):
/// cells of `size_m` (`None` for totals, which have no cell), slots for profiles.
pub fn rows(columns: &ReleaseColumns, size_m: Option<u32>, profile: bool) -> Vec<ReleasedCount> {
    let n = columns.checked_len().unwrap_or(0);
    (0..n).map(|i| row(columns, i, size_m, profile)).collect()
}

/// The cells of a columnar picture (which must be
/// [`checked_len`](PictureColumns::checked_len)), as `PictureCell`s: each
/// withheld by the `answers` that cover its category and did not give it.
pub fn picture_rows(
    columns: &PictureColumns,
    size_m: u32,
    profile: bool,
    answers: &[PeerAnswer],
) -> Vec<PictureCell> {
    let (Some(n), Some(values)) = (columns.checked_len(), columns.values.as_ref()) else {
        return Vec::new();
    };
    let mut gave = 0;
    (0..n)
        .map(|i| {
            let count = columns.contributor_count[i] as usize;
            let contributors = columns.contributors[gave..gave + count].to_vec();
            gave += count;
            let category = values.category[i];
            let withheld_by = answers
                .iter()
                .enumerate()
                .filter(|(a, answer)| {
                    answer.categories.contains(&category) && !contributors.contains(&(*a as u32))
                })
                .map(|(a, _)| a as u32)
                .collect();
            PictureCell {
                value: Some(row(values, i, Some(size_m), profile)),
                contributors,
                withheld_by,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(hour: i64, category: i32, easting: u32, count: u64) -> ReleasedCount {
        ReleasedCount {
            cell: Some(GridCell {
                size_m: 250,
                easting,
                northing: 6_580_000,
            }),
            bucket_start: Some(Timestamp {
                seconds: hour * 3600,
                nanos: 0,
            }),
            slot: 0,
            category,
            count,
            severity_sum: 3 * count,
        }
    }

    #[test]
    fn rows_and_columns_hold_the_same_values_in_the_same_order() {
        let rows_in = vec![
            value(1, 2, 674_000, 4),
            value(1, 3, 674_250, 9),
            value(2, 2, 674_000, 3),
        ];
        let columns = columns_of(&rows_in);
        assert_eq!(columns.checked_len(), Some(3));
        assert_eq!(columns.count, vec![4, 9, 3]);
        assert_eq!(rows(&columns, Some(250), false), rows_in);
        // A profile's slot survives both ways.
        let slot = ReleasedCount {
            bucket_start: None,
            slot: 17,
            ..value(0, 2, 674_000, 5)
        };
        let columns = columns_of(std::slice::from_ref(&slot));
        assert_eq!(columns.bucket, vec![17]);
        assert_eq!(rows(&columns, Some(250), true), vec![slot]);
    }

    #[test]
    fn columns_of_different_lengths_are_malformed() {
        let mut columns = columns_of(&[value(1, 2, 674_000, 4)]);
        columns.count.push(1);
        assert_eq!(columns.checked_len(), None);
        assert!(rows(&columns, Some(250), false).is_empty());
        let picture = PictureColumns {
            values: Some(columns_of(&[
                value(1, 2, 674_000, 4),
                value(1, 3, 674_000, 4),
            ])),
            contributor_count: vec![1, 2],
            contributors: vec![0, 1, 2],
        };
        assert_eq!(picture.checked_len(), Some(2));
        // Answer 3 covers category 3 and gave nothing: it withheld value 1.
        let answer = |categories: Vec<i32>| PeerAnswer {
            categories,
            ..PeerAnswer::default()
        };
        let answers = [
            answer(vec![2]),
            answer(vec![3]),
            answer(vec![3]),
            answer(vec![2, 3]),
        ];
        let cells = picture_rows(&picture, 250, false, &answers);
        assert_eq!(cells[0].contributors, vec![0]);
        assert_eq!(cells[0].withheld_by, vec![3]);
        assert_eq!(cells[1].contributors, vec![1, 2]);
        assert_eq!(cells[1].withheld_by, vec![3]);
        let short = PictureColumns {
            contributors: vec![0, 1],
            ..picture
        };
        assert_eq!(short.checked_len(), None, "a contributor missing");
    }
}
