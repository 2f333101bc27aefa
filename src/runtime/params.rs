//! Kernel parameter blocks: each shader of `shaders/` reads its launch parameters from one
//! immediate `struct Params`, and each is mirrored by one `#[repr(C)]` `bytemuck::Pod`
//! struct declared with [`kernel_params!`], which also records the field names and types,
//! so that a test holds every Rust block to its WGSL struct, field for field.

use super::Shader;

/// A kernel's immediate block, laid out as its shader's `struct Params`.
pub(crate) trait KernelParams: bytemuck::Pod {
    /// The shaders whose `struct Params` this mirrors (one, or a family split over files:
    /// the subgroup products live apart from the plain ones).
    const SHADERS: &'static [Shader];
    /// (name, WGSL type) of each field, in order (read by the test that holds each block
    /// to its shader).
    #[cfg_attr(not(test), allow(dead_code))]
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declare a parameter block: `kernel_params! { /// doc
/// pub(crate) struct Name for Elementwise { a: u32, s: f32 } }` (the shader by its
/// [`Shader`] variant; several, comma-separated, share one block). Fields are `u32` or
/// `f32`, named and ordered as in the WGSL struct.
macro_rules! kernel_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident for $($shader:ident),+ {
        $($(#[$fmeta:meta])* $field:ident: $ty:ident),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        impl $crate::runtime::KernelParams for $name {
            const SHADERS: &'static [$crate::runtime::Shader] =
                &[$($crate::runtime::Shader::$shader),+];
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}
pub(crate) use kernel_params;

/// (name, type) of each field of `struct Params` in a WGSL source, comments removed.
#[cfg(test)]
pub(crate) fn wgsl_params_fields(source: &str) -> Vec<(String, String)> {
    let start = source
        .find("struct Params {")
        .expect("the shader declares struct Params");
    let body = &source[start + "struct Params {".len()..];
    let body = &body[..body.find('}').expect("struct Params is closed")];
    body.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .flat_map(|line| line.split(','))
        .filter_map(|field| {
            let (name, ty) = field.split_once(':')?;
            Some((name.trim().to_string(), ty.trim().to_string()))
        })
        .collect()
}

/// Panic, naming the field, unless `P` is each of its shaders' `struct Params` field for
/// field.
#[cfg(test)]
pub(crate) fn assert_mirrors_wgsl<P: KernelParams>() {
    let rust: Vec<(String, String)> = P::FIELDS
        .iter()
        .map(|&(n, t)| (n.to_string(), t.to_string()))
        .collect();
    for shader in P::SHADERS {
        let wgsl = wgsl_params_fields(shader.source());
        assert_eq!(
            rust,
            wgsl,
            "{} does not mirror struct Params of {shader:?}",
            std::any::type_name::<P>(),
        );
        assert_eq!(std::mem::size_of::<P>(), 4 * wgsl.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wgsl_parser_reads_names_types_and_several_fields_a_line() {
        let src = "struct Other { q: u32 }\nstruct Params {\n    a: u32,  // count\n    b_x: u32, b_y: u32,\n    s: f32, // scale\n}\nvar<immediate> p: Params;";
        let fields = wgsl_params_fields(src);
        let want = [("a", "u32"), ("b_x", "u32"), ("b_y", "u32"), ("s", "f32")];
        assert_eq!(
            fields,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    kernel_params! {
        /// A block that does not match its shader, to show the check fails.
        struct Wrong for Pool { h: u32, w: u32 }
    }

    #[test]
    #[should_panic(expected = "does not mirror")]
    fn a_block_that_differs_from_its_shader_fails_the_check() {
        assert_mirrors_wgsl::<Wrong>();
    }
}
