//! Batching: pick images, augment, scale and normalise them into `f32` batches.

use super::{Augment, DataError, Dataset, Normalization, Rng};

/// One batch ready for the network.
///
/// # Layout
/// `images` is **NCHW**, as `DenseNet::forward` takes its input (it converts to the kernels'
/// channel-major layout itself): `images[((n·C + c)·H + y)·W + x]`, already normalised.
/// `labels[n]` is image `n`'s class.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Normalised pixels, NCHW, `n·c·h·w` floats.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<usize>,
    /// Images in the batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// An iterator over the batches of one pass through a data set.
///
/// A training pass ([`Batches::train`]) shuffles with its own [`Rng`], augments, and drops a
/// last incomplete batch (batch-norm statistics of a handful of images are noise; the shuffle
/// differs each epoch so every image is still seen). An evaluation pass ([`Batches::eval`])
/// keeps the order and every image and never augments.
pub struct Batches<'a> {
    set: &'a Dataset,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    norm: &'a Normalization,
    augment: Augment,
    rng: Rng,
    drop_last: bool,
    scratch: Vec<u8>,
}

impl<'a> Batches<'a> {
    /// A shuffled, augmented pass. Everything random is drawn from `rng` (shuffle first, then
    /// each image's crop and flip in batch order), so equal `rng` states give equal batches.
    ///
    /// A `batch_size` of 0, or a `norm` with another channel count than `set`, is refused with
    /// [`DataError::Invalid`].
    pub fn train(
        set: &'a Dataset,
        batch_size: usize,
        norm: &'a Normalization,
        augment: Augment,
        mut rng: Rng,
    ) -> Result<Self, DataError> {
        let mut order: Vec<usize> = (0..set.len()).collect();
        rng.shuffle(&mut order);
        let drop_last = set.len() >= batch_size;
        Self::build(set, order, batch_size, norm, augment, rng, drop_last)
    }

    /// An in-order pass over every image without augmentation; refuses what
    /// [`Batches::train`] refuses.
    pub fn eval(
        set: &'a Dataset,
        batch_size: usize,
        norm: &'a Normalization,
    ) -> Result<Self, DataError> {
        let order = (0..set.len()).collect();
        Self::build(
            set,
            order,
            batch_size,
            norm,
            Augment::NONE,
            Rng::new(0),
            false,
        )
    }

    fn build(
        set: &'a Dataset,
        order: Vec<usize>,
        batch_size: usize,
        norm: &'a Normalization,
        augment: Augment,
        rng: Rng,
        drop_last: bool,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::Invalid(
                "batch size 0: a batch needs an image".into(),
            ));
        }
        if norm.mean.len() != set.channels() {
            return Err(DataError::Invalid(format!(
                "normalisation for {} channels, data set of {}",
                norm.mean.len(),
                set.channels()
            )));
        }
        Ok(Self {
            set,
            order,
            next: 0,
            batch_size,
            norm,
            augment,
            rng,
            drop_last,
            scratch: vec![0; set.image_len()],
        })
    }

    /// How many batches the pass yields in total.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }

    /// The generator's state after the draws made so far.
    pub fn rng(&self) -> &Rng {
        &self.rng
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let remaining = self.order.len() - self.next;
        if remaining == 0 || (self.drop_last && remaining < self.batch_size) {
            return None;
        }
        let n = remaining.min(self.batch_size);
        let (c, h, w) = (self.set.channels(), self.set.height(), self.set.width());
        let hw = h * w;
        let scale = 1.0 / f32::from(self.set.pixel_max());
        let mut images = vec![0.0f32; n * c * hw];
        let mut labels = Vec::with_capacity(n);
        for slot in 0..n {
            let index = self.order[self.next + slot];
            labels.push(self.set.label(index));
            let pixels: &[u8] = if self.augment.is_none() {
                self.set.image(index)
            } else {
                let draw = self.augment.draw(&mut self.rng);
                self.augment
                    .apply(&mut self.scratch, self.set.image(index), (c, h, w), draw);
                &self.scratch
            };
            for ch in 0..c {
                let (mean, inv_std) = (self.norm.mean[ch], 1.0 / self.norm.std[ch]);
                let out = &mut images[(slot * c + ch) * hw..][..hw];
                for (o, &v) in out.iter_mut().zip(&pixels[ch * hw..][..hw]) {
                    *o = (f32::from(v) * scale - mean) * inv_std;
                }
            }
        }
        self.next += n;
        Some(Batch {
            images,
            labels,
            n,
            c,
            h,
            w,
        })
    }
}
