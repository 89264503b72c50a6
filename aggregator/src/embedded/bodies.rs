//! The bodies of a page's rows that are in segments.

use super::memory::View;
use super::search::{seg_err, Hit, Place};
use super::segment::{Picked, COL_BODY};
use crate::store::StoreError;

/// The bodies of a page's segment rows, one row group at a time: when a hit's group is
/// not the one loaded, the rows of that group among the hits still to come are read
/// together, with only the pages that hold them.
#[derive(Default)]
pub(super) struct SegmentBodies {
    loaded: Option<((usize, usize), Picked)>,
}

impl SegmentBodies {
    /// The body of `rest[0]` (a segment hit); `rest` are the page's hits from it on.
    pub(super) fn get(&mut self, view: &View, rest: &[Hit]) -> Result<String, StoreError> {
        let Some(Place::Segment { seg, group, row }) = rest.first().map(|h| h.place) else {
            return Ok("{}".to_owned());
        };
        if self.loaded.as_ref().map(|(k, _)| *k) != Some((seg, group)) {
            let mut rows: Vec<usize> = rest
                .iter()
                .filter_map(|h| match h.place {
                    Place::Segment {
                        seg: s,
                        group: g,
                        row,
                    } if (s, g) == (seg, group) => Some(row),
                    _ => None,
                })
                .collect();
            rows.sort_unstable();
            let mut ranges: Vec<(usize, usize)> = Vec::new();
            for r in rows {
                match ranges.last_mut() {
                    Some(last) if r <= last.1 => last.1 = last.1.max(r + 1),
                    _ => ranges.push((r, r + 1)),
                }
            }
            let picked = view.segments[seg]
                .read_strings_in(group, COL_BODY, &ranges)
                .map_err(seg_err)?;
            self.loaded = Some(((seg, group), picked));
        }
        Ok(self
            .loaded
            .as_ref()
            .and_then(|(_, p)| p.get(row))
            .unwrap_or("{}")
            .to_owned())
    }
}
