//! Two `f64` lanes that add, subtract and multiply in one instruction: SSE2's packed doubles
//! on x86-64, two plain floats elsewhere. Each lane's result is exactly the scalar operation's (IEEE 754, no fused
//! multiply-add), so code written with pairs keeps the bits of its scalar form.

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::{
        __m128d, _mm_add_pd, _mm_cvtsd_f64, _mm_mul_pd, _mm_set_pd, _mm_setzero_pd, _mm_sub_pd,
        _mm_unpackhi_pd,
    };

    // SAFETY (every `unsafe` below): the intrinsics only need SSE2, which every x86-64 CPU
    // has (it is part of the architecture's baseline that Rust compiles for), and they take
    // no pointers.
    #[derive(Clone, Copy)]
    pub struct Pair(__m128d);

    impl Pair {
        #[inline(always)]
        pub fn new(a: f64, b: f64) -> Self {
            Self(unsafe { _mm_set_pd(b, a) })
        }
        #[inline(always)]
        pub fn zero() -> Self {
            Self(unsafe { _mm_setzero_pd() })
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(unsafe { _mm_add_pd(self.0, o.0) })
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(unsafe { _mm_sub_pd(self.0, o.0) })
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(unsafe { _mm_mul_pd(self.0, o.0) })
        }
        /// Lane 0 (`a` of [`Pair::new`]) or 1.
        #[inline(always)]
        pub fn lane(self, i: usize) -> f64 {
            match i {
                0 => unsafe { _mm_cvtsd_f64(self.0) },
                _ => unsafe { _mm_cvtsd_f64(_mm_unpackhi_pd(self.0, self.0)) },
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    #[derive(Clone, Copy)]
    pub struct Pair([f64; 2]);

    impl Pair {
        #[inline(always)]
        pub fn new(a: f64, b: f64) -> Self {
            Self([a, b])
        }
        #[inline(always)]
        pub fn zero() -> Self {
            Self([0.0; 2])
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self([self.0[0] + o.0[0], self.0[1] + o.0[1]])
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self([self.0[0] - o.0[0], self.0[1] - o.0[1]])
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self([self.0[0] * o.0[0], self.0[1] * o.0[1]])
        }
        #[inline(always)]
        pub fn lane(self, i: usize) -> f64 {
            self.0[i & 1]
        }
    }
}

pub use imp::Pair;

#[cfg(test)]
mod tests {
    use super::Pair;

    #[test]
    fn each_lane_is_the_scalar_operation_bit_for_bit() {
        let xs = [
            0.1,
            -3.7e-300,
            1e308,
            f64::MIN_POSITIVE,
            2.0f64.sqrt(),
            -0.0,
        ];
        for &a in &xs {
            for &b in &xs {
                let (p, q) = (Pair::new(a, b), Pair::new(b, a));
                for (got, want) in [
                    (p.add(q), [a + b, b + a]),
                    (p.sub(q), [a - b, b - a]),
                    (p.mul(q), [a * b, b * a]),
                ] {
                    assert_eq!(got.lane(0).to_bits(), want[0].to_bits(), "{a} {b}");
                    assert_eq!(got.lane(1).to_bits(), want[1].to_bits(), "{a} {b}");
                }
            }
        }
        assert_eq!(Pair::zero().lane(1).to_bits(), 0.0f64.to_bits());
    }
}
