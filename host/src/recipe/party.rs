//! Kazoo's `Party`: members are ephemeral children `{path}/{uuid-hex}__party__` holding their
//! identifiers, so Kazoo and wazoo members of one party see each other.
//!
//! There is no state machine to speak of: joining is one protected-by-name create (a retried
//! create that finds its node already there counts as joined), leaving one delete, listing one
//! read per member.

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::CreateMode;
use crate::recipe::driver::{self, join};

/// Kazoo's node name suffix for party members.
const NODE_NAME: &str = "__party__";

/// A member of a party (Kazoo's `Party`): [`Party::members`] lists everyone's identifiers.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let mut party = wazoo::Party::new(&zk, "/workers", "host-a")?;
/// party.join().await?;
/// println!("{} workers: {:?}", party.len().await?, party.members().await?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Party {
    client: Client,
    path: String,
    node: String,
    data: Vec<u8>,
    participating: bool,
}

impl Party {
    /// A member named `identifier` of the party at `path`.
    pub fn new(client: &Client, path: &str, identifier: &str) -> Result<Party> {
        crate::path::validate_path(path, false)?;
        Ok(Party {
            client: client.clone(),
            path: path.to_string(),
            node: join(path, &format!("{}{NODE_NAME}", driver::uuid_hex())),
            data: identifier.as_bytes().to_vec(),
            participating: false,
        })
    }

    /// Joins (creates this member's ephemeral node; fine if it exists). After a session loss
    /// the node is gone: join again.
    pub async fn join(&mut self) -> Result<()> {
        let opts = CreateOptions {
            mode: CreateMode::Ephemeral,
            makepath: true,
            ..Default::default()
        };
        loop {
            match self.client.create_with(&self.node, &self.data, &opts).await {
                Ok(_) | Err(Error::NodeExists) => break,
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.participating = true;
        Ok(())
    }

    /// Leaves; false if this member was not in the party.
    pub async fn leave(&mut self) -> Result<bool> {
        self.participating = false;
        loop {
            match self.client.delete(&self.node, None).await {
                Ok(()) => return Ok(true),
                Err(Error::NoNode) => return Ok(false),
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether [`Party::join`] was called and [`Party::leave`] not since (the node itself may
    /// have gone with a lost session).
    pub fn is_participating(&self) -> bool {
        self.participating
    }

    async fn member_names(&self) -> Result<Vec<String>> {
        match self.client.get_children(&self.path).await {
            Ok((c, _)) => Ok(c.into_iter().filter(|c| c.contains(NODE_NAME)).collect()),
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The members' identifiers (in no particular order).
    pub async fn members(&self) -> Result<Vec<String>> {
        let names = self.member_names().await?;
        let reads: Vec<_> = names
            .iter()
            .map(|n| {
                std::future::IntoFuture::into_future(self.client.get_data(&join(&self.path, n)))
            })
            .collect();
        let mut out = Vec::with_capacity(reads.len());
        for r in reads {
            match r.await {
                Ok((d, _)) => out.push(String::from_utf8_lossy(&d).into_owned()),
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// How many members there are.
    pub async fn len(&self) -> Result<usize> {
        Ok(self.member_names().await?.len())
    }

    /// Whether the party has no members.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}
