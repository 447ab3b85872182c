//! The engine's cases and devices by slot, in chunks shared between the
//! engine and its copies until one of them changes a chunk.
//!
//! A snapshot starts from a copy of the engine, taken on the engine's
//! thread. Cloned element by element, the 10,000 cases of the end-to-end
//! benchmark (their orders, tracks and patterns: some twenty allocations
//! each) held that thread for 24 ms in a quiet process and for 300 ms in
//! a busy one, and every fix waiting behind it waited as long. A copy of
//! [`Slots`] clones one reference per [`CHUNK`] slots; the first change to
//! a chunk afterwards copies that chunk alone (64 cases: tens of
//! microseconds), while the copy still holds it. So the work of a copy is
//! spread over the fixes that follow it, a chunk at a time.
//!
//! It serialises exactly as the `Vec<Option<T>>` it replaces, so
//! snapshots do not change. It never decides anything.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Slots per chunk: small enough that copying one is not felt by the fix
/// that does it, large enough that a copy of 500,000 cases is a few
/// thousand references.
const CHUNK: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Slots<T> {
    chunks: Vec<Arc<Vec<Option<T>>>>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Slots<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, slot: usize) -> Option<&Option<T>> {
        (slot < self.len).then(|| &self.chunks[slot / CHUNK][slot % CHUNK])
    }

    /// The slot to change; its chunk is copied first if a copy of these
    /// slots still shares it.
    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut Option<T>> {
        if slot >= self.len {
            return None;
        }
        Some(&mut Arc::make_mut(&mut self.chunks[slot / CHUNK])[slot % CHUNK])
    }

    pub(super) fn push(&mut self, value: Option<T>) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(value);
        self.len += 1;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Option<T>> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Every slot, to change: copies every chunk a copy still shares.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Option<T>> {
        self.chunks
            .iter_mut()
            .flat_map(|chunk| Arc::make_mut(chunk).iter_mut())
    }
}

impl<T: Clone> Index<usize> for Slots<T> {
    type Output = Option<T>;

    fn index(&self, slot: usize) -> &Option<T> {
        self.get(slot)
            .unwrap_or_else(|| panic!("slot {slot} of {}", self.len))
    }
}

impl<T: Clone> IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, slot: usize) -> &mut Option<T> {
        let len = self.len;
        self.get_mut(slot)
            .unwrap_or_else(|| panic!("slot {slot} of {len}"))
    }
}

impl<T: Clone> FromIterator<Option<T>> for Slots<T> {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(values: I) -> Self {
        let mut slots = Slots::default();
        for value in values {
            slots.push(value);
        }
        slots
    }
}

impl<T: Clone + Serialize> Serialize for Slots<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Postcard writes the length first: the chained chunks cannot
        // tell it to `collect_seq`.
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for slot in self.iter() {
            seq.serialize_element(slot)?;
        }
        seq.end()
    }
}

impl<'de, T: Clone + Deserialize<'de>> Deserialize<'de> for Slots<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Option<T>>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> Slots<String> {
        (0..n).map(|i| Some(i.to_string())).collect()
    }

    #[test]
    fn a_copy_keeps_what_it_was_given_while_the_original_changes() {
        let mut slots = numbered(200);
        let copy = slots.clone();
        slots[3] = Some("changed".into());
        *slots.get_mut(150).unwrap() = None;
        slots.push(Some("new".into()));
        assert_eq!(copy[3].as_deref(), Some("3"));
        assert_eq!(copy[150].as_deref(), Some("150"));
        assert_eq!(copy.len(), 200);
        assert!(copy.get(200).is_none());
        assert_eq!(slots[3].as_deref(), Some("changed"));
        assert_eq!(slots[150], None);
        assert_eq!(slots[200].as_deref(), Some("new"));
        assert_eq!(slots.len(), 201);
    }

    #[test]
    fn only_the_chunks_changed_after_a_copy_are_copied() {
        let mut slots = numbered(3 * CHUNK);
        let copy = slots.clone();
        slots[CHUNK + 1] = None;
        let shared: Vec<bool> = (0..3)
            .map(|c| Arc::ptr_eq(&slots.chunks[c], &copy.chunks[c]))
            .collect();
        assert_eq!(shared, [true, false, true]);
    }

    #[test]
    fn changing_every_slot_leaves_the_copy_whole() {
        let mut slots = numbered(130);
        let copy = slots.clone();
        for slot in slots.iter_mut() {
            *slot = None;
        }
        assert!(slots.iter().all(Option::is_none));
        assert!(copy.iter().all(Option::is_some));
    }

    #[test]
    fn it_serialises_as_the_vector_it_replaces() {
        let values: Vec<Option<String>> = (0..150)
            .map(|i| (i % 7 != 0).then(|| i.to_string()))
            .collect();
        let slots: Slots<String> = values.iter().cloned().collect();
        let bytes = postcard::to_stdvec(&slots).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&values).unwrap());
        let back: Slots<String> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.iter().cloned().collect::<Vec<_>>(), values);
        assert!(numbered(0).get(0).is_none());
    }
}
