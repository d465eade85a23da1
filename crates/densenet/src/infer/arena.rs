//! The activation arena: every buffer of the inference plan gets an offset in one `Vec<f32>`,
//! chosen so that two buffers share memory only if they are never live at the same step.
//!
//! A buffer is live over a closed interval of plan steps `[first, last]` (the step that writes
//! it first to the step that reads it last). Offsets are assigned greedily, each buffer at the
//! lowest offset that overlaps no already-placed buffer whose interval meets its own (first
//! fit, the usual heuristic for this offline problem), in three orders (largest first,
//! longest-lived first, earliest first), keeping the shortest result. The arena is then as long
//! as the highest end; the *peak* of live floats (the largest sum of
//! sizes live at one step) is a lower bound no layout can beat, and is reported next to it.

use std::ops::Range;

/// Buffers are padded to multiples of 16 floats (64 bytes), so each starts on its own cache
/// line when the arena does.
const ALIGN: usize = 16;

/// One buffer to place: its length in floats and the steps it is live.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub len: usize,
    pub first: usize,
    pub last: usize,
}

/// Where each requested buffer lives.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Per request, in request order: its range of the arena.
    pub ranges: Vec<Range<usize>>,
    /// Floats the arena needs.
    pub len: usize,
    /// The largest sum of (padded) buffer lengths live at one step.
    pub peak: usize,
}

/// Assigns offsets to `requests` (see the module doc): first fit in three orders (largest
/// first; longest-lived first; earliest first), keeping the shortest arena. No order wins
/// everywhere: densenet121 at batch 1 packs into its peak of live buffers by one order and
/// needs 14% more by another.
pub(crate) fn layout(requests: &[Request]) -> Layout {
    let padded = |r: &Request| r.len.div_ceil(ALIGN) * ALIGN;
    let by = |key: &dyn Fn(&Request) -> (usize, usize)| {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| (key(&requests[i]), i));
        first_fit(requests, &order)
    };
    let candidates = [
        by(&|r| (usize::MAX - padded(r), 0)),
        by(&|r| (usize::MAX - (r.last - r.first), usize::MAX - padded(r))),
        by(&|r| (r.first, usize::MAX - padded(r))),
    ];
    let best = candidates
        .into_iter()
        .min_by_key(|l| l.len)
        .expect("three candidates");
    let last_step = requests.iter().map(|r| r.last).max().unwrap_or(0);
    let peak = (0..=last_step)
        .map(|s| {
            requests
                .iter()
                .filter(|r| r.first <= s && s <= r.last)
                .map(padded)
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    Layout { peak, ..best }
}

/// First fit of `requests` taken in `order`: each at the lowest offset that overlaps no
/// already-placed buffer live at the same time (`peak` left 0).
fn first_fit(requests: &[Request], order: &[usize]) -> Layout {
    let padded = |r: &Request| r.len.div_ceil(ALIGN) * ALIGN;
    let mut placed: Vec<(usize, Range<usize>)> = Vec::with_capacity(requests.len());
    let mut ranges = vec![0..0; requests.len()];
    for &i in order {
        let r = &requests[i];
        let len = padded(r);
        // Ranges of the placed buffers live at the same time, by offset.
        let mut busy: Vec<Range<usize>> = placed
            .iter()
            .filter(|(j, _)| {
                let o = &requests[*j];
                o.first <= r.last && r.first <= o.last
            })
            .map(|(_, range)| range.clone())
            .collect();
        busy.sort_by_key(|b| b.start);
        let mut offset = 0;
        for b in &busy {
            if offset + len <= b.start {
                break;
            }
            offset = offset.max(b.end);
        }
        ranges[i] = offset..offset + r.len;
        placed.push((i, offset..offset + len));
    }
    let len = placed.iter().map(|(_, r)| r.end).max().unwrap_or(0);
    Layout {
        ranges,
        len,
        peak: 0,
    }
}

/// Disjoint mutable slices of `arena` for the given ranges, in the order given (an empty range,
/// standing for a buffer the plan does not have, gets an empty slice).
///
/// # Panics
/// If two ranges overlap or one lies outside the arena: the plan's layout guarantees neither
/// for buffers live at the same step, so this is a bug check.
pub(crate) fn parts<'a, const K: usize>(
    arena: &'a mut [f32],
    ranges: [&Range<usize>; K],
) -> [&'a mut [f32]; K] {
    let mut order: [usize; K] = std::array::from_fn(|i| i);
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: [Option<&'a mut [f32]>; K] = std::array::from_fn(|_| None);
    let mut rest = arena;
    let mut base = 0;
    for &i in &order {
        let r = ranges[i];
        if r.is_empty() {
            out[i] = Some(&mut []);
            continue;
        }
        assert!(r.start >= base, "arena: buffers {r:?} overlap");
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(r.start - base);
        let (part, tail) = tail.split_at_mut(r.end - r.start);
        out[i] = Some(part);
        rest = tail;
        base = r.end;
    }
    out.map(|p| p.expect("every range was placed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_buffers_never_overlap_and_dead_ones_share() {
        let reqs = [
            Request {
                len: 100,
                first: 0,
                last: 1,
            },
            Request {
                len: 50,
                first: 1,
                last: 2,
            },
            Request {
                len: 100,
                first: 2,
                last: 3,
            },
            Request {
                len: 10,
                first: 0,
                last: 3,
            },
        ];
        let l = layout(&reqs);
        for (i, a) in reqs.iter().enumerate() {
            for (j, b) in reqs.iter().enumerate().skip(i + 1) {
                if a.first <= b.last && b.first <= a.last {
                    let (ra, rb) = (&l.ranges[i], &l.ranges[j]);
                    assert!(
                        ra.end <= rb.start || rb.end <= ra.start,
                        "{i} and {j} overlap"
                    );
                }
            }
        }
        // 0 and 2 are never live together, so they can share; the peak is 112+64+16.
        assert_eq!(l.peak, 112 + 64 + 16);
        assert!(l.len < 112 + 64 + 112 + 16);
        let mut arena = vec![0.0; l.len];
        let [a, b] = parts(&mut arena, [&l.ranges[1], &l.ranges[0]]);
        assert_eq!((a.len(), b.len()), (50, 100));
    }

    proptest::proptest! {
        /// Any requests: no two buffers live at the same step overlap, the arena holds every
        /// buffer and is at least the peak, and it is the shortest of the three orders.
        #[test]
        fn random_requests_never_overlap_while_live(
            raw in proptest::collection::vec((1usize..5000, 0usize..12, 0usize..6), 1..40)
        ) {
            let reqs: Vec<Request> = raw
                .iter()
                .map(|&(len, first, span)| Request { len, first, last: first + span })
                .collect();
            let l = layout(&reqs);
            for (i, a) in reqs.iter().enumerate() {
                proptest::prop_assert_eq!(l.ranges[i].len(), a.len);
                proptest::prop_assert!(l.ranges[i].end <= l.len);
                proptest::prop_assert_eq!(l.ranges[i].start % ALIGN, 0);
                for (j, b) in reqs.iter().enumerate().skip(i + 1) {
                    if a.first <= b.last && b.first <= a.last {
                        let (ra, rb) = (&l.ranges[i], &l.ranges[j]);
                        proptest::prop_assert!(ra.end <= rb.start || rb.end <= ra.start);
                    }
                }
            }
            proptest::prop_assert!(l.len >= l.peak);
            let largest_first = {
                let mut order: Vec<usize> = (0..reqs.len()).collect();
                order.sort_by_key(|&i| (std::cmp::Reverse(reqs[i].len.div_ceil(ALIGN)), i));
                first_fit(&reqs, &order).len
            };
            proptest::prop_assert!(l.len <= largest_first);
        }
    }
}
