//! Write tokens for `announce_peer` (BEP 5): a token is the first 8 bytes of SHA-1(requester IP, secret); the
//! secret rotates every 5 minutes and the previous secret is still accepted, so a token lives 5–10 minutes.

use rand::Rng;
use sha1::{Digest, Sha1};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often the secret changes.
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Length of the tokens we hand out.
pub const TOKEN_LEN: usize = 8;

pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Instant,
}

impl Tokens {
    pub fn new(now: Instant, rng: &mut impl Rng) -> Tokens {
        Tokens {
            current: rng.random(),
            previous: rng.random(),
            rotated_at: now,
        }
    }

    /// Rotate the secret if it is older than [`ROTATE_EVERY`]; returns when to call again.
    pub fn maybe_rotate(&mut self, now: Instant, rng: &mut impl Rng) -> Instant {
        if now.saturating_duration_since(self.rotated_at) >= ROTATE_EVERY {
            self.previous = self.current;
            self.current = rng.random();
            self.rotated_at = now;
        }
        self.rotated_at + ROTATE_EVERY
    }

    /// The token for a requester at `ip`.
    pub fn token_for(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        make(&self.current, ip)
    }

    /// Whether `token` was issued to `ip` under the current or the previous secret.
    pub fn check(&self, ip: IpAddr, token: &[u8]) -> bool {
        token == make(&self.current, ip) || token == make(&self.previous, ip)
    }
}

fn make(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.update(secret);
    let digest = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn token_valid_for_one_rotation_then_stale() {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = crate::sim::dht::epoch();
        let mut tokens = Tokens::new(t0, &mut rng);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let tok = tokens.token_for(ip);
        assert!(tokens.check(ip, &tok));
        assert!(
            !tokens.check(other, &tok),
            "token is bound to the requester IP"
        );
        tokens.maybe_rotate(t0 + Duration::from_secs(60), &mut rng);
        assert!(tokens.check(ip, &tok), "no rotation before 5 min");
        tokens.maybe_rotate(t0 + ROTATE_EVERY, &mut rng);
        assert!(tokens.check(ip, &tok), "previous secret still accepted");
        assert_ne!(tokens.token_for(ip), tok);
        tokens.maybe_rotate(t0 + ROTATE_EVERY * 2, &mut rng);
        assert!(!tokens.check(ip, &tok), "stale after two rotations");
    }

    proptest! {
        #[test]
        fn random_tokens_rejected(ip in any::<[u8; 4]>(), tok in proptest::collection::vec(any::<u8>(), 0..20), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let tokens = Tokens::new(crate::sim::dht::epoch(), &mut rng);
            let ip = IpAddr::from(ip);
            prop_assume!(tok.as_slice() != tokens.token_for(ip));
            prop_assert!(!tokens.check(ip, &tok));
        }
    }
}
