//! Kazoo's conveniences, built on the operations: create with makepath, ensure_path and
//! recursive delete.

use std::future::IntoFuture;

use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, Stat};

use super::decode::dec_path_stat;
use super::{check, Client, CreateOptions};

impl Client {
    /// Creates a node with options (mode, ACL, makepath); returns its path and stat.
    pub async fn create_with(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let once = || self.pending(self.create_req(path, data, opts), dec_path_stat);
        match once().await {
            Err(Error::NoNode) if opts.makepath => {
                if let Some(parent) = parent(path) {
                    self.ensure_path(parent).await?;
                }
                once().await
            }
            other => other,
        }
    }

    /// Creates `path` and any missing parents as empty persistent nodes; succeeds if it exists.
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" || self.exists(path).await?.is_some() {
            return Ok(());
        }
        let mut cur = String::new();
        for seg in path[1..].split('/') {
            cur.push('/');
            cur.push_str(seg);
            match self.create(&cur, b"", CreateMode::Persistent).await {
                Ok(_) | Err(Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a node and everything below it (children first, pipelined). Nodes that vanish
    /// meanwhile are fine; a node that gains children meanwhile is retried a few times.
    pub async fn delete_recursive(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" {
            return Err(Error::InvalidArgument(
                "refusing to delete the root recursively".into(),
            ));
        }
        for _ in 0..5 {
            let mut levels: Vec<Vec<String>> = vec![vec![path.to_string()]];
            loop {
                let last = levels.last().expect("non-empty");
                let mut next = Vec::new();
                for chunk in last.chunks(PIPELINE) {
                    let futs: Vec<_> = chunk
                        .iter()
                        .map(|p| self.get_children(p).into_future())
                        .collect();
                    for (p, f) in chunk.iter().zip(futs) {
                        match f.await {
                            Ok((children, _)) => {
                                next.extend(children.into_iter().map(|c| join(p, &c)))
                            }
                            Err(Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                if next.is_empty() {
                    break;
                }
                levels.push(next);
            }
            let mut retry = false;
            'levels: for level in levels.iter().rev() {
                for chunk in level.chunks(PIPELINE) {
                    let futs: Vec<_> = chunk
                        .iter()
                        .map(|p| self.delete(p, None).into_future())
                        .collect();
                    for f in futs {
                        match f.await {
                            Ok(()) | Err(Error::NoNode) => {}
                            Err(Error::NotEmpty) => retry = true,
                            Err(e) => return Err(e),
                        }
                    }
                }
                if retry {
                    break 'levels;
                }
            }
            if !retry {
                return Ok(());
            }
        }
        Err(Error::NotEmpty)
    }
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// How many requests the recursive helpers keep in flight at once.
const PIPELINE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_joins() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
