//! A hash for connection keys that keeps a table's walk in key order.
//!
//! The hub numbers connections in the order it admits them
//! (`Hub::admit`: 1, 2, 3...; a client never picks its key). A fan-out walks
//! a channel's subscribers once per publication, and for each one touches
//! its outbox, its socket and the kernel's socket, all allocated in about
//! that same order. Walked in key order, those accesses move forward through
//! memory; walked in a random order (the standard hasher's), each one is a
//! cache and TLB miss. Measured on the kernel's side alone: one send to each
//! of 9,900 loopback sockets costs more CPU in a shuffled order than in
//! accept order (BENCHMARKS.md, "Fan-out in key order").
//!
//! A hashbrown table (std's `HashMap`) takes the bucket from the hash's low
//! bits and a 7-bit tag, which it compares before the keys, from its top 7
//! bits, and walks its buckets in index order. So the hash keeps the key in
//! its low 57 bits, in order, and puts a mix of the key in the top 7 (a tag
//! that still tells neighbours apart). Keys a table's capacity apart share
//! a bucket and probe on, as in any hash table; the keys are the hub's own,
//! so no client can line them up.

use std::hash::{BuildHasher, Hasher};

/// The hash's low bits that hold the key (hashbrown's tag is the top 7).
const KEY_BITS: u64 = (1 << 57) - 1;

/// Builds [`KeyHasher`]s: the `S` of a `HashMap<u64, _, KeyOrder>`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyOrder;

impl BuildHasher for KeyOrder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// Hashes one `u64` connection key (see the module's documentation).
#[derive(Debug)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed (through `write_u64`); anything else
        // still gets a hash that depends on every byte.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    fn finish(&self) -> u64 {
        (self.0 & KEY_BITS) | (self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) & !KEY_BITS)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_table_walks_its_keys_in_order() {
        let mut map: HashMap<u64, u64, KeyOrder> = HashMap::default();
        for key in 1..=5_000 {
            map.insert(key, key * 2);
        }
        // Some leave, as subscribers do; later ones arrive.
        for key in (1..=5_000).step_by(3) {
            assert_eq!(map.remove(&key), Some(key * 2));
        }
        for key in 5_001..=6_000 {
            map.insert(key, key * 2);
        }
        let keys: Vec<u64> = map.keys().copied().collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "walked in key order");
        assert_eq!(keys.len(), 5_000 - 1_667 + 1_000);
        for key in 1..=6_000 {
            let want = (key > 5_000 || key % 3 != 1).then_some(key * 2);
            assert_eq!(map.get(&key).copied(), want, "key {key}");
        }
    }

    #[test]
    fn keys_a_capacity_apart_are_all_found() {
        // The same low bits (the same bucket) for every key: they probe on,
        // told apart by the tag and the key.
        let mut map: HashMap<u64, u64, KeyOrder> = HashMap::default();
        for i in 0..500 {
            map.insert(i << 20, i);
        }
        for i in 0..500 {
            assert_eq!(map.get(&(i << 20)), Some(&i));
        }
        assert_eq!(map.get(&1), None);
    }

    #[test]
    fn the_tag_bits_differ_between_neighbours() {
        let tags: std::collections::HashSet<u64> = (1..=64u64)
            .map(|key| {
                let mut h = KeyOrder.build_hasher();
                h.write_u64(key);
                h.finish() >> 57
            })
            .collect();
        assert!(tags.len() > 32, "{} distinct tags of 64 keys", tags.len());
    }
}
