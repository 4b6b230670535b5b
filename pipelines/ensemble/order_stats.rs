//! A multiset of `f64` drawn from a universe known up front, with insertion, removal and
//! "k-th smallest" in O(log n): a Fenwick tree of counts over the universe's distinct values
//! (ordered by `f64::total_cmp`). The conformal replay knows every score and σ it will ever
//! hold before it starts, and asks one rank per band and day of a set that slides over a
//! year: a sorted `Vec` paid O(set) per day to merge and evict, this O(values · log n).

/// The distinct values of a universe, ascending by `total_cmp`, and each member's rank in it.
pub struct Universe {
    values: Vec<f64>,
}

impl Universe {
    /// The universe of `all` and the rank of each of its items (by position).
    pub fn of(all: &[f64]) -> (Self, Vec<u32>) {
        // Sorted as integers that order as `total_cmp` orders the values (its own mapping:
        // negative values' magnitude bits flipped), beside each item's position.
        let key = |x: f64| {
            let b = x.to_bits() as i64;
            b ^ (((b >> 63) as u64) >> 1) as i64
        };
        let mut order: Vec<(i64, u32)> = all
            .iter()
            .enumerate()
            .map(|(i, x)| (key(*x), i as u32))
            .collect();
        order.sort_unstable();
        // At most every item is distinct: reserved, not grown by copying.
        let mut values: Vec<f64> = Vec::with_capacity(all.len());
        let mut rank = vec![0u32; all.len()];
        let mut last = None;
        for (k, i) in order {
            if last != Some(k) {
                values.push(all[i as usize]);
                last = Some(k);
            }
            rank[i as usize] = (values.len() - 1) as u32;
        }
        (Self { values }, rank)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn value(&self, rank: u32) -> f64 {
        self.values[rank as usize]
    }
}

/// A multiset of ranks of one [`Universe`].
pub struct RankSet {
    /// Fenwick tree (1-based) of counts per rank.
    tree: Vec<u32>,
    len: usize,
    /// The largest power of two not above the universe's size (the descent's first step).
    top: usize,
}

impl RankSet {
    pub fn new(universe_len: usize) -> Self {
        let top = match universe_len {
            0 => 0,
            n => 1 << (usize::BITS - 1 - n.leading_zeros()),
        };
        Self {
            tree: vec![0; universe_len + 1],
            len: 0,
            top,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, rank: u32) {
        let mut i = rank as usize + 1;
        while i < self.tree.len() {
            self.tree[i] += 1;
            i += i & i.wrapping_neg();
        }
        self.len += 1;
    }

    /// Removes one copy of `rank`, which must be in the set.
    pub fn remove(&mut self, rank: u32) {
        let mut i = rank as usize + 1;
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
        self.len -= 1;
    }

    /// The rank of the `k`-th smallest member (0-based; `k < len`).
    pub fn kth(&self, k: usize) -> u32 {
        // Descend to the largest position whose prefix count is <= k: the next one holds it.
        let (mut pos, mut left) = (0usize, k as u64);
        let mut step = self.top;
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && u64::from(self.tree[next]) <= left {
                pos = next;
                left -= u64::from(self.tree[next]);
            }
            step >>= 1;
        }
        pos as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_removals_and_ranks_match_a_sorted_vector() {
        // Ties, both zeros, infinities and a pseudo-random walk of inserts and removals.
        let mut all: Vec<f64> = vec![0.0, -0.0, 1.5, 1.5, f64::INFINITY, -3.25, 1.5, -0.0];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            all.push(((x % 41) as f64 - 20.0) / 4.0);
        }
        let (universe, rank) = Universe::of(&all);
        assert!(universe.len() < all.len());
        let mut set = RankSet::new(universe.len());
        let mut reference: Vec<f64> = Vec::new();
        let mut held: Vec<usize> = Vec::new();
        for (i, &v) in all.iter().enumerate() {
            assert_eq!(universe.value(rank[i]).to_bits(), v.to_bits());
            set.insert(rank[i]);
            reference.push(v);
            held.push(i);
            if i % 3 == 2 {
                let out = held.remove((i * 7) % held.len());
                set.remove(rank[out]);
                let at = reference
                    .iter()
                    .position(|r| r.to_bits() == all[out].to_bits())
                    .expect("held");
                reference.remove(at);
            }
            reference.sort_by(f64::total_cmp);
            assert_eq!(set.len(), reference.len());
            for (k, want) in reference.iter().enumerate() {
                assert_eq!(
                    universe.value(set.kth(k)).to_bits(),
                    want.to_bits(),
                    "k {k}"
                );
            }
        }
    }

    #[test]
    fn an_empty_universe_makes_an_empty_set() {
        let (universe, rank) = Universe::of(&[]);
        assert!(universe.len() == 0 && rank.is_empty());
        assert!(RankSet::new(0).is_empty());
    }
}
