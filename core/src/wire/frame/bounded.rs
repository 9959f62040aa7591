//! Deserializers that refuse oversized collections before reserving memory.
//!
//! Serde's own `Vec` and `String` decoders trust the length prefix; these
//! check it against a bound first, so a hostile length cannot make the
//! decoder reserve more than the datagram could hold.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, Error, SeqAccess, Visitor};
use serde::Deserialize;

/// A sequence of at most `N` elements.
pub(super) fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a sequence of at most {N} elements")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > N {
                return Err(A::Error::invalid_length(hint, &self));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::invalid_length(N + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<T, N>(PhantomData))
}

/// At most `N` bytes, taken as one byte string: postcard writes a byte
/// string exactly as a sequence of bytes (a varint length, then the bytes),
/// so the wire is the same, and the bytes are copied at once rather than
/// visited one by one (a file piece is 1 KiB). Formats that give a
/// sequence instead are accepted too.
pub(super) fn bytes<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for V<N> {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {N} bytes")
        }
        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            if v.len() > N {
                return Err(E::invalid_length(v.len(), &self));
            }
            Ok(v.to_vec())
        }
        fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
            self.visit_bytes(v)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
            while let Some(byte) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::invalid_length(N + 1, &self));
                }
                out.push(byte);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V::<N>)
}

/// Writes bytes as one byte string (see [`bytes`]: the same wire as a
/// sequence of bytes, written at once).
pub(super) fn write_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// A string of at most `N` bytes of UTF-8.
pub(super) fn string<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<String, D::Error> {
    let s: &str = Deserialize::deserialize(d)?;
    if s.len() > N {
        return Err(D::Error::invalid_length(s.len(), &"a short name"));
    }
    Ok(s.to_owned())
}

/// A field type with a bounded decoder: the wire registry names a field's
/// bound, and the field's type picks [`string`] or [`vec`].
pub(super) trait Bounded<'de>: Sized {
    /// Decodes a value of at most `N` bytes or elements.
    fn deserialize_bounded<D: Deserializer<'de>, const N: usize>(d: D) -> Result<Self, D::Error>;
}

impl<'de> Bounded<'de> for String {
    fn deserialize_bounded<D: Deserializer<'de>, const N: usize>(d: D) -> Result<String, D::Error> {
        string::<D, N>(d)
    }
}

impl<'de, T: Deserialize<'de>> Bounded<'de> for Vec<T> {
    fn deserialize_bounded<D: Deserializer<'de>, const N: usize>(d: D) -> Result<Vec<T>, D::Error> {
        vec::<D, T, N>(d)
    }
}
