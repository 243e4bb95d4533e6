//! Integer noise for counts: the discrete Laplace (two-sided geometric)
//! distribution, sampled exactly with integer arithmetic only.
//!
//! Floating-point samplers (`-ln(u)/ε` and friends) leak through the low bits of
//! their doubles. This follows Canonne, Kamath and Steinke, "The Discrete Gaussian
//! for Differential Privacy" (2020), algorithms 1 and 2: every step is a Bernoulli
//! trial with a rational probability, decided by a uniform integer.

use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A privacy loss, in millionths (so it adds up exactly).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "f64", into = "f64")]
pub struct Epsilon(u64);

/// The largest epsilon a policy may set for one query or one day.
pub const MAX_EPSILON: Epsilon = Epsilon(100_000_000);

impl Epsilon {
    /// Zero: nothing spent.
    pub const ZERO: Self = Self(0);

    /// From millionths.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// In millionths.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// As a number, for display.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// What is left of `self` after `spent`.
    pub fn saturating_sub(self, spent: Self) -> Self {
        Self(self.0.saturating_sub(spent.0))
    }

    /// `self` + `other`.
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

/// A number that cannot be an epsilon.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidEpsilon {
    /// Zero, negative or not a number.
    #[error("epsilon must be a positive number, not {0}")]
    NotPositive(f64),
    /// Below a millionth or above the largest epsilon.
    #[error("epsilon {0} is out of range (0.000001 to {max})", max = MAX_EPSILON.as_f64())]
    OutOfRange(f64),
}

impl TryFrom<f64> for Epsilon {
    type Error = InvalidEpsilon;

    fn try_from(value: f64) -> Result<Self, InvalidEpsilon> {
        if !value.is_finite() || value <= 0.0 {
            return Err(InvalidEpsilon::NotPositive(value));
        }
        let micros = (value * 1e6).round();
        if micros < 1.0 || micros > MAX_EPSILON.0 as f64 {
            return Err(InvalidEpsilon::OutOfRange(value));
        }
        Ok(Self(micros as u64))
    }
}

impl From<Epsilon> for f64 {
    fn from(value: Epsilon) -> f64 {
        value.as_f64()
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// A source of uniformly random bytes.
pub trait RandomSource {
    /// Fills `out` with random bytes.
    fn fill(&mut self, out: &mut [u8]);
}

/// The operating system's cryptographically secure generator (via ring),
/// read in blocks.
pub struct SecureRandom {
    system: ring::rand::SystemRandom,
    buffer: [u8; 4096],
    used: usize,
}

impl Default for SecureRandom {
    fn default() -> Self {
        Self {
            system: ring::rand::SystemRandom::new(),
            buffer: [0; 4096],
            used: 4096,
        }
    }
}

impl fmt::Debug for SecureRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecureRandom")
    }
}

/// One generator shared by the threads of a node, locked for each draw only:
/// releases made at the same time wait for each other only while drawing, and
/// a release without noise never takes the lock.
impl RandomSource for &std::sync::Mutex<SecureRandom> {
    fn fill(&mut self, out: &mut [u8]) {
        self.lock().unwrap_or_else(|e| e.into_inner()).fill(out);
    }
}

impl RandomSource for SecureRandom {
    fn fill(&mut self, out: &mut [u8]) {
        let mut written = 0;
        while written < out.len() {
            if self.used == self.buffer.len() {
                // The system generator failing means the OS can't give randomness:
                // no release may be made without it.
                self.system
                    .fill(&mut self.buffer)
                    .expect("the operating system's secure random generator failed");
                self.used = 0;
            }
            let n = (out.len() - written).min(self.buffer.len() - self.used);
            out[written..written + n].copy_from_slice(&self.buffer[self.used..self.used + n]);
            // Each random byte is used once.
            self.buffer[self.used..self.used + n].fill(0);
            self.used += n;
            written += n;
        }
    }
}

/// A uniform integer in `0..n` (n > 0), by rejection: no modulo bias.
pub fn uniform_below(rng: &mut impl RandomSource, n: u128) -> u128 {
    assert!(n > 0, "uniform_below(0)");
    if n == 1 {
        return 0;
    }
    let zone = u128::MAX - (u128::MAX % n);
    loop {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes);
        let x = u128::from_le_bytes(bytes);
        if x < zone {
            return x % n;
        }
    }
}

/// True with probability `num/den` (num ≤ den, den > 0).
fn bernoulli(rng: &mut impl RandomSource, num: u128, den: u128) -> bool {
    uniform_below(rng, den) < num
}

/// True with probability exp(−num/den), for 0 ≤ num ≤ den (algorithm 1 of CKS).
fn bernoulli_exp_neg(rng: &mut impl RandomSource, num: u128, den: u128) -> bool {
    debug_assert!(num <= den);
    let mut k: u128 = 1;
    while bernoulli(rng, num, den * k) {
        k += 1;
    }
    k % 2 == 1
}

/// A sample of the discrete Laplace distribution with P(z) ∝ exp(−|z|·s/t)
/// (algorithm 2 of CKS), for positive integers s and t.
fn discrete_laplace_rational(rng: &mut impl RandomSource, s: u128, t: u128) -> i64 {
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_neg(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg(rng, 1, 1) {
            v += 1;
        }
        let y = (u + t * v) / s;
        let negative = bernoulli(rng, 1, 2);
        if negative && y == 0 {
            continue;
        }
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Noise for a value that one report can change by at most `sensitivity`, at
/// privacy loss `epsilon`: discrete Laplace with scale sensitivity/ε.
pub fn discrete_laplace(rng: &mut impl RandomSource, epsilon: Epsilon, sensitivity: u64) -> i64 {
    assert!(
        epsilon.0 > 0 && sensitivity > 0,
        "noise needs ε > 0 and sensitivity > 0"
    );
    // P(z) ∝ exp(−|z|·ε/Δ) = exp(−|z|·s/t) with s/t = micros / (10⁶·Δ).
    let (s, t) = (u128::from(epsilon.0), 1_000_000 * u128::from(sensitivity));
    let g = gcd(s, t);
    discrete_laplace_rational(rng, s / g, t / g)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_shared_generator_gives_fresh_bytes_each_draw() {
        let shared = std::sync::Mutex::new(SecureRandom::default());
        let mut source = &shared;
        let (mut first, mut second) = ([0u8; 32], [0u8; 32]);
        source.fill(&mut first);
        source.fill(&mut second);
        assert_ne!(first, [0u8; 32]);
        assert_ne!(first, second);
    }

    /// A deterministic generator for reproducible statistics (splitmix64).
    pub(crate) struct Seeded(pub u64);

    impl RandomSource for Seeded {
        fn fill(&mut self, out: &mut [u8]) {
            for chunk in out.chunks_mut(8) {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    #[test]
    fn epsilon_parses_and_prints_exactly() {
        assert_eq!(Epsilon::try_from(0.5).unwrap().micros(), 500_000);
        assert_eq!(Epsilon::try_from(0.1).unwrap().to_string(), "0.1");
        assert_eq!(Epsilon::try_from(2.0).unwrap().to_string(), "2");
        assert!(Epsilon::try_from(0.0).is_err());
        assert!(Epsilon::try_from(-1.0).is_err());
        assert!(Epsilon::try_from(f64::NAN).is_err());
        assert!(Epsilon::try_from(1e9).is_err());
    }

    #[test]
    fn uniform_below_covers_its_range_evenly() {
        let mut rng = Seeded(7);
        let mut seen = [0u32; 6];
        for _ in 0..60_000 {
            seen[uniform_below(&mut rng, 6) as usize] += 1;
        }
        for n in seen {
            assert!((9_400..10_600).contains(&n), "{seen:?}");
        }
    }

    /// Mean 0 and variance 2e^{-a}/(1-e^{-a})² for a = ε/Δ.
    fn check_moments(epsilon: f64, sensitivity: u64) {
        let mut rng = Seeded(42);
        let eps = Epsilon::try_from(epsilon).unwrap();
        let n = 40_000;
        let (mut sum, mut sum_sq) = (0f64, 0f64);
        for _ in 0..n {
            let z = discrete_laplace(&mut rng, eps, sensitivity) as f64;
            sum += z;
            sum_sq += z * z;
        }
        let a = epsilon / sensitivity as f64;
        let expected_var = 2.0 * (-a).exp() / (1.0 - (-a).exp()).powi(2);
        let mean = sum / n as f64;
        let var = sum_sq / n as f64 - mean * mean;
        assert!(
            mean.abs() < 6.0 * (expected_var / n as f64).sqrt(),
            "ε={epsilon}: mean {mean}"
        );
        assert!(
            (var / expected_var - 1.0).abs() < 0.1,
            "ε={epsilon}: variance {var}, expected {expected_var}"
        );
    }

    #[test]
    fn discrete_laplace_has_the_right_mean_and_variance() {
        check_moments(1.0, 1);
        check_moments(0.5, 1);
        check_moments(0.25, 1);
        check_moments(2.0, 5);
    }

    #[test]
    fn discrete_laplace_is_symmetric_and_integer_valued() {
        let mut rng = Seeded(3);
        let eps = Epsilon::try_from(1.0).unwrap();
        let (mut pos, mut neg, mut zero) = (0i32, 0i32, 0i32);
        for _ in 0..20_000 {
            match discrete_laplace(&mut rng, eps, 1).signum() {
                1 => pos += 1,
                -1 => neg += 1,
                _ => zero += 1,
            }
        }
        // P(0) = (1-e^-1)/(1+e^-1) ≈ 0.462.
        assert!((8_800..9_700).contains(&zero), "zero {zero}");
        assert!((pos - neg).abs() < 500, "{pos} vs {neg}");
    }

    #[test]
    fn secure_random_draws_differ() {
        let mut rng = SecureRandom::default();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        rng.fill(&mut a);
        rng.fill(&mut b);
        assert_ne!(a, b);
        let eps = Epsilon::try_from(0.1).unwrap();
        let draws: Vec<i64> = (0..50)
            .map(|_| discrete_laplace(&mut rng, eps, 1))
            .collect();
        assert!(draws.iter().any(|&d| d != draws[0]), "{draws:?}");
    }
}
