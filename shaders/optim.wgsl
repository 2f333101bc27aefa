// Adam, one kernel over a flat f32 buffer, updating param, m and v in place.
//
// param, grad, m, v are (len) with the same layout. Keras' form (MODEL.md: β 0.9/0.999,
// ε 1e-7), with the bias correction folded into the step size:
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   lr_t = lr·√(1 − β2^t)/(1 − β1^t)
//   param ← param − lr_t·m/(√v + ε)
// t and lr arrive as immediates, so a learning-rate schedule never recompiles.

struct Params {
    len: u32,
    step: u32,     // t ≥ 1
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    first: u32,    // adam: the first element it updates (the tail after adam4's vec4s)
    pad1: u32,
}

var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

const WG: u32 = 256u;
// Elements per invocation: the bias correction below is computed once per invocation.
const PER: u32 = 4u;

// b^t by repeated squaring: exact to a few ulp, where pow(b, t) = exp2(t·log2 b) may be
// a hardware approximation whose error 1 − β2^t (≈ 1e-3 at t = 1) would magnify.
fn powu(b: f32, t: u32) -> f32 {
    var r = 1.0;
    var x = b;
    var e = t;
    loop {
        if (e == 0u) { break; }
        if ((e & 1u) != 0u) { r *= x; }
        x *= x;
        e >>= 1u;
    }
    return r;
}

// One invocation per PER elements, 256·PER contiguous elements per workgroup, on a
// 2-D grid of workgroups (see runtime::grid_1d).
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = p.first + (wid.y * nwg.x + wid.x) * (WG * PER) + lid;
    if (i0 >= p.len) { return; }
    let lr_t = p.lr * sqrt(1.0 - powu(p.beta2, p.step)) / (1.0 - powu(p.beta1, p.step));
    for (var j = 0u; j < PER; j++) {
        let i = i0 + j * WG;
        if (i < p.len) {
            let g = grad[i];
            let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
            let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            param[i] = param[i] - lr_t * mi / (sqrt(vi) + p.eps);
        }
    }
}

// The same buffers as vec4s, for adam4.
@group(0) @binding(4) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> v4: array<vec4<f32>>;

// adam over the whole vec4s of the buffers (p.len counts vec4s; the caller runs adam on
// the 1–3 elements after them): the same arithmetic per element, but on lavapipe, where a
// load or store is a loop over the 8 lanes with a bounds check per component, one vec4
// access where adam makes four.
@compute @workgroup_size(256)
fn adam4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i0 = (wid.y * nwg.x + wid.x) * (WG * PER) + lid;
    if (i0 >= p.len) { return; }
    let lr_t = p.lr * sqrt(1.0 - powu(p.beta2, p.step)) / (1.0 - powu(p.beta1, p.step));
    for (var j = 0u; j < PER; j++) {
        let i = i0 + j * WG;
        if (i < p.len) {
            let g = grad4[i];
            let mi = p.beta1 * m4[i] + (1.0 - p.beta1) * g;
            let vi = p.beta2 * v4[i] + (1.0 - p.beta2) * g * g;
            m4[i] = mi;
            v4[i] = vi;
            param4[i] = param4[i] - lr_t * mi / (sqrt(vi) + p.eps);
        }
    }
}
