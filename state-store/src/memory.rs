//! The in-memory key-value store (a `BTreeMap`), also the building block of in-memory
//! window and session segments.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::restore::ChangelogRecord;
use crate::store::{BatchEntry, Direction, KeyValueIter, KeyValueStore, Restorable, StateStore};

/// A key-value store held in memory, ordered by key bytes. Not persistent: after a restart
/// it is rebuilt from its changelog.
#[derive(Debug)]
pub struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    open: bool,
}

impl InMemoryKeyValueStore {
    /// An empty, open store.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore {
            name: name.into(),
            map: BTreeMap::new(),
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(StoreError::closed(&self.name))
        }
    }
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.map.clear();
        Ok(())
    }
}

impl Restorable for InMemoryKeyValueStore {
    fn restore_batch(&mut self, records: &[ChangelogRecord]) -> Result<()> {
        self.check_open()?;
        for r in records {
            match &r.value {
                Some(v) => {
                    self.map.insert(r.key.clone(), v.clone());
                }
                None => {
                    self.map.remove(&r.key);
                }
            }
        }
        Ok(())
    }
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.remove(key))
    }

    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        self.check_open()?;
        for (k, v) in batch {
            match v {
                Some(v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                None => {
                    self.map.remove(k);
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<KeyValueIter<'_>> {
        self.check_open()?;
        if bounds_empty(lower, upper) {
            return Ok(KeyValueIter::empty());
        }
        // A range of the map itself: entries are copied as the iterator reaches them.
        let range = self
            .map
            .range::<[u8], _>((lower, upper))
            .map(|(k, v)| Ok((k.clone(), v.clone())));
        Ok(match direction {
            Direction::Forward => KeyValueIter::new(range),
            Direction::Reverse => KeyValueIter::new(range.rev()),
        })
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.map.len() as u64)
    }
}

/// Whether a pair of bounds selects nothing (`BTreeMap::range` panics on inverted bounds,
/// so they are checked first).
pub(crate) fn bounds_empty(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}
