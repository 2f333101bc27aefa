//! The primitive ops, one module per family, each holding for its ops: the kernels'
//! parameter blocks (`kernel_params!`, mirroring the WGSL structs), the launchers, the
//! forwards, which check shapes, launch and, when a tape records and an input is tracked,
//! record a `crate::autodiff::Backward` (what the backward keeps, and its rule), and the
//! f64 references (`<module>::reference`).

pub mod conv;
pub mod conv1x1;
pub mod elementwise;
pub mod fft;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod spectral;

pub use conv::{conv2d, depthwise_conv2d};
pub use conv1x1::{
    FoldedCat, conv1x1, conv1x1_cat, conv1x1_cat_bn_eval, conv1x1_cat_folded, fold_conv1x1_cat,
};
pub use elementwise::{add, add_many, mul, mul_bcast, relu, scale, sigmoid};
pub use fft::{FftPath, fft2, fft2_via, ifft2};
pub use loss::{bce_dice_loss, bce_dice_loss_per_sample};
pub use norm::{batch_norm_eval, batch_norm_eval_relu, batch_norm_train, batch_norm_train_relu};
pub use optim::adam_step;
pub use pool::{max_pool_same, max_pool_valid, upsample2x};
pub use reduce::{mean, mean_channels, sum, sum_channels};
pub use shape::concat_channels;
pub use spectral::{
    spectral_crop, spectral_pad, spectral_pool, spectral_pool_relu, spectral_pool_via,
    spectral_unpool, spectral_unpool_via,
};

pub(crate) use crate::runtime::launch_1d;

/// A convolution's bias, when given, must be (Cout); the error names the weight and bias.
pub(crate) fn check_bias(
    op: &'static str,
    w: &crate::Tensor,
    b: Option<&crate::Tensor>,
    cout: usize,
) -> crate::Result<()> {
    match b {
        Some(b) if b.dims() != [cout] => Err(crate::Error::Shape {
            op,
            lhs: w.shape().clone(),
            rhs: b.shape().clone(),
        }),
        _ => Ok(()),
    }
}

/// A size as the u32 the kernels index with. Tensors are limited to one storage
/// binding (< 4 GiB), so element counts always fit.
pub(crate) fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("size fits in u32: tensors are bounded by the binding limit")
}

#[cfg(test)]
mod tests {
    use crate::runtime::assert_mirrors_wgsl;

    #[test]
    fn every_kernel_parameter_block_mirrors_its_shaders_struct() {
        assert_mirrors_wgsl::<crate::tensor::EwParams>();
        assert_mirrors_wgsl::<super::conv::ConvParams>();
        assert_mirrors_wgsl::<super::conv1x1::MatmulParams>();
        assert_mirrors_wgsl::<super::fft::FftParams>();
        assert_mirrors_wgsl::<super::loss::LossParams>();
        assert_mirrors_wgsl::<super::norm::NormParams>();
        assert_mirrors_wgsl::<super::optim::AdamParams>();
        assert_mirrors_wgsl::<super::pool::PoolParams>();
        assert_mirrors_wgsl::<super::reduce::ReduceParams>();
        assert_mirrors_wgsl::<super::spectral::FullParams>();
    }
}
