//! What the web console reads besides `GET /logs`: the volume histogram with its
//! facets and service overview (`GET /logs/volume`), and the live tail
//! (`GET /logs/tail`, Server-Sent Events). Both are generic over the store: the volume
//! is one pass of [`crate::store::Store::scan`], the tail is built on
//! [`crate::store::Store::subscribe`], so every backend serves them.
//!
//! The page itself is [`crate::page`].

pub mod hub;
pub mod tail;
pub mod tally;
pub mod volume;
