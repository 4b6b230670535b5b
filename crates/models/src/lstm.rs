//! A one-layer LSTM with a linear head, its gradient by backpropagation through time, and Adam.
//!
//! Gates in PyTorch's order (input, forget, cell, output):
//! `a = W·x_t + U·h_{t−1} + b`, `i, f, o = σ(a_i, a_f, a_o)`, `g = tanh(a_g)`,
//! `c_t = f⊙c_{t−1} + i⊙g`, `h_t = o⊙tanh(c_t)`, from `h_0 = c_0 = 0`; the outputs are
//! `y = V·h_T + d`, one per horizon. The loss is half the squared error of each output that has
//! a label. Everything is `f64` and single-threaded, so a fit is the same bit for bit on every
//! run (the model's version is a hash of it).

use serde::{Deserialize, Serialize};

/// The network: sizes and one flat parameter vector `[W | U | b | V | d]`, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lstm {
    pub n_in: usize,
    pub hidden: usize,
    pub n_out: usize,
    pub params: Vec<f64>,
}

/// What a forward pass keeps for the backward one, per step: the gates after their
/// activations (`i f g o`), the cell and the hidden state.
#[derive(Debug, Default)]
pub struct Tape {
    gates: Vec<f64>,
    c: Vec<f64>,
    h: Vec<f64>,
}

/// A small deterministic generator (SplitMix64) for initialisation and shuffling.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Lstm {
    /// PyTorch's initialisation, uniform in ±1/√hidden, with the forget gate's bias at 1 (a
    /// new network remembers by default).
    pub fn new(n_in: usize, hidden: usize, n_out: usize, rng: &mut SplitMix) -> Self {
        let mut net = Self {
            n_in,
            hidden,
            n_out,
            params: Vec::new(),
        };
        let k = 1.0 / (hidden as f64).sqrt();
        net.params = (0..net.len())
            .map(|_| (rng.unit() * 2.0 - 1.0) * k)
            .collect();
        let b = net.off_b();
        for j in hidden..2 * hidden {
            net.params[b + j] = 1.0;
        }
        net
    }

    /// Parameters in all.
    pub fn len(&self) -> usize {
        let g = 4 * self.hidden;
        g * self.n_in + g * self.hidden + g + self.n_out * self.hidden + self.n_out
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn off_u(&self) -> usize {
        4 * self.hidden * self.n_in
    }
    fn off_b(&self) -> usize {
        self.off_u() + 4 * self.hidden * self.hidden
    }
    fn off_v(&self) -> usize {
        self.off_b() + 4 * self.hidden
    }
    fn off_d(&self) -> usize {
        self.off_v() + self.n_out * self.hidden
    }

    /// Whether the parameter vector fits the sizes (a card read back is checked with this).
    pub fn is_consistent(&self) -> bool {
        self.hidden > 0 && self.n_in > 0 && self.n_out > 0 && self.params.len() == self.len()
    }

    /// The outputs for `seq` (steps of `n_in` values, oldest first), recording the steps in
    /// `tape` when given.
    pub fn forward(&self, seq: &[f64], mut tape: Option<&mut Tape>) -> Vec<f64> {
        let (n, hd) = (self.n_in, self.hidden);
        let steps = seq.len() / n;
        let p = &self.params;
        let (ou, ob) = (self.off_u(), self.off_b());
        let mut h = vec![0.0; hd];
        let mut c = vec![0.0; hd];
        let mut a = vec![0.0; 4 * hd];
        if let Some(t) = tape.as_deref_mut() {
            t.gates.clear();
            t.c.clear();
            t.h.clear();
        }
        for t in 0..steps {
            let x = &seq[t * n..(t + 1) * n];
            for (r, ar) in a.iter_mut().enumerate() {
                let w = &p[r * n..(r + 1) * n];
                let u = &p[ou + r * hd..ou + (r + 1) * hd];
                *ar = p[ob + r]
                    + w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
                    + u.iter().zip(&h).map(|(u, h)| u * h).sum::<f64>();
            }
            for j in 0..hd {
                let (i, f) = (sigmoid(a[j]), sigmoid(a[hd + j]));
                let (g, o) = (a[2 * hd + j].tanh(), sigmoid(a[3 * hd + j]));
                c[j] = f * c[j] + i * g;
                h[j] = o * c[j].tanh();
                a[j] = i;
                a[hd + j] = f;
                a[2 * hd + j] = g;
                a[3 * hd + j] = o;
            }
            if let Some(t) = tape.as_deref_mut() {
                t.gates.extend_from_slice(&a);
                t.c.extend_from_slice(&c);
                t.h.extend_from_slice(&h);
            }
        }
        let (ov, od) = (self.off_v(), self.off_d());
        (0..self.n_out)
            .map(|k| {
                p[od + k]
                    + p[ov + k * hd..ov + (k + 1) * hd]
                        .iter()
                        .zip(&h)
                        .map(|(v, h)| v * h)
                        .sum::<f64>()
            })
            .collect()
    }

    /// Adds to `grad` the gradient of the loss whose derivative in the outputs is `dy`, for
    /// the sequence `seq` whose forward pass filled `tape`.
    pub fn backward(&self, seq: &[f64], tape: &Tape, dy: &[f64], grad: &mut [f64]) {
        let (n, hd) = (self.n_in, self.hidden);
        let steps = seq.len() / n;
        if steps == 0 {
            return;
        }
        let p = &self.params;
        let (ou, ob, ov, od) = (self.off_u(), self.off_b(), self.off_v(), self.off_d());
        let h_at = |t: usize| &tape.h[t * hd..(t + 1) * hd];
        let c_at = |t: usize| &tape.c[t * hd..(t + 1) * hd];
        let last = h_at(steps - 1);
        let mut dh = vec![0.0; hd];
        for (k, &d) in dy.iter().enumerate() {
            grad[od + k] += d;
            for j in 0..hd {
                grad[ov + k * hd + j] += d * last[j];
                dh[j] += d * p[ov + k * hd + j];
            }
        }
        let mut dc = vec![0.0; hd];
        let mut da = vec![0.0; 4 * hd];
        let zeros = vec![0.0; hd];
        for t in (0..steps).rev() {
            let gates = &tape.gates[t * 4 * hd..(t + 1) * 4 * hd];
            let c = c_at(t);
            let (c_prev, h_prev) = if t == 0 {
                (&zeros[..], &zeros[..])
            } else {
                (c_at(t - 1), h_at(t - 1))
            };
            for j in 0..hd {
                let (i, f, g, o) = (
                    gates[j],
                    gates[hd + j],
                    gates[2 * hd + j],
                    gates[3 * hd + j],
                );
                let tc = c[j].tanh();
                dc[j] += dh[j] * o * (1.0 - tc * tc);
                da[j] = dc[j] * g * i * (1.0 - i);
                da[hd + j] = dc[j] * c_prev[j] * f * (1.0 - f);
                da[2 * hd + j] = dc[j] * i * (1.0 - g * g);
                da[3 * hd + j] = dh[j] * tc * o * (1.0 - o);
                dc[j] *= f;
            }
            let x = &seq[t * n..(t + 1) * n];
            dh.iter_mut().for_each(|v| *v = 0.0);
            for (r, &d) in da.iter().enumerate() {
                if d == 0.0 {
                    continue;
                }
                grad[ob + r] += d;
                for (gw, xv) in grad[r * n..(r + 1) * n].iter_mut().zip(x) {
                    *gw += d * xv;
                }
                let u = ou + r * hd;
                for j in 0..hd {
                    grad[u + j] += d * h_prev[j];
                    dh[j] += d * p[u + j];
                }
            }
        }
    }
}

/// Adam (Kingma & Ba), with the gradient's global norm clipped before each step.
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    clip: f64,
}

impl Adam {
    pub fn new(n: usize, lr: f64, clip: f64) -> Self {
        Self {
            lr,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            clip,
        }
    }

    pub fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        let scale = if norm > self.clip && norm > 0.0 {
            self.clip / norm
        } else {
            1.0
        };
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for k in 0..params.len() {
            let g = grad[k] * scale;
            self.m[k] = B1 * self.m[k] + (1.0 - B1) * g;
            self.v[k] = B2 * self.v[k] + (1.0 - B2) * g * g;
            params[k] -= self.lr * (self.m[k] / c1) / ((self.v[k] / c2).sqrt() + 1e-8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(net: &Lstm, seq: &[f64], target: &[f64]) -> f64 {
        net.forward(seq, None)
            .iter()
            .zip(target)
            .map(|(y, t)| 0.5 * (y - t).powi(2))
            .sum()
    }

    /// The analytic gradient equals central finite differences for every parameter.
    #[test]
    fn the_gradient_matches_finite_differences() {
        let mut rng = SplitMix::new(7);
        let mut net = Lstm::new(3, 4, 2, &mut rng);
        // Larger weights than the initialisation, so every gate is away from its linear part.
        net.params.iter_mut().for_each(|p| *p *= 3.0);
        let seq: Vec<f64> = (0..5 * 3).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let target = [0.3, -0.7];
        let mut tape = Tape::default();
        let y = net.forward(&seq, Some(&mut tape));
        let dy: Vec<f64> = y.iter().zip(&target).map(|(y, t)| y - t).collect();
        let mut grad = vec![0.0; net.len()];
        net.backward(&seq, &tape, &dy, &mut grad);
        let eps = 1e-6;
        for (k, analytic) in grad.iter().enumerate() {
            let mut hi = net.clone();
            hi.params[k] += eps;
            let mut lo = net.clone();
            lo.params[k] -= eps;
            let numeric = (loss(&hi, &seq, &target) - loss(&lo, &seq, &target)) / (2.0 * eps);
            assert!(
                (numeric - analytic).abs() <= 1e-7 * (1.0 + numeric.abs()),
                "parameter {k}: analytic {analytic} numeric {numeric}"
            );
        }
    }

    /// Two steps of one unit, written out from the definition (PyTorch's gate order).
    #[test]
    fn two_steps_of_one_unit_follow_the_definition() {
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        // W = [0.5, -0.3, 0.8, 0.1], U = [0.2, 0.4, -0.6, 0.7], b = [0.1, 1.0, -0.2, 0.05],
        // V = [1.5], d = [-0.25].
        let net = Lstm {
            n_in: 1,
            hidden: 1,
            n_out: 1,
            params: vec![
                0.5, -0.3, 0.8, 0.1, 0.2, 0.4, -0.6, 0.7, 0.1, 1.0, -0.2, 0.05, 1.5, -0.25,
            ],
        };
        let (x1, x2) = (0.9, -0.4);
        let c1 = s(0.5 * x1 + 0.1) * (0.8 * x1 - 0.2).tanh();
        let h1 = s(0.1 * x1 + 0.05) * c1.tanh();
        let i2 = s(0.5 * x2 + 0.2 * h1 + 0.1);
        let f2 = s(-0.3 * x2 + 0.4 * h1 + 1.0);
        let g2 = (0.8 * x2 - 0.6 * h1 - 0.2).tanh();
        let o2 = s(0.1 * x2 + 0.7 * h1 + 0.05);
        let h2 = o2 * (f2 * c1 + i2 * g2).tanh();
        let y = net.forward(&[x1, x2], None);
        assert!((y[0] - (1.5 * h2 - 0.25)).abs() < 1e-15, "{y:?}");
    }

    /// A label that is the input three steps before the end, which no function of the last
    /// step can know: the network learns to remember it.
    #[test]
    fn it_learns_a_value_seen_steps_before_the_end() {
        let mut rng = SplitMix::new(1);
        let mut net = Lstm::new(1, 8, 1, &mut rng);
        let mut adam = Adam::new(net.len(), 0.01, 1.0);
        let sample = |rng: &mut SplitMix| {
            let seq: Vec<f64> = (0..6).map(|_| rng.unit() * 2.0 - 1.0).collect();
            let y = seq[2];
            (seq, y)
        };
        let mse = |net: &Lstm, rng: &mut SplitMix| {
            (0..200)
                .map(|_| {
                    let (s, y) = sample(rng);
                    (net.forward(&s, None)[0] - y).powi(2)
                })
                .sum::<f64>()
                / 200.0
        };
        let before = mse(&net, &mut SplitMix::new(99));
        let mut tape = Tape::default();
        for _ in 0..1500 {
            let mut grad = vec![0.0; net.len()];
            for _ in 0..16 {
                let (s, y) = sample(&mut rng);
                let out = net.forward(&s, Some(&mut tape));
                net.backward(&s, &tape, &[(out[0] - y) / 16.0], &mut grad);
            }
            adam.step(&mut net.params, &grad);
        }
        let after = mse(&net, &mut SplitMix::new(99));
        // The label's variance is 1/3: the network explains most of it.
        assert!(after < 0.05 && after < before / 5.0, "{before} -> {after}");
    }

    #[test]
    fn a_parameter_vector_of_another_length_is_inconsistent() {
        let mut net = Lstm::new(2, 3, 1, &mut SplitMix::new(0));
        assert!(net.is_consistent());
        net.params.pop();
        assert!(!net.is_consistent());
    }
}
