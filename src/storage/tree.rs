//! The persistent ordered map that holds a table's rows: a B+tree whose nodes are shared between versions.
//!
//! A table's rows must be cheap to snapshot (a clone is one reference count) and cheap to change (a change
//! copies only the path from the root to one leaf), which is what imbl's `OrdMap` gave us too. This tree
//! exists for one more property: it can be *built* from sorted entries without inserting them one by one.
//! A server starts, and a standby becomes readable, only once its snapshot is loaded, and a snapshot is
//! sorted by key; inserting seven million rows walks the tree seven million times, while packing them into
//! full leaves and stacking branches on top is one pass. Leaves are packed by the threads that decode the
//! snapshot's chunks, in parallel ([`Leaves`]); joining them ([`Tree::from_leaves`]) touches only the few
//! branch nodes above them.
//!
//! ```text
//!                 Branch [k40 k80]                 keys[i] separates children[i] and children[i+1]:
//!        ┌────────────┼─────────────┐              everything in children[i] < keys[i] <= everything
//!   Leaf k1..k39  Leaf k40..k79  Leaf k80..k99     in children[i+1]
//! ```
//!
//! Nodes are `Arc`s; a writer calls `Arc::make_mut` on the way down, so a node shared with another version
//! is copied and one it owns alone is changed in place. Removing entries merges a node that has fallen
//! below a quarter of its capacity with a neighbour (splitting the pair again if they overflow), so the
//! tree stays shallow however it is used; nodes are not otherwise kept half full, which a B+tree needs only
//! to bound its depth.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Most entries in a leaf.
const LEAF_CAP: usize = 32;
/// Most children of a branch.
const BRANCH_CAP: usize = 16;

#[derive(Clone)]
enum Node<K, V> {
    Leaf(Vec<(K, V)>),
    Branch(Branch<K, V>),
}

#[derive(Clone)]
struct Branch<K, V> {
    /// `keys.len() + 1 == children.len()`.
    keys: Vec<K>,
    children: Vec<Arc<Node<K, V>>>,
}

impl<K, V> Node<K, V> {
    /// Entries in a leaf, children of a branch.
    fn width(&self) -> usize {
        match self {
            Node::Leaf(entries) => entries.len(),
            Node::Branch(b) => b.children.len(),
        }
    }

    fn cap(&self) -> usize {
        match self {
            Node::Leaf(_) => LEAF_CAP,
            Node::Branch(_) => BRANCH_CAP,
        }
    }

    fn first_key(&self) -> Option<&K> {
        match self {
            Node::Leaf(entries) => entries.first().map(|(k, _)| k),
            Node::Branch(b) => b.children.first().and_then(|c| c.first_key()),
        }
    }
}

impl<K: Ord, V> Branch<K, V> {
    /// The child whose range holds `key`.
    fn child_for<Q: Ord + ?Sized>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
    {
        self.keys.partition_point(|k| k.borrow() <= key)
    }
}

/// A persistent ordered map (see the module comment).
pub struct Tree<K, V> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

impl<K, V> Clone for Tree<K, V> {
    fn clone(&self) -> Self {
        Tree { root: self.root.clone(), len: self.len }
    }
}

impl<K, V> Default for Tree<K, V> {
    fn default() -> Self {
        Tree { root: None, len: 0 }
    }
}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for Tree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// What an insert below a node hands back up: a new right sibling and the key that separates it.
type Split<K, V> = Option<(K, Arc<Node<K, V>>)>;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Branch(b) => node = &b.children[b.child_for(key)],
                Node::Leaf(entries) => {
                    return entries.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok().map(|i| &entries[i].1)
                }
            }
        }
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Sets the value at `key`, returning the one it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some(root) = &mut self.root else {
            self.root = Some(Arc::new(Node::Leaf(vec![(key, value)])));
            self.len = 1;
            return None;
        };
        let (old, split) = insert(root, key, value);
        if let Some((sep, right)) = split {
            let left = self.root.take().expect("a root");
            self.root = Some(Arc::new(Node::Branch(Branch { keys: vec![sep], children: vec![left, right] })));
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the entry at `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        // Looking first keeps a miss from copying the path to it.
        self.get(key)?;
        let root = self.root.as_mut()?;
        let old = remove(root, key);
        if old.is_some() {
            self.len -= 1;
        }
        // A branch left with one child gives way to it; an empty leaf to no root at all.
        loop {
            match self.root.as_deref() {
                Some(Node::Branch(b)) if b.children.len() == 1 => self.root = Some(b.children[0].clone()),
                Some(Node::Leaf(entries)) if entries.is_empty() => self.root = None,
                Some(Node::Branch(b)) if b.children.is_empty() => self.root = None,
                _ => break,
            }
        }
        old
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        let mut it = Iter::empty();
        if let Some(root) = self.root.as_deref() {
            it.descend_first(root);
        }
        it
    }

    /// The entries from the first key at or after `start`, in key order.
    pub fn range_from<Q: Ord + ?Sized>(&self, start: &Q) -> Iter<'_, K, V>
    where
        K: Borrow<Q>,
    {
        let mut it = Iter::empty();
        let Some(mut node) = self.root.as_deref() else { return it };
        loop {
            match node {
                Node::Branch(b) => {
                    let i = b.child_for(start);
                    it.stack.push((b, i + 1));
                    node = &b.children[i];
                }
                Node::Leaf(entries) => {
                    it.leaf = entries;
                    it.pos = entries.partition_point(|(k, _)| k.borrow() < start);
                    return it;
                }
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// The entry with the greatest key.
    pub fn last(&self) -> Option<(&K, &V)> {
        self.root.as_deref().and_then(last_entry).map(|(k, v)| (k, v))
    }

    /// Joins runs of sorted entries, in order, into one tree. Fails if a run's first key is not greater
    /// than the run before it's last key.
    pub fn from_leaves(runs: impl IntoIterator<Item = Leaves<K, V>>) -> Result<Self, NotAscending> {
        let mut level: Vec<Arc<Node<K, V>>> = Vec::new();
        let mut len = 0;
        for run in runs {
            if let (Some((prev, _)), Some(first)) = (level.last().and_then(|n| last_entry(n)), run.first_key()) {
                if prev >= first {
                    return Err(NotAscending { at: len });
                }
            }
            len += run.len;
            level.extend(run.leaves);
        }
        // Stack branches until one node is left: each level is the one below in groups of BRANCH_CAP, the
        // last two groups evened out so that neither is nearly empty.
        while level.len() > 1 {
            let mut groups: Vec<Vec<Arc<Node<K, V>>>> = Vec::with_capacity(level.len().div_ceil(BRANCH_CAP));
            let mut rest = level.into_iter().peekable();
            while rest.peek().is_some() {
                groups.push(rest.by_ref().take(BRANCH_CAP).collect());
            }
            if let [.., a, b] = &mut groups[..] {
                if b.len() < BRANCH_CAP / 2 {
                    let total = a.len() + b.len();
                    let mut moved = a.split_off(total / 2);
                    moved.append(b);
                    *b = moved;
                }
            }
            level = groups
                .into_iter()
                .map(|children| {
                    let keys = children[1..].iter().map(|c| c.first_key().expect("no empty node").clone()).collect();
                    Arc::new(Node::Branch(Branch { keys, children }))
                })
                .collect();
        }
        Ok(Tree { root: level.pop(), len })
    }
}

fn last_entry<K, V>(node: &Node<K, V>) -> Option<&(K, V)> {
    match node {
        Node::Leaf(entries) => entries.last(),
        Node::Branch(b) => b.children.last().and_then(|c| last_entry(c)),
    }
}

/// Entries that were not in strictly ascending key order; `at` counts the entries before the first one
/// out of order.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAscending {
    pub at: usize,
}

/// Sorted entries packed into full leaves, ready to be joined into a [`Tree`].
pub struct Leaves<K, V> {
    leaves: Vec<Arc<Node<K, V>>>,
    len: usize,
}

impl<K: Ord + Clone, V: Clone> Leaves<K, V> {
    /// Packs entries whose keys are strictly ascending.
    pub fn pack(entries: impl IntoIterator<Item = (K, V)>) -> Result<Self, NotAscending> {
        let mut leaves: Vec<Arc<Node<K, V>>> = Vec::new();
        let mut leaf: Vec<(K, V)> = Vec::with_capacity(LEAF_CAP);
        let mut len = 0;
        for (k, v) in entries {
            let prev = match (leaf.last(), leaves.last().map(|n| &**n)) {
                (Some((p, _)), _) => Some(p),
                (None, Some(Node::Leaf(full))) => full.last().map(|(p, _)| p),
                _ => None,
            };
            if prev.is_some_and(|p| *p >= k) {
                return Err(NotAscending { at: len });
            }
            leaf.push((k, v));
            len += 1;
            if leaf.len() == LEAF_CAP {
                leaves.push(Arc::new(Node::Leaf(std::mem::replace(&mut leaf, Vec::with_capacity(LEAF_CAP)))));
            }
        }
        if !leaf.is_empty() {
            leaves.push(Arc::new(Node::Leaf(leaf)));
        }
        Ok(Leaves { leaves, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn first_key(&self) -> Option<&K> {
        self.leaves.first().and_then(|n| n.first_key())
    }
}

fn insert<K: Ord + Clone, V: Clone>(node: &mut Arc<Node<K, V>>, key: K, value: V) -> (Option<V>, Split<K, V>) {
    match Arc::make_mut(node) {
        Node::Leaf(entries) => match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => (Some(std::mem::replace(&mut entries[i].1, value)), None),
            Err(i) => {
                entries.insert(i, (key, value));
                if entries.len() <= LEAF_CAP {
                    return (None, None);
                }
                let right = entries.split_off(entries.len() / 2);
                let sep = right[0].0.clone();
                (None, Some((sep, Arc::new(Node::Leaf(right)))))
            }
        },
        Node::Branch(b) => {
            let i = b.child_for(&key);
            let (old, split) = insert(&mut b.children[i], key, value);
            if let Some((sep, right)) = split {
                b.keys.insert(i, sep);
                b.children.insert(i + 1, right);
                if b.children.len() > BRANCH_CAP {
                    return (old, Some(split_branch(b)));
                }
            }
            (old, None)
        }
    }
}

/// Splits an overfull branch in two, returning the right half and the key that separates the halves.
fn split_branch<K, V>(b: &mut Branch<K, V>) -> (K, Arc<Node<K, V>>) {
    let mid = b.children.len() / 2;
    let children = b.children.split_off(mid);
    let keys = b.keys.split_off(mid);
    let sep = b.keys.pop().expect("a branch has a key per child but one");
    (sep, Arc::new(Node::Branch(Branch { keys, children })))
}

fn remove<K, V, Q>(node: &mut Arc<Node<K, V>>, key: &Q) -> Option<V>
where
    K: Ord + Clone + Borrow<Q>,
    V: Clone,
    Q: Ord + ?Sized,
{
    match Arc::make_mut(node) {
        Node::Leaf(entries) => {
            let i = entries.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok()?;
            Some(entries.remove(i).1)
        }
        Node::Branch(b) => {
            let i = b.child_for(key);
            let old = remove(&mut b.children[i], key)?;
            let (width, cap) = (b.children[i].width(), b.children[i].cap());
            if width == 0 {
                b.children.remove(i);
                if !b.keys.is_empty() {
                    b.keys.remove(i.saturating_sub(1));
                }
            } else if width < cap / 4 && b.children.len() > 1 {
                merge(b, if i + 1 < b.children.len() { i } else { i - 1 });
            }
            Some(old)
        }
    }
}

/// Merges children `i` and `i + 1` of a branch into one, splitting the result again if it is overfull.
fn merge<K: Ord + Clone, V: Clone>(b: &mut Branch<K, V>, i: usize) {
    let right = b.children.remove(i + 1);
    let sep = b.keys.remove(i);
    let right = Arc::try_unwrap(right).unwrap_or_else(|shared| (*shared).clone());
    let split = match (Arc::make_mut(&mut b.children[i]), right) {
        (Node::Leaf(left), Node::Leaf(mut right)) => {
            left.append(&mut right);
            (left.len() > LEAF_CAP).then(|| {
                let right = left.split_off(left.len() / 2);
                (right[0].0.clone(), Arc::new(Node::Leaf(right)))
            })
        }
        (Node::Branch(left), Node::Branch(mut right)) => {
            left.keys.push(sep);
            left.keys.append(&mut right.keys);
            left.children.append(&mut right.children);
            (left.children.len() > BRANCH_CAP).then(|| split_branch(left))
        }
        _ => unreachable!("siblings are at the same level"),
    };
    if let Some((sep, node)) = split {
        b.keys.insert(i, sep);
        b.children.insert(i + 1, node);
    }
}

/// An iterator over a tree's entries in key order.
pub struct Iter<'a, K, V> {
    /// The branches above the current leaf, each with the index of the next child to visit.
    stack: Vec<(&'a Branch<K, V>, usize)>,
    leaf: &'a [(K, V)],
    pos: usize,
}

impl<'a, K, V> Iter<'a, K, V> {
    fn empty() -> Self {
        Iter { stack: Vec::new(), leaf: &[], pos: 0 }
    }

    fn descend_first(&mut self, mut node: &'a Node<K, V>) {
        loop {
            match node {
                Node::Branch(b) => {
                    self.stack.push((b, 1));
                    node = &b.children[0];
                }
                Node::Leaf(entries) => {
                    self.leaf = entries;
                    self.pos = 0;
                    return;
                }
            }
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.leaf.get(self.pos) {
                self.pos += 1;
                return Some((k, v));
            }
            let (branch, next) = self.stack.last_mut()?;
            if *next < branch.children.len() {
                let child = &branch.children[*next];
                *next += 1;
                self.descend_first(child);
            } else {
                self.stack.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Checks the shape: separators bound their children, every leaf at one depth, no empty node.
    fn check<K: Ord + Clone + fmt::Debug, V: Clone>(t: &Tree<K, V>) {
        fn walk<K: Ord + fmt::Debug, V>(n: &Node<K, V>, lo: Option<&K>, hi: Option<&K>, depth: usize) -> usize {
            match n {
                Node::Leaf(entries) => {
                    assert!(!entries.is_empty() && entries.len() <= LEAF_CAP);
                    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
                    assert!(lo.is_none_or(|lo| *lo <= entries[0].0));
                    assert!(hi.is_none_or(|hi| entries.last().unwrap().0 < *hi));
                    depth
                }
                Node::Branch(b) => {
                    assert_eq!(b.keys.len() + 1, b.children.len());
                    assert!(b.children.len() <= BRANCH_CAP);
                    let depths: Vec<usize> = (0..b.children.len())
                        .map(|i| {
                            let l = if i == 0 { lo } else { Some(&b.keys[i - 1]) };
                            let h = if i == b.keys.len() { hi } else { Some(&b.keys[i]) };
                            walk(&b.children[i], l, h, depth + 1)
                        })
                        .collect();
                    assert!(depths.windows(2).all(|w| w[0] == w[1]), "leaves at different depths");
                    depths[0]
                }
            }
        }
        if let Some(r) = &t.root {
            walk(r, None, None, 0);
        }
        assert_eq!(t.iter().count(), t.len());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        /// Keep a clone: later changes must not show in it.
        Snapshot,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u16..600).prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any sequence of changes to a tree (bulk-built or empty at first) matches a BTreeMap, and clones
        /// taken along the way keep what they saw.
        #[test]
        fn matches_a_btreemap(start in proptest::collection::btree_set(0u16..600, 0..400),
                              ops in proptest::collection::vec(op(), 0..1500)) {
            let mut model: BTreeMap<u16, u32> = start.iter().map(|&k| (k, k as u32)).collect();
            let mut tree = Tree::from_leaves([Leaves::pack(model.clone()).unwrap()]).unwrap();
            check(&tree);
            let mut snapshots = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(tree.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(tree.remove(&k), model.remove(&k)),
                    Op::Snapshot => snapshots.push((tree.clone(), model.clone())),
                }
                prop_assert_eq!(tree.len(), model.len());
            }
            check(&tree);
            prop_assert!(tree.iter().map(|(k, v)| (*k, *v)).eq(model.iter().map(|(k, v)| (*k, *v))));
            for probe in [0u16, 1, 17, 299, 300, 599, 600] {
                prop_assert_eq!(tree.get(&probe), model.get(&probe));
                prop_assert!(tree.range_from(&probe).map(|(k, _)| *k).eq(model.range(probe..).map(|(k, _)| *k)));
            }
            prop_assert_eq!(tree.last().map(|(k, _)| *k), model.keys().next_back().copied());
            for (t, m) in snapshots {
                check(&t);
                prop_assert!(t.iter().map(|(k, v)| (*k, *v)).eq(m.iter().map(|(k, v)| (*k, *v))));
            }
        }
    }

    /// A deep tree (four levels) filled in a scrambled order and emptied again keeps its shape throughout.
    #[test]
    fn deep_tree_fills_and_empties() {
        let n = 60_000u64;
        let scrambled = |i: u64| (i * 7919) % n;
        let mut tree = Tree::new();
        for i in 0..n {
            tree.insert(scrambled(i), i);
        }
        check(&tree);
        assert!(tree.keys().copied().eq(0..n));
        let kept = tree.clone();
        for i in 0..n {
            if i % 10 != 0 {
                assert_eq!(tree.remove(&scrambled(i)), Some(i));
            }
            if i % 9999 == 0 {
                check(&tree);
            }
        }
        check(&tree);
        assert_eq!(tree.len(), 6000);
        assert_eq!(kept.len(), n as usize);
        assert!(kept.keys().copied().eq(0..n));
        for i in (0..n).step_by(10) {
            assert_eq!(tree.remove(&scrambled(i)), Some(i));
        }
        assert!(tree.is_empty() && tree.root.is_none());
    }

    #[test]
    fn builds_from_runs_and_refuses_disorder() {
        let runs = (0..10u32).map(|r| Leaves::pack((r * 1000..r * 1000 + 777).map(|k| (k, k))).unwrap());
        let tree = Tree::from_leaves(runs).unwrap();
        check(&tree);
        assert_eq!(tree.len(), 7770);
        assert!(tree.iter().map(|(k, _)| *k).eq((0..10u32).flat_map(|r| r * 1000..r * 1000 + 777)));
        assert_eq!(Leaves::pack([(1, ()), (3, ()), (3, ())]).err(), Some(NotAscending { at: 2 }));
        assert_eq!(Leaves::pack((0..100).chain([50]).map(|k| (k, ()))).err(), Some(NotAscending { at: 100 }));
        let overlapping = [Leaves::pack((0..100).map(|k| (k, ()))).unwrap(), Leaves::pack([(99, ())]).unwrap()];
        assert_eq!(Tree::from_leaves(overlapping).err(), Some(NotAscending { at: 100 }));
        assert!(Tree::<u32, ()>::from_leaves([]).unwrap().is_empty());
    }
}
