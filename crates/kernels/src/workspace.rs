//! Caller-owned scratch memory for kernels.

/// Scratch memory that kernels borrow instead of allocating.
///
/// A kernel asks for `len` floats with [`Workspace::get`]; the buffer grows only when a request
/// is larger than any before it, so after the first call of each shape a loop of kernels
/// allocates nothing. Callers that need a fixed footprint size it up front with
/// [`Workspace::with_capacity`] and read it back with [`Workspace::bytes`].
#[derive(Debug, Default)]
pub struct Workspace {
    buf: Vec<f32>,
}

impl Workspace {
    /// An empty workspace; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A workspace that holds `len` floats already.
    pub fn with_capacity(len: usize) -> Self {
        Workspace {
            buf: vec![0.0; len],
        }
    }

    /// Borrow `len` floats. Their contents are unspecified (whatever the last user left).
    pub fn get(&mut self, len: usize) -> &mut [f32] {
        if self.buf.len() < len {
            self.buf.resize(len, 0.0);
        }
        &mut self.buf[..len]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.buf.len() * std::mem::size_of::<f32>()
    }
}
