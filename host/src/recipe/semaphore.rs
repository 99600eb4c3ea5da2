//! Kazoo's `Semaphore`: at most `max_leases` holders at a time, with Kazoo's node layout so
//! Kazoo and wazoo holders share the leases.
//!
//! Layout (Kazoo 2.8's): each lease is an ephemeral child `{path}/{uuid-hex}` whose data is
//! the holder's identifier; `{path}`'s data is `max_leases` in decimal (every holder checks it
//! against its own); a [`Lock`] on the sibling `{path}-__lock__` serialises the taking of
//! leases: the lock holder counts the leases and creates its own if there is room, else waits
//! (a children watch) for one to go.
//!
//! Session states: SUSPENDED means the lease may be lost (it is ephemeral); LOST means it is
//! ([`Semaphore::holds_lease`] checks); a reconnect within the session keeps it.

use std::time::Duration;

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::CreateMode;
use crate::recipe::driver::{self, join};
use crate::recipe::lock::{Lock, LockState};

/// Kazoo's distributed semaphore: up to `max_leases` holders of `{path}` at once.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let mut sem = wazoo::Semaphore::new(&zk, "/pools/db", "worker-1", 4)?;
/// sem.acquire(Some(Duration::from_secs(10))).await?;
/// // ... at most four workers are here ...
/// sem.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Semaphore {
    client: Client,
    path: String,
    node: String,
    data: Vec<u8>,
    max_leases: usize,
    checked: bool,
    acquired: bool,
}

impl Semaphore {
    /// A holder named `identifier` (its lease's data) of the semaphore at `path` with
    /// `max_leases` leases (at least 1).
    pub fn new(
        client: &Client,
        path: &str,
        identifier: &str,
        max_leases: usize,
    ) -> Result<Semaphore> {
        crate::path::validate_path(path, false)?;
        if max_leases == 0 {
            return Err(Error::InvalidArgument(
                "a semaphore needs at least one lease".into(),
            ));
        }
        Ok(Semaphore {
            client: client.clone(),
            path: path.to_string(),
            node: join(path, &driver::uuid_hex()),
            data: identifier.as_bytes().to_vec(),
            max_leases,
            checked: false,
            acquired: false,
        })
    }

    /// Takes a lease, waiting at most `timeout` (None: as long as it takes); fails with
    /// [`Error::Timeout`] when the wait ran out, or [`Error::InvalidArgument`] when the
    /// semaphore's stored `max_leases` differs from this holder's.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        match self.take(Some(deadline)).await? {
            true => Ok(()),
            false => Err(Error::Timeout(timeout.unwrap_or_default())),
        }
    }

    /// Takes a lease if one is free now; false if none is.
    pub async fn try_acquire(&mut self) -> Result<bool> {
        self.take(None).await
    }

    /// `wait`: None for no waiting, Some(None) for no deadline.
    async fn take(&mut self, wait: Option<Option<tokio::time::Instant>>) -> Result<bool> {
        if !self.checked {
            self.check_max_leases().await?;
        }
        if self.holds_lease().await? {
            self.acquired = true;
            return Ok(true);
        }
        let mut lock = Lock::new(&self.client, &format!("{}-__lock__", self.path), "")?;
        let got = match wait {
            None => lock.try_acquire().await?.is_some(),
            Some(deadline) => {
                let left =
                    deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
                match lock.acquire(left).await {
                    Ok(_) => true,
                    Err(Error::Timeout(_)) => false,
                    Err(e) => return Err(e),
                }
            }
        };
        if !got {
            return Ok(false);
        }
        let r = self.lease_under_lock(&lock, wait).await;
        let _ = lock.release().await;
        self.acquired = matches!(r, Ok(true));
        r
    }

    /// Holding the lock: takes a lease when there is room, waiting for one as `wait` says.
    async fn lease_under_lock(
        &mut self,
        lock: &Lock,
        wait: Option<Option<tokio::time::Instant>>,
    ) -> Result<bool> {
        let opts = CreateOptions {
            mode: CreateMode::Ephemeral,
            ..Default::default()
        };
        loop {
            if lock.state() == LockState::Lost {
                return Err(Error::SessionExpired);
            }
            let (children, watch) = match self.client.get_children_watch(&self.path).await {
                Ok((c, _, w)) => (c, w),
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            };
            if has_room(children.len(), self.max_leases) {
                match self.client.create_with(&self.node, &self.data, &opts).await {
                    Ok(_) | Err(Error::NodeExists) => {}
                    Err(e) if driver::transient(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.holds_lease().await? {
                return Ok(true);
            }
            match wait {
                None => return Ok(false),
                Some(None) => {
                    watch.changed().await;
                }
                Some(Some(deadline)) => {
                    if tokio::time::timeout_at(deadline, watch.changed())
                        .await
                        .is_err()
                    {
                        return Ok(false);
                    }
                }
            }
        }
    }

    async fn check_max_leases(&mut self) -> Result<()> {
        self.client.ensure_path(&self.path).await?;
        loop {
            let (data, stat) = self.client.get_data(&self.path).await?;
            match stored_max_leases(&data) {
                Some(n) if n != self.max_leases => {
                    return Err(Error::InvalidArgument(format!(
                        "inconsistent max leases on {}: {n} stored, {} expected",
                        self.path, self.max_leases
                    )))
                }
                Some(_) => break,
                None => {
                    let max = self.max_leases.to_string();
                    match self
                        .client
                        .set_data(&self.path, max.as_bytes(), Some(stat.version))
                        .await
                    {
                        Ok(_) => break,
                        // Another holder stored it meanwhile: check theirs.
                        Err(Error::BadVersion) => continue,
                        Err(e) if driver::transient(&e) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.checked = true;
        Ok(())
    }

    /// Gives the lease back; false if this holder had none.
    pub async fn release(&mut self) -> Result<bool> {
        self.acquired = false;
        loop {
            match self.client.delete(&self.node, None).await {
                Ok(()) => return Ok(true),
                Err(Error::NoNode) => return Ok(false),
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether this holder's lease node exists now, in this session (it goes with a lost
    /// session).
    pub async fn holds_lease(&self) -> Result<bool> {
        match self.client.exists(&self.node).await? {
            Some(stat) => Ok(stat.ephemeral_owner == self.client.session_id()),
            None => Ok(false),
        }
    }

    /// Whether [`Semaphore::acquire`] succeeded and [`Semaphore::release`] was not called
    /// since (the lease itself may have gone with a lost session: see
    /// [`Semaphore::holds_lease`]).
    pub fn is_acquired(&self) -> bool {
        self.acquired
    }

    /// The lease holders' identifiers (in no particular order; Kazoo's `lease_holders`).
    pub async fn lease_holders(&self) -> Result<Vec<String>> {
        let names = match self.client.get_children(&self.path).await {
            Ok((c, _)) => c,
            Err(Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            match self.client.get_data(&join(&self.path, &n)).await {
                Ok((d, _)) => out.push(String::from_utf8_lossy(&d).into_owned()),
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The semaphore's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Whether another lease fits among `leases` taken.
fn has_room(leases: usize, max_leases: usize) -> bool {
    leases < max_leases
}

/// The `max_leases` stored in the semaphore node's data, if it holds a number.
fn stored_max_leases(data: &[u8]) -> Option<usize> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_max_leases_is_decimal_text_or_nothing() {
        assert_eq!(stored_max_leases(b"3"), Some(3));
        assert_eq!(stored_max_leases(b""), None);
        assert_eq!(stored_max_leases(b"x"), None);
    }

    #[test]
    fn a_lease_fits_below_the_maximum_only() {
        assert!(has_room(0, 1));
        assert!(has_room(1, 2));
        assert!(!has_room(2, 2));
    }
}
