//! Shared immutable slices one pointer wide: rows, and the texts, byte strings and multi-column keys inside
//! values.
//!
//! Every row is a slice of [`Value`](super::value::Value)s and every leaf entry of a table's tree holds a
//! [`Key`](super::value::Key), so the size of a value is most of the memory a table takes, and of the time a
//! snapshot takes to load (on our machines, mostly faulting that memory in and storing into it). A value is
//! a tag and one word. `Arc<[T]>` and `Arc<str>` are two words (pointer and length), which made a value
//! three, and a row's pointer in a leaf entry two; [`Shared`] keeps the length in the allocation instead,
//! beside the reference count:
//!
//! ```text
//! pointer -> [ count: AtomicUsize | len: usize | T; len ]
//! ```
//!
//! Cloning adds one to the count; the last drop drops the elements and frees the allocation. The contents
//! never change after construction, so a `Shared` is `Send` and `Sync` when its elements are. There are no
//! weak references. [`SharedStr`] is a `Shared<u8>` that holds UTF-8.
//!
//! Equality, order, hash, `Debug` and `Display` are those of the slice (or `str`), as for `Arc`.

use std::alloc::{self, Layout};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{self, AtomicUsize};

#[repr(C)]
struct Header {
    count: AtomicUsize,
    len: usize,
}

/// A shared, immutable `[T]` behind one pointer (see the module comment).
pub struct Shared<T> {
    ptr: NonNull<Header>,
    owns: PhantomData<T>,
}

// SAFETY: the elements are only ever read through shared references once constructed, and the count is
// atomic, exactly as for `Arc<[T]>`.
unsafe impl<T: Send + Sync> Send for Shared<T> {}
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The allocation for `len` elements, and where the elements start in it.
    fn layout(len: usize) -> (Layout, usize) {
        let elements = Layout::array::<T>(len).expect("a slice too large to allocate");
        let (layout, offset) = Layout::new::<Header>().extend(elements).expect("a slice too large to allocate");
        (layout.pad_to_align(), offset)
    }

    fn header(&self) -> &Header {
        // SAFETY: `ptr` points to a live, initialized header for as long as `self` holds a count.
        unsafe { self.ptr.as_ref() }
    }

    fn data(&self) -> *mut T {
        // SAFETY: the offset is within the allocation (it is where the elements start).
        unsafe { (self.ptr.as_ptr() as *mut u8).add(Self::layout(0).1) as *mut T }
    }

    /// A new allocation holding a bitwise copy of `values`.
    ///
    /// # Safety
    /// The caller must make the copy a legal owner of the elements: `T: Copy`, or the originals are never
    /// dropped or used again.
    unsafe fn bitwise_copy(values: &[T]) -> Shared<T> {
        let len = values.len();
        let (layout, offset) = Self::layout(len);
        // SAFETY: the layout is never zero-sized (it holds the header), and the elements start at `offset`.
        unsafe {
            let p = alloc::alloc(layout);
            let Some(ptr) = NonNull::new(p as *mut Header) else { alloc::handle_alloc_error(layout) };
            ptr.as_ptr().write(Header { count: AtomicUsize::new(1), len });
            ptr::copy_nonoverlapping(values.as_ptr(), p.add(offset) as *mut T, len);
            Shared { ptr, owns: PhantomData }
        }
    }

    /// The elements of `values`, moved into a shared allocation.
    pub fn from_vec(mut values: Vec<T>) -> Shared<T> {
        // SAFETY: the elements are moved bit for bit, after which the vector forgets them (set_len(0)) and
        // frees only its buffer.
        unsafe {
            let shared = Shared::bitwise_copy(&values);
            values.set_len(0);
            shared
        }
    }

    /// Whether both are the same allocation.
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        a.ptr == b.ptr
    }
}

impl<T: Copy> Shared<T> {
    /// A shared copy of `values`.
    pub fn copy_from_slice(values: &[T]) -> Shared<T> {
        // SAFETY: `T: Copy`, so copying the bits is a copy of the values.
        unsafe { Shared::bitwise_copy(values) }
    }
}

impl<T> Deref for Shared<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialized elements start at `data()` and live as long as this count.
        unsafe { std::slice::from_raw_parts(self.data(), self.header().len) }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        // Relaxed, as Arc: a new reference is made from an existing one, which keeps the allocation alive.
        let old = self.header().count.fetch_add(1, atomic::Ordering::Relaxed);
        if old > isize::MAX as usize {
            std::process::abort(); // as Arc does: the count overflowing would free a live allocation
        }
        Shared { ptr: self.ptr, owns: PhantomData }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if self.header().count.fetch_sub(1, atomic::Ordering::Release) != 1 {
            return;
        }
        // Every other reference's uses happen before the free (the Release decrements above pair with this).
        atomic::fence(atomic::Ordering::Acquire);
        let len = self.header().len;
        // SAFETY: this was the last reference: nothing else reads the elements or the header any more.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.data(), len));
            alloc::dealloc(self.ptr.as_ptr() as *mut u8, Self::layout(len).0);
        }
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(values: Vec<T>) -> Shared<T> {
        Shared::from_vec(values)
    }
}

impl<T> FromIterator<T> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Shared<T> {
        Shared::from_vec(iter.into_iter().collect())
    }
}

impl<T: Clone> From<&[T]> for Shared<T> {
    /// Clones `values` straight into a new allocation (one allocation, not a vector's and then this one's).
    fn from(values: &[T]) -> Shared<T> {
        let len = values.len();
        let (layout, offset) = Self::layout(len);
        /// Until every element is cloned, owns the allocation and the elements cloned so far, and frees
        /// them if a clone panics.
        struct Filling<T> {
            ptr: NonNull<Header>,
            data: *mut T,
            done: usize,
            layout: Layout,
        }
        impl<T> Drop for Filling<T> {
            fn drop(&mut self) {
                // SAFETY: the first `done` elements were written, and nothing else refers to the allocation.
                unsafe {
                    ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.data, self.done));
                    alloc::dealloc(self.ptr.as_ptr() as *mut u8, self.layout);
                }
            }
        }
        // SAFETY: the layout is never zero-sized; each element is written once, in place, before `done`
        // counts it; the header is written last, once every element is.
        unsafe {
            let p = alloc::alloc(layout);
            let Some(ptr) = NonNull::new(p as *mut Header) else { alloc::handle_alloc_error(layout) };
            let mut filling = Filling { ptr, data: p.add(offset) as *mut T, done: 0, layout };
            for v in values {
                filling.data.add(filling.done).write(v.clone());
                filling.done += 1;
            }
            std::mem::forget(filling);
            ptr.as_ptr().write(Header { count: AtomicUsize::new(1), len });
            Shared { ptr, owns: PhantomData }
        }
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: PartialOrd> PartialOrd for Shared<T> {
    fn partial_cmp(&self, other: &Shared<T>) -> Option<Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: Ord> Ord for Shared<T> {
    fn cmp(&self, other: &Shared<T>) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: Hash> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// Shared, immutable text behind one pointer: a [`Shared<u8>`] that holds UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SharedStr(Shared<u8>);

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        // SAFETY: a SharedStr is only made from a `str`.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> SharedStr {
        SharedStr(Shared::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> SharedStr {
        SharedStr::from(s.as_str())
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state) // as str hashes, so a SharedStr and its &str agree
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

const _: () = assert!(std::mem::size_of::<Shared<u64>>() == 8 && std::mem::size_of::<SharedStr>() == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn clones_share_and_the_last_drop_frees_the_elements() {
        let tracked = Arc::new(());
        let s: Shared<Arc<()>> = vec![tracked.clone(), tracked.clone(), tracked.clone()].into();
        assert_eq!(s.len(), 3);
        assert_eq!(Arc::strong_count(&tracked), 4);
        let copies: Vec<_> = (0..10).map(|_| s.clone()).collect();
        std::thread::scope(|scope| {
            for c in copies {
                scope.spawn(move || assert_eq!(c.len(), 3));
            }
        });
        assert_eq!(Arc::strong_count(&tracked), 4, "dropping clones drops no element");
        drop(s);
        assert_eq!(Arc::strong_count(&tracked), 1, "the last drop drops every element");
    }

    #[test]
    fn a_clone_that_panics_drops_what_was_cloned_and_nothing_else() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Fussy(u32);
        impl Clone for Fussy {
            fn clone(&self) -> Fussy {
                assert!(self.0 != 3, "cannot clone 3");
                Fussy(self.0)
            }
        }
        impl Drop for Fussy {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        let originals: Vec<Fussy> = (1..=4).map(Fussy).collect();
        let copied: Shared<Fussy> = Shared::from(&originals[..2]);
        assert_eq!(copied.iter().map(|f| f.0).collect::<Vec<_>>(), [1, 2]);
        drop(copied);
        assert_eq!(DROPS.swap(0, Ordering::SeqCst), 2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Shared::from(&originals[..])));
        assert!(r.is_err());
        assert_eq!(DROPS.swap(0, Ordering::SeqCst), 2, "the two clones made before the panic are dropped, once");
        drop(originals);
        assert_eq!(DROPS.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn reads_compares_and_hashes_as_its_contents() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |v: &dyn Fn(&mut DefaultHasher)| {
            let mut h = DefaultHasher::new();
            v(&mut h);
            h.finish()
        };
        let a = SharedStr::from("héllo");
        assert_eq!(&*a, "héllo");
        assert_eq!(a.to_string(), "héllo");
        assert_eq!(format!("{a:?}"), "\"héllo\"");
        assert_eq!(hash(&|h| a.hash(h)), hash(&|h| "héllo".hash(h)));
        assert!(SharedStr::from("abc") < SharedStr::from("abd"));
        assert!(SharedStr::from("") < SharedStr::from("a"));
        assert_eq!(SharedStr::from(String::from("x")), SharedStr::from("x"));
        let b: Shared<u8> = Shared::copy_from_slice(b"\x00\xff");
        assert_eq!(&*b, b"\x00\xff");
        assert_eq!(hash(&|h| b.hash(h)), hash(&|h| b"\x00\xff"[..].hash(h)));
        let empty: Shared<String> = Vec::new().into();
        assert!(empty.is_empty());
        let words: Shared<String> = (&["b".to_string(), "a".to_string()][..]).into();
        assert_eq!(format!("{words:?}"), "[\"b\", \"a\"]");
        assert!(words > empty);
    }
}
