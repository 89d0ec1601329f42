//! Dashboard sign-in sessions and the login throttle.
//!
//! Signing in at `/ui/login` creates a server-side session: a random id (32 bytes from
//! the OS CSPRNG) that the browser keeps in a cookie, and a random form token of its own
//! that every dashboard form carries (a page on another site can know neither). The
//! admin key itself never leaves the login request. A session ends when it expires
//! ([`SESSION_TTL`]), at `POST /ui/logout`, or when the admin key changes (each session
//! remembers which key it was opened with).
//!
//! Sessions live in this process's memory: a restart signs everyone out, and replicas
//! each keep their own (sign in to the replica you use, or pin the dashboard to one).
//! That is the simplest sound design for an operators' page; no secret is stored.
//!
//! Failed logins are counted per client address (the TCP peer; behind a proxy that is
//! the proxy): [`MAX_FAILURES`] within [`FAILURE_WINDOW`] blocks that address until the
//! window ends, so guessing the key costs minutes per handful of tries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins an address may make within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted over (and how long a block lasts at most).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Most sessions (and throttled addresses) kept at once; past it the oldest go.
const MAX_ENTRIES: usize = 10_000;

struct Session {
    token: String,
    expires: Instant,
    /// SHA-256 of the admin key the session was opened with.
    admin: [u8; 32],
}

struct Failures {
    count: u32,
    since: Instant,
}

/// The signed-in sessions and the failed-login counts of this process.
#[derive(Default)]
pub struct Sessions {
    /// By SHA-256 of the session id (a lookup never compares the id itself).
    live: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_hex() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Open a session for the admin key whose digest is `admin`: (id, form token).
    pub fn open(&self, admin: [u8; 32]) -> Result<(String, String), getrandom::Error> {
        let id = random_hex()?;
        let token = random_hex()?;
        let now = Instant::now();
        let mut live = lock(&self.live);
        if live.len() >= MAX_ENTRIES {
            live.retain(|_, s| s.expires > now);
        }
        if live.len() >= MAX_ENTRIES {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                live.remove(&oldest);
            }
        }
        live.insert(
            digest(&id),
            Session {
                token: token.clone(),
                expires: now + SESSION_TTL,
                admin,
            },
        );
        Ok((id, token))
    }

    /// The form token of a live session opened with the current admin key (`admin`);
    /// `None` (and the session forgotten) when it expired or the key changed.
    pub fn token(&self, id: &str, admin: Option<[u8; 32]>) -> Option<String> {
        let key = digest(id);
        let mut live = lock(&self.live);
        let s = live.get(&key)?;
        if s.expires > Instant::now() && admin == Some(s.admin) {
            return Some(s.token.clone());
        }
        live.remove(&key);
        None
    }

    /// End a session (logout).
    pub fn revoke(&self, id: &str) {
        lock(&self.live).remove(&digest(id));
    }

    /// How long `ip` must wait before trying again, when it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let f = lock(&self.failures);
        let entry = f.get(&ip)?;
        let left = FAILURE_WINDOW.checked_sub(entry.since.elapsed())?;
        (entry.count >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    /// Count a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut f = lock(&self.failures);
        if f.len() >= MAX_ENTRIES {
            f.retain(|_, e| now.duration_since(e.since) < FAILURE_WINDOW);
        }
        if f.len() >= MAX_ENTRIES && !f.contains_key(&ip) {
            if let Some(oldest) = f.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k) {
                f.remove(&oldest);
            }
        }
        let e = f.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(e.since) >= FAILURE_WINDOW {
            *e = Failures {
                count: 0,
                since: now,
            };
        }
        e.count = e.count.saturating_add(1);
    }

    /// A successful login clears the address's failures.
    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.failures).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_has_random_ids_and_ends_at_logout_or_on_a_new_admin_key() {
        let s = Sessions::default();
        let key = [1u8; 32];
        let (id, token) = s.open(key).unwrap();
        let (id2, token2) = s.open(key).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, id2);
        assert_ne!(token, token2);
        assert_eq!(s.token(&id, Some(key)).as_deref(), Some(token.as_str()));
        assert_eq!(s.token("nope", Some(key)), None);
        // Another admin key: the session is gone for good.
        assert_eq!(s.token(&id2, Some([2u8; 32])), None);
        assert_eq!(s.token(&id2, Some(key)), None);
        s.revoke(&id);
        assert_eq!(s.token(&id, Some(key)), None);
    }

    #[test]
    fn failed_logins_block_an_address_after_the_limit() {
        let s = Sessions::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..MAX_FAILURES - 1 {
            s.failed(ip);
        }
        assert_eq!(s.blocked_for(ip), None);
        s.failed(ip);
        let wait = s.blocked_for(ip).unwrap();
        assert!(wait <= FAILURE_WINDOW && wait > Duration::from_secs(200));
        assert_eq!(s.blocked_for(other), None);
        s.succeeded(ip);
        assert_eq!(s.blocked_for(ip), None);
    }
}
