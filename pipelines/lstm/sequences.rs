//! Feature rows as sequences: each row's window of its code's previous rows, standardised.

use crate::lgbm::FeatureRows;
use crate::linear::model::z_score;

/// The rows ordered by (code, date), their robust z-scores, and where each code's rows begin.
pub(crate) struct Sequences {
    /// Position k holds the original row `order[k]`.
    pub order: Vec<usize>,
    z: Vec<f64>,
    /// The position of the first row of position k's code.
    first: Vec<usize>,
    n: usize,
}

impl Sequences {
    pub fn new(rows: &FeatureRows, centre: &[f64], scale: &[f64]) -> Self {
        let n = rows.n_features;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| {
            (&rows.codes[a], rows.dates[a]).cmp(&(&rows.codes[b], rows.dates[b]))
        });
        let mut z = Vec::with_capacity(order.len() * n);
        let mut first = Vec::with_capacity(order.len());
        for (k, &r) in order.iter().enumerate() {
            z.extend(
                rows.row(r)
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| z_score(x, centre[j], scale[j])),
            );
            let same_code = k > 0 && rows.codes[order[k - 1]] == rows.codes[r];
            first.push(if same_code { first[k - 1] } else { k });
        }
        Self { order, z, first, n }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Position k's window into `out`: the last `seq_len` rows of its code up to and including
    /// it, oldest first, with zeros (every input at its median) before the code's first row.
    pub fn window(&self, k: usize, seq_len: usize, out: &mut Vec<f64>) {
        let n = self.n;
        out.clear();
        out.resize(seq_len * n, 0.0);
        let have = (k + 1 - self.first[k]).min(seq_len);
        let start = k + 1 - have;
        out[(seq_len - have) * n..].copy_from_slice(&self.z[start * n..(k + 1) * n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_only_its_own_codes_earlier_rows_padded_in_front() {
        // Rows out of order: B's two days, then A's three.
        let rows = FeatureRows {
            codes: ["B", "A", "B", "A", "A"].map(String::from).to_vec(),
            dates: vec![2, 3, 1, 1, 2],
            x: vec![22.0, 13.0, 21.0, 11.0, 12.0],
            n_features: 1,
        };
        // Identity standardisation (the values stay under the clip of 3 after /10).
        let s = Sequences::new(&rows, &[0.0], &[10.0]);
        let at = |code: &str, date: i32| {
            (0..s.len())
                .find(|&k| rows.codes[s.order[k]] == code && rows.dates[s.order[k]] == date)
                .expect("row")
        };
        let mut w = Vec::new();
        s.window(at("A", 3), 2, &mut w);
        assert_eq!(w, [1.2, 1.3]);
        s.window(at("A", 1), 3, &mut w);
        assert_eq!(w, [0.0, 0.0, 1.1]);
        // B's first day never sees A's last.
        s.window(at("B", 1), 2, &mut w);
        assert_eq!(w, [0.0, 2.1]);
        s.window(at("B", 2), 4, &mut w);
        assert_eq!(w, [0.0, 0.0, 2.1, 2.2]);
    }
}
