//! The standalone decode-attention kernel over the engine's own K/V.

use std::ops::Range;
use std::os::raw::c_void;

use kvc_sys as sys;

use crate::{DType, Error, Result};

/// A 16-bit IEEE half-precision element (bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct F16(pub u16);

/// A bfloat16 element (bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::F16 {}
    impl Sealed for super::Bf16 {}
}

/// An element type the kernel reads K and V in.
pub trait Element: sealed::Sealed + Copy {
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for F16 {
    const DTYPE: DType = DType::F16;
}
impl Element for Bf16 {
    const DTYPE: DType = DType::Bf16;
}

/// Shape and strides (in elements) of K and V: `[kv head][key][row_stride]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub n_keys: u32,
    pub row_stride: usize,
    pub head_stride: usize,
    /// 0 means 1/sqrt(head_dim).
    pub scale: f32,
}

impl Layout {
    /// Rows of `head_dim` back to back, heads back to back.
    pub fn contiguous(n_q_heads: u32, n_kv_heads: u32, head_dim: u32, n_keys: u32) -> Layout {
        Layout {
            n_q_heads,
            n_kv_heads,
            head_dim,
            n_keys,
            row_stride: head_dim as usize,
            head_stride: n_keys as usize * head_dim as usize,
            scale: 0.0,
        }
    }
}

/// `out[h] = softmax(scale * q[h] . K^T) . V` for every query head; `weights`
/// (if given, `n_q_heads * n_keys` floats) receives the softmax weights.
pub fn attention<T: Element>(
    layout: &Layout,
    q: &[f32],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    weights: Option<&mut [f32]>,
) -> Result<()> {
    run(layout, None, q, k, v, out, weights)
}

/// [`attention`] for kv heads `kv_heads` only (and their query heads);
/// `q`, `out` and `weights` are still indexed from head 0.
pub fn attention_heads<T: Element>(
    layout: &Layout,
    kv_heads: Range<u32>,
    q: &[f32],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    weights: Option<&mut [f32]>,
) -> Result<()> {
    run(layout, Some(kv_heads), q, k, v, out, weights)
}

fn run<T: Element>(
    l: &Layout,
    range: Option<Range<u32>>,
    q: &[f32],
    k: &[T],
    v: &[T],
    out: &mut [f32],
    weights: Option<&mut [f32]>,
) -> Result<()> {
    if l.n_q_heads == 0 || l.n_kv_heads == 0 || l.head_dim == 0 || l.n_keys == 0 {
        return Err(Error::inval(format!("layout has a zero dimension: {:?}", l)));
    }
    if l.n_q_heads % l.n_kv_heads != 0 || l.row_stride < l.head_dim as usize {
        return Err(Error::inval(format!("inconsistent layout: {:?}", l)));
    }
    let nq = l.n_q_heads as usize * l.head_dim as usize;
    if q.len() != nq || out.len() != nq {
        return Err(Error::inval(format!(
            "q and out need {} floats, got {} and {}",
            nq,
            q.len(),
            out.len()
        )));
    }
    // furthest element the layout reaches, computed without overflow
    let extent = (l.n_kv_heads as usize - 1)
        .checked_mul(l.head_stride)
        .and_then(|a| {
            (l.n_keys as usize - 1)
                .checked_mul(l.row_stride)
                .and_then(|b| a.checked_add(b))
        })
        .and_then(|a| a.checked_add(l.head_dim as usize))
        .ok_or_else(|| Error::new(sys::KVC_EOVERFLOW, "layout extent overflows usize"))?;
    if k.len() < extent || v.len() < extent {
        return Err(Error::inval(format!(
            "the layout reaches element {}, k has {} and v {}",
            extent,
            k.len(),
            v.len()
        )));
    }
    let nw = l.n_q_heads as usize * l.n_keys as usize;
    let wp = match weights {
        Some(w) if w.len() < nw => {
            return Err(Error::inval(format!("weights: {} floats, needs {}", w.len(), nw)));
        }
        Some(w) => w.as_mut_ptr(),
        None => std::ptr::null_mut(),
    };
    let raw = sys::kvc_attn_layout {
        n_q_heads: l.n_q_heads,
        n_kv_heads: l.n_kv_heads,
        head_dim: l.head_dim,
        n_keys: l.n_keys,
        dtype: T::DTYPE as u32,
        row_stride: l.row_stride,
        head_stride: l.head_stride,
        scale: l.scale,
    };
    let kp = k.as_ptr() as *const c_void;
    let vp = v.as_ptr() as *const c_void;
    // SAFETY: every buffer was checked to cover what the layout reaches.
    let rc = unsafe {
        match &range {
            None => sys::kvc_attention(&raw, q.as_ptr(), kp, vp, out.as_mut_ptr(), wp, l.n_keys as usize),
            Some(r) => sys::kvc_attention_heads(
                &raw,
                r.start,
                r.end,
                q.as_ptr(),
                kp,
                vp,
                out.as_mut_ptr(),
                wp,
                l.n_keys as usize,
            ),
        }
    };
    if rc != 0 {
        return Err(Error::new(
            rc,
            format!(
                "attention({:?}{})",
                l,
                range.map(|r| format!(", kv heads {:?}", r)).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}
