//! The dense block's feature buffer: one preallocated channel-major tensor that every layer of a
//! block reads a prefix of and appends its new channels to, so no concatenation ever copies.
//!
//! # Layout
//!
//! A buffer holds `capacity` channels of `M = N·H·W` floats each, channel-major (CNHW):
//!
//! ```text
//! index(c, n, y, x) = ((c·N + n)·H + y)·W + x = c·M + (n·H + y)·W + x
//! ```
//!
//! so channels `[a, b)` are the one contiguous range `[a·M, b·M)`. For a dense block with `k0`
//! input channels, `L` layers and growth rate `k`, `capacity = k0 + L·k`; layer `l` reads the
//! prefix `[0, k0 + l·k)` and writes its slot `[k0 + l·k, k0 + (l+1)·k)`, obtained together from
//! [`FeatureBuffer::prefix_and_slot`] by one `split_at_mut`. The buffer takes
//! `capacity·M·4` bytes ([`FeatureBuffer::bytes`]).
//!
//! The gradient buffer of a block is a second `FeatureBuffer` of the same shape. In backward,
//! layer `l` reads the gradient of its slot and *accumulates* into the gradient of its prefix:
//! [`FeatureBuffer::prefix_and_slot`] hands out exactly that pair (prefix mutable, slot read).
//! Concatenation's backward, a split, then costs nothing.
//!
//! # Borrowed storage
//!
//! A buffer can also be built over storage that something else owns the rest of the time
//! ([`FeatureBuffer::over`], given back by [`FeatureBuffer::into_storage`]): a training pass
//! puts a block's gradient buffer, which only backward uses, in the storage of the next block's
//! bottleneck outputs, which backward has finished with by then. The storage may be longer than
//! `capacity·M`; the buffer uses its first `capacity·M` floats and leaves the rest untouched.

/// A preallocated channel-major feature tensor with a fixed channel capacity.
#[derive(Clone, Debug)]
pub struct FeatureBuffer {
    /// At least `capacity·per_channel` floats; only those are the buffer (see
    /// [`FeatureBuffer::over`]).
    data: Vec<f32>,
    capacity: usize,
    per_channel: usize,
}

impl FeatureBuffer {
    /// A zeroed buffer of `capacity` channels of `per_channel = N·H·W` floats.
    pub fn new(capacity: usize, per_channel: usize) -> Self {
        FeatureBuffer {
            data: vec![0.0; capacity * per_channel],
            capacity,
            per_channel,
        }
    }

    /// A buffer of `capacity` channels of `per_channel` floats in the first
    /// `capacity·per_channel` floats of `storage`, which keeps its values.
    ///
    /// # Panics
    /// If `storage` is shorter than `capacity·per_channel`.
    pub fn over(storage: Vec<f32>, capacity: usize, per_channel: usize) -> Self {
        assert!(
            storage.len() >= capacity * per_channel,
            "storage of {} floats is shorter than {capacity} channels of {per_channel}",
            storage.len()
        );
        FeatureBuffer {
            data: storage,
            capacity,
            per_channel,
        }
    }

    /// The storage, whole (as given to [`FeatureBuffer::over`]).
    pub fn into_storage(self) -> Vec<f32> {
        self.data
    }

    /// Channel capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Floats per channel, `M = N·H·W`.
    pub fn per_channel(&self) -> usize {
        self.per_channel
    }

    /// Bytes held: `capacity·M·4`, or the whole storage of [`FeatureBuffer::over`].
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }

    /// The whole buffer, `[capacity, N, H, W]`.
    pub fn as_slice(&self) -> &[f32] {
        &self.data[..self.capacity * self.per_channel]
    }

    /// The whole buffer, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[..self.capacity * self.per_channel]
    }

    /// Channels `[0, c)`: `[c, N, H, W]`, floats `[0, c·M)`.
    ///
    /// # Panics
    /// If `c > capacity`.
    pub fn prefix(&self, c: usize) -> &[f32] {
        assert!(
            c <= self.capacity,
            "prefix of {c} channels exceeds capacity"
        );
        &self.data[..c * self.per_channel]
    }

    /// Channels `[0, c)`, mutable.
    ///
    /// # Panics
    /// If `c > capacity`.
    pub fn prefix_mut(&mut self, c: usize) -> &mut [f32] {
        assert!(
            c <= self.capacity,
            "prefix of {c} channels exceeds capacity"
        );
        &mut self.data[..c * self.per_channel]
    }

    /// Channels `[start, start + k)`, mutable: `[k, N, H, W]`, floats `[start·M, (start+k)·M)`.
    ///
    /// # Panics
    /// If `start + k > capacity`.
    pub fn slot_mut(&mut self, start: usize, k: usize) -> &mut [f32] {
        assert!(start + k <= self.capacity, "slot exceeds capacity");
        &mut self.data[start * self.per_channel..(start + k) * self.per_channel]
    }

    /// Channels `[start, start + k)`.
    ///
    /// # Panics
    /// If `start + k > capacity`.
    pub fn slot(&self, start: usize, k: usize) -> &[f32] {
        assert!(start + k <= self.capacity, "slot exceeds capacity");
        &self.data[start * self.per_channel..(start + k) * self.per_channel]
    }

    /// The prefix `[0, c)` (mutable) and the slot `[c, c + k)` (read) at once, split without a
    /// copy: in backward, the prefix gradient is accumulated while the slot gradient is read.
    ///
    /// # Panics
    /// If `c + k > capacity`.
    pub fn prefix_mut_and_slot(&mut self, c: usize, k: usize) -> (&mut [f32], &[f32]) {
        assert!(c + k <= self.capacity, "slot exceeds capacity");
        let (prefix, rest) = self.data.split_at_mut(c * self.per_channel);
        (prefix, &rest[..k * self.per_channel])
    }

    /// The prefix `[0, c)` (read) and the slot `[c, c + k)` (mutable): a dense layer's input and
    /// its output, split without a copy.
    ///
    /// # Panics
    /// If `c + k > capacity`.
    pub fn prefix_and_slot(&mut self, c: usize, k: usize) -> (&[f32], &mut [f32]) {
        assert!(c + k <= self.capacity, "slot exceeds capacity");
        let (prefix, rest) = self.data.split_at_mut(c * self.per_channel);
        (prefix, &mut rest[..k * self.per_channel])
    }

    /// Sets every value to zero (a gradient buffer before backward).
    pub fn zero(&mut self) {
        self.as_mut_slice().fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_slot_follow_the_index_formula() {
        let (n, h, w) = (2, 3, 2);
        let m = n * h * w;
        let mut b = FeatureBuffer::new(5, m);
        for (i, v) in b.as_mut_slice().iter_mut().enumerate() {
            *v = i as f32;
        }
        let (prefix, slot) = b.prefix_and_slot(2, 3);
        assert_eq!(prefix.len(), 2 * m);
        assert_eq!(slot.len(), 3 * m);
        // (c, n, y, x) = (3, 1, 2, 1) sits at ((3·N + 1)·H + 2)·W + 1, i.e. slot channel 1.
        let (c, ni, y, x) = (3, 1, 2, 1);
        let idx = ((c * n + ni) * h + y) * w + x;
        assert_eq!(slot[idx - 2 * m], idx as f32);
        slot[0] = -1.0;
        assert_eq!(b.slot(2, 1)[0], -1.0);
        assert_eq!(b.bytes(), 5 * m * 4);
        let (dp, ds) = b.prefix_mut_and_slot(4, 1);
        assert_eq!((dp.len(), ds.len()), (4 * m, m));
    }

    /// A buffer over longer storage is the storage's first `capacity·M` floats: it reads what
    /// was there, writes nothing past it, and gives the whole storage back.
    #[test]
    fn a_buffer_over_storage_uses_its_front() {
        let m = 3;
        let storage: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let mut b = FeatureBuffer::over(storage, 2, m);
        assert_eq!(b.as_slice(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(b.slot(1, 1), &[3.0, 4.0, 5.0]);
        b.zero();
        assert_eq!(b.bytes(), 10 * 4);
        assert_eq!(
            b.into_storage(),
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 6.0, 7.0, 8.0, 9.0]
        );
    }

    #[test]
    #[should_panic(expected = "shorter than")]
    fn storage_too_short_for_the_buffer_is_refused() {
        FeatureBuffer::over(vec![0.0; 5], 2, 3);
    }
}
