//! Caller-owned scratch memory for kernels.

/// Scratch memory that kernels borrow instead of allocating.
///
/// A kernel asks for `len` floats with [`Workspace::get`]. An owned workspace
/// ([`Workspace::new`]) grows only when a request is larger than any before it, so after the
/// first call of each shape a loop of kernels allocates nothing; callers that need a fixed
/// footprint size it up front with [`Workspace::with_capacity`] and read it back with
/// [`Workspace::bytes`]. A borrowed one ([`Workspace::borrowing`]) lends the kernels a slice of
/// the caller's own memory (the inference plan's arena, where each stage's scratch shares
/// memory with the buffers of other stages) and never grows: a request past its end is a
/// sizing bug of the caller, and panics.
#[derive(Debug, Default)]
pub struct Workspace<'a> {
    buf: Buf<'a>,
}

#[derive(Debug)]
enum Buf<'a> {
    Owned(Vec<f32>),
    Borrowed(&'a mut [f32]),
}

impl Default for Buf<'_> {
    fn default() -> Self {
        Buf::Owned(Vec::new())
    }
}

impl Workspace<'static> {
    /// An empty workspace; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A workspace that holds `len` floats already.
    pub fn with_capacity(len: usize) -> Self {
        Workspace {
            buf: Buf::Owned(vec![0.0; len]),
        }
    }
}

impl<'a> Workspace<'a> {
    /// A workspace over `memory`, which it never grows: [`Workspace::get`] panics past its end.
    pub fn borrowing(memory: &'a mut [f32]) -> Self {
        Workspace {
            buf: Buf::Borrowed(memory),
        }
    }

    /// Borrow `len` floats. Their contents are unspecified (whatever the last user left).
    ///
    /// # Panics
    /// If the workspace is borrowed and shorter than `len`.
    pub fn get(&mut self, len: usize) -> &mut [f32] {
        match &mut self.buf {
            Buf::Owned(buf) => {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                &mut buf[..len]
            }
            Buf::Borrowed(buf) => {
                let held = buf.len();
                buf.get_mut(..len).unwrap_or_else(|| {
                    panic!("workspace: {len} floats asked of a borrowed workspace of {held}")
                })
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let floats = match &self.buf {
            Buf::Owned(buf) => buf.len(),
            Buf::Borrowed(buf) => buf.len(),
        };
        floats * std::mem::size_of::<f32>()
    }
}
